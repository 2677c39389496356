"""`repro-kit replay LOG [--json] [--out DIR] [--fail-on-loss]`: a device's sync log, replayed.

`register(subparsers)` adds the subcommand to the CLI (as `_notebooks.register` does); the
command prints its own one-line errors (`repro-kit: error: ...`). Exit codes (the kit's):
0 done, 1 objects orphaned under --fail-on-loss, 3 inconclusive under --fail-on-loss,
2 a log that cannot be replayed (garbage, truncated hex, a header without its changeset,
a wrong size: one line naming the log line), 4 the log cannot be read or DIR written.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

from repro_kit import _errors
from repro_kit._checks import InputError
from repro_kit._runlock import ready_run_dir

__all__ = ["register", "run_replay"]

PROG = "repro-kit"


def register(subparsers: Any) -> None:
    """Add `replay` to the CLI's subparsers (argparse `add_subparsers()` result)."""
    p = _errors.add_command(
        subparsers, "replay", (0, 1, 2, 3, 4, 130),
        help="decode a Realm sync client's trace log, replay it through the merge, name the orphaned objects",
        description="Decode a realm-core 13 sync client trace log (an app's log at trace level), replay its "
                    "uploads and downloads through the kit's merge, and name the objects that were appended to a "
                    "list and left it, with the changeset and merge rule that removed them. Writes a run "
                    "directory that `repro-kit report DIR` turns into report.md and figures.",
    )
    p.add_argument("log", metavar="LOG", help="the trace log (plain text, as the SDK wrote it)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of sentences")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory to write (default runs/replay-<time>)")
    p.add_argument("--fail-on-loss", action="store_true",
                   help="exit 1 when objects were orphaned, 3 when the replay is inconclusive")
    p.set_defaults(func=run_replay)


class _Fail(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _out_dir(text: str | None) -> Path:
    """The run directory, checked and created before any work (2: it holds a run; 4: not writable)."""
    if text is not None and not text.strip():
        raise _Fail(2, f"--out: must name a directory, got {text!r}")
    if text is None:
        from repro_kit.recording import runs_root  # noqa: PLC0415 - pandas: see run_replay

        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        out = runs_root() / f"replay-{stamp}"
    else:
        out = Path(text)
    try:
        ready_run_dir(out)
    except InputError as exc:
        raise _Fail(2, str(exc)) from None
    except OSError as exc:
        raise _Fail(4, f"--out: cannot write to {out} ({exc.strerror or type(exc).__name__})") from None
    return out


def run_replay(args: argparse.Namespace, stdout: Any = None, stderr: Any = None) -> int:
    """The command: the exit code, having printed the result or one error line."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    # Measured (python -X importtime): the checker (findings, with pandas) takes ~1.2 s to import,
    # the log parser and the replay ~0.1 s; imported here, not when the CLI's parser is built, so
    # every other command does not pay for them.
    from repro_kit import findings, recording  # noqa: PLC0415

    from ._logparse import LogError, parse_log  # noqa: PLC0415
    from ._replay import replay_log  # noqa: PLC0415

    try:
        path = Path(args.log)
        if path.is_dir():
            raise _Fail(4, f"LOG: {path} is a directory, not a log file")
        try:
            log = parse_log(path)
        except OSError as exc:
            raise _Fail(4, f"LOG: cannot read {path} ({exc.strerror or type(exc).__name__})") from None
        try:
            result = replay_log(log)
        except LogError as exc:
            raise _Fail(2, f"bad log {path.name}: {exc}") from None
        out = _out_dir(args.out)
        try:
            result.write_run(out)
        except OSError as exc:
            raise _Fail(4, f"--out: cannot write to {out} ({exc.strerror or type(exc).__name__})") from None
    except _Fail as exc:
        print(f"{PROG}: error: {exc}", file=stderr)
        return exc.code
    analysis = findings.analyse(recording.load_run(out))
    verdict = analysis.verdict
    if args.json:
        data = result.as_dict()
        data["run_dir"] = str(out)
        data["checker"] = {"verdict": verdict.outcome, "lost": verdict.lost, "orphaned": verdict.orphaned,
                           "causes": [c.as_dict() for c in verdict.causes],
                           "inconclusive_reason": verdict.inconclusive_reason}
        print(json.dumps(data, indent=2, default=str), file=stdout)
    else:
        _print_text(result, verdict, out, stdout)
    if not args.fail_on_loss:
        return 0
    return {"lost": 1, "inconclusive": 3}.get(verdict.outcome, 0)


def _print_text(result: Any, verdict: Any, out: Path, stdout: Any) -> None:
    for line in result.summary_lines():
        print(line, file=stdout)
    steps = result.steps
    uploads = sum(1 for s in steps if s.kind == "local")
    untranslated = sum(len(s.untranslatable) for s in steps)
    versions = [s.server_version for s in steps if s.server_version is not None]
    span = f", server versions {min(versions)}-{max(versions)}" if versions else ""
    ident = f", client_file_ident {result.client_file_ident}" if result.client_file_ident is not None else ""
    print(f"Replayed {len(steps)} changesets of {Path(result.log.source).name} ({uploads} upload"
          f"{'' if uploads == 1 else 's'}, "
          f"{len(steps) - uploads} download{'' if len(steps) - uploads == 1 else 's'}{span}{ident}).", file=stdout)
    if untranslated:
        print(f"{untranslated} instructions the kit's format cannot express were left out and reported "
              "(--json lists them).", file=stdout)
    for note in result.notes:
        print(f"Note: {note}", file=stdout)
    print(f"Checker: {verdict.summary()}", file=stdout)
    print(f"Run directory: {out} (`{PROG} report {out}` writes report.md, the timeline and sequence figures)",
          file=stdout)
