"""`repro-kit export DIR --jsonl`: a columnar run's logs as JSON lines, for people who want text.

A bulk recording (`RunRecorder(format="arrow")`: a fleet, a million events) keeps history and
events as Arrow batches (history.arrows, events.arrows). This writes history.jsonl and
events.jsonl beside them, one record per line as a JSON-lines recording would hold it;
`load_run` reads either and gives the same DataFrames (it prefers the columnar logs).

`register(subparsers)` adds the subcommand to the CLI. Exit codes (`_errors`): 0 written (or
nothing to do: the run is JSON lines already), 2 bad input (DIR is not a run directory; one
line naming it), 4 the files could not be written (one line in words naming the path).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from repro_kit import _errors

__all__ = ["register", "run_export"]

PROG = "repro-kit"


def register(subparsers: Any) -> None:
    """Add `export` to the CLI's subparsers (argparse `add_subparsers()` result)."""
    p = _errors.add_command(
        subparsers, "export", (_errors.DONE, _errors.BAD_INPUT, _errors.CANNOT, _errors.INTERRUPTED),
        help="write a columnar run's history and events as JSON lines (history.jsonl, events.jsonl)",
        description="Write DIR/history.jsonl and DIR/events.jsonl from a columnar run's Arrow logs "
                    "(history.arrows, events.arrows), one record per line.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="a run directory")
    p.add_argument("--jsonl", action="store_true", required=True,
                   help="as JSON lines (the one text format; required, so the command says what it writes)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace, stdout: Any = None, stderr: Any = None) -> int:
    """Export `args.dir`; the exit code."""
    # the recording (pandas, ~1 s) and the Arrow log (pyarrow) load when the command runs, not when
    # the CLI registers it (python -X importtime): every other command would pay for them
    from repro_kit import recording  # noqa: PLC0415

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    run_dir = Path(args.dir)
    if not run_dir.is_dir():
        print(f"{PROG}: error: DIR: {run_dir} is not a directory", file=stderr)
        return _errors.BAD_INPUT
    names = (recording.META_FILE, *recording.LOG_FILES)
    if not any((run_dir / name).exists() for name in names):
        print(f"{PROG}: error: DIR: {run_dir} is not a run directory (no {', '.join(names)})", file=stderr)
        return _errors.BAD_INPUT
    if not any((run_dir / name).exists() for name in (recording.HISTORY_ARROW, recording.EVENTS_ARROW)):
        print(f"{run_dir} is recorded as JSON lines already: nothing to export", file=stdout)
        return _errors.DONE
    from repro_kit import _arrow_log  # noqa: PLC0415 - see above

    try:
        written = _arrow_log.export_jsonl(run_dir)
    except OSError as exc:  # in words, naming the file (never the temporary one beside it)
        print(f"{PROG}: error: {_errors.describe_os_error(exc, run_dir)}", file=stderr)
        return _errors.CANNOT
    for path in written:
        print(f"  {path} ({os.path.getsize(path):,} bytes)", file=stdout)
    return _errors.DONE
