"""`repro-kit`: the original tool's menu, plus `run`, `report`, `deploy` and `audit`.

Bad input exits 2 with one line naming the problem; never a traceback. A job that cannot
be done (disk full, read-only, unreachable server) exits 4 with one line in words naming
the path or host; 1 and 3 are kept for a loss and an inconclusive run under --fail-on-loss
(`repro_kit._errors.EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from repro_kit import _errors, _export, _notebooks, realm_log
from repro_kit._checks import InputError
from repro_kit._checks import integer_arg as _integer
from repro_kit._checks import number_arg as _number
from repro_kit._ctrlc import CtrlC
from repro_kit._runlock import RunLock, ready_run_dir
from repro_kit.emulator.params import CHOICES, EmulatorParams
from repro_kit.live import commands as live_commands
from repro_kit.live.appservices_api import LiveError
from repro_kit.scenario import Scenario

# The commands' own modules (driver, findings, report, recording, fleets, actions) load when a
# command runs, not here: with pandas and matplotlib they take 1-2 s to import (python -X
# importtime), which `repro-kit --help`, a bad flag, `deploy` and `audit` should not pay for.
# Hence the imports inside the _cmd_* functions (ruff's PLC0415 is waived for this file).

__all__ = ["main", "Menu"]

PROG = "repro-kit"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, names the flag once, and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("argument "):  # "argument --interval: not a number" -> "--interval: not a number"
            message = message[len("argument "):]
            flag, _, rest = message.partition(": ")
            for name in flag.split("/"):
                if rest.startswith(f"{name}: "):
                    rest = rest[len(name) + 2:]
            message = f"{flag}: {rest}"
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def _deploy_at(text: str) -> float | str | None:
    word = text.strip().lower()
    if word in ("auto", "none"):
        return None if word == "none" else "auto"
    return _number(text)


#: How the command line spells each scenario input, for messages.
FLAG_NAMES = {
    "mode": "--mode", "encoding": "--encoding", "reimport": "--reimport", "seed": "--seed",
    "realtime": "--realtime", "writes": "--writes", "interval_s": "--interval", "deploy_at_s": "--deploy-at",
    "settle_s": "--settle", "field": "--field", "bson_type": "--bson-type", "poll_s": "--poll",
    "resync_delay_s": "--resync-delay",
}


def _scenario(args: argparse.Namespace) -> Any:
    """The run's Scenario from the flags; a bad value is a usage error naming its flag."""
    try:
        params = EmulatorParams(resync_delay_s=args.resync_delay)
    except ValueError as exc:  # the model's own check, in the flag's name
        name, _, problem = str(exc).partition(": ")
        raise _UsageError(f"{FLAG_NAMES.get(name, name)}: {problem}") from None
    try:
        realtime = getattr(args, "realtime", False) or (args.command == "menu" and not args.virtual)
        return Scenario(mode=args.mode, encoding=args.encoding, reimport=args.reimport, seed=args.seed,
                        realtime=realtime, writes=args.writes, interval_s=args.interval,
                        deploy_at_s=None if getattr(args, "no_deploy", False) else args.deploy_at,
                        settle_s=args.settle, field=args.field, bson_type=args.bson_type,
                        params=params)
    except InputError as exc:
        raise _UsageError(exc.named(FLAG_NAMES)) from None


def _out_dir(text: str | None) -> Path:
    """The run directory, created now (before any work) so a bad --out costs nothing."""
    from repro_kit.driver import default_run_dir

    if text is not None and not text.strip():
        raise _UsageError(f"--out: must name a directory, got {text!r}")
    out = default_run_dir() if text is None else Path(text)
    busy = RunLock(out).busy() if out.is_dir() else None
    if busy:
        raise _UsageError(f"--out: {out} is {busy}; choose another directory")
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise _UsageError(f"--out: {parent} is a file, not a directory")
        if parent.exists():
            break
    try:
        ready_run_dir(out)
    except InputError as exc:
        raise _UsageError(str(exc)) from None
    except OSError as exc:
        reason = _errors.os_error_reason(exc)
        if exc.errno in _errors.NOT_WRITABLE:  # a real place the kit may not write to: could not do the job
            raise _errors.CannotDoTheJob(f"--out: cannot write to {out} ({reason})") from None
        raise _UsageError(f"--out: cannot write to {out} ({reason})") from None
    return out


def _build_parser() -> _Parser:
    parser = _Parser(prog=PROG, description="Reproduce, explain and audit the Realm Sync schema-deploy data loss.",
                     epilog=_errors.exit_codes_epilog(*_errors.EXIT_CODES),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    _add_run(sub)
    _add_fleet(sub)
    _add_report(sub)
    _add_menu(sub)
    live_commands.register(sub)
    _notebooks.register(sub)
    realm_log.register(sub)
    _export.register(sub)
    return parser


#: The exit codes of a command that prints a verdict.
_VERDICT_CODES = (0, 1, 2, 3, 4, 130)


def _scenario_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="emulator", choices=("emulator",),
                   help="emulator (the only backend that runs a timed scenario; the live backend has "
                        "`deploy` and `audit`)")
    _model_options(p)
    p.add_argument("--writes", type=_integer, default=20, help="notes appended to the root (default 20)")
    p.add_argument("--interval", type=_number, default=1.0, help="seconds between writes (default 1)")
    p.add_argument("--deploy-at", type=_deploy_at, default="auto",
                   help="seconds into the run to deploy the schema change, or none (run: between two early "
                        "writes by default, 5.5 s for 20 writes 1 s apart; menu: none, you deploy by hand)")
    p.add_argument("--settle", type=_number, default=300.0,
                   help="seconds to keep watching after the last write (default 300)")
    p.add_argument("--seed", type=_integer, default=0, help="seed of the emulator (default 0)")
    p.add_argument("--resync-delay", type=_number, default=180.0,
                   help="seconds from a production deploy to the re-import (default 180: the report's video)")
    p.add_argument("--field", default="tags", help="the optional field the deploy adds (default tags)")
    p.add_argument("--bson-type", default="array<string>", help="its BSON type (default array<string>)")


def _model_options(p: argparse.ArgumentParser) -> None:
    """The model's switchable mechanisms (`EmulatorParams.CHOICES`), the first value the default."""
    for name, what in (("mode", "App Services mode"), ("encoding", "how a re-imported list is written"),
                       ("reimport", "which documents a production deploy re-inserts")):
        allowed = CHOICES[name][0]
        p.add_argument(f"--{name}", default=allowed[0], choices=allowed, help=f"{what} (default {allowed[0]})")


def _fail_on_loss_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fail-on-loss", action="store_true",
                   help="exit 1 when acknowledged nodes were lost, 3 when the run is inconclusive")


def _add_run(sub: Any) -> None:
    run = _errors.add_command(sub, "run", _VERDICT_CODES,
                              help="one timed write-plus-deploy scenario, with report and timeline")
    _scenario_options(run)
    run.add_argument("--realtime", action="store_true", help="run at wall-clock pace instead of virtual time")
    run.add_argument("--no-deploy", action="store_true", help="run the writes without deploying (a control run)")
    run.add_argument("--out", default=None, help="run directory (default runs/<timestamp>)")
    _fail_on_loss_option(run)
    run.set_defaults(func=_cmd_run)


#: The fleet's numeric inputs: FleetParams name -> (flag, type, default, help).
_FLEET_INPUTS: dict[str, tuple[str, Any, Any, str]] = {
    "users": ("--users", _integer, 1000, "users of the app (default 1000)"),
    "devices_per_user": ("--devices-per-user", _integer, 1, "devices each user has (default 1)"),
    "notes_per_user": ("--notes-per-user", _integer, 20, "notes each user has before the run (default 20)"),
    "writes_per_user": ("--writes-per-user", _integer, 20, "notes each user writes (default 20)"),
    "write_every_s": ("--write-every", _number, 1.0,
                      "seconds between a user's writes, or their mean with --poisson (default 1)"),
    "deploy_at_s": ("--deploy-at", _deploy_at, 5.5, "seconds in to deploy, or none (default 5.5)"),
    "settle_s": ("--settle", _number, None,
                 "seconds after the last write (default: until the re-import ends and every view agrees)"),
    "resync_delay_s": ("--resync-delay", _number, 180.0, "deploy to re-import, seconds (default 180)"),
    "resync_batch_size": ("--batch-size", _integer, 20, "documents per re-import batch (default 20)"),
    "seed": ("--seed", _integer, 0, "seed (default 0)"),
    "partitions": ("--partitions", _integer, 1,
                   "split the users over this many servers run in parallel processes, an approximation of one "
                   "server: totals agree, single users' loss times do not (default 1)"),
}


def _add_fleet(sub: Any) -> None:
    fleet = _errors.add_command(
        sub, "fleet", (0, 1, 2, 4, 130),
        help="many users through one deploy: how many notes of how many users it orphans",
        description="A production-sized user base through one schema deploy on the emulator; "
                    "writes DIR/fleet.md, fleet.json and fleet.png/.svg beside the recording.")
    for name, (flag, kind, default, words) in _FLEET_INPUTS.items():
        fleet.add_argument(flag, dest=name, metavar=flag[2:].upper().replace("-", "_"), type=kind, default=default,
                           help=words)
    fleet.add_argument("--poisson", action="store_true", help="Poisson writers: exponential gaps of that mean")
    _model_options(fleet)
    fleet.add_argument("--out", default=None, help="run directory (default runs/fleet-<timestamp>)")
    fleet.add_argument("--fail-on-loss", action="store_true", help="exit 1 when any note was orphaned")
    fleet.set_defaults(func=_cmd_fleet)


def _add_report(sub: Any) -> None:
    report = _errors.add_command(sub, "report", _VERDICT_CODES,
                                 help="rebuild a run directory's report and figures without re-running it")
    report.add_argument("dir", type=Path, help="a run directory (finished, killed or partial)")
    _fail_on_loss_option(report)
    report.set_defaults(func=_cmd_report)


def _add_menu(sub: Any) -> None:
    menu = _errors.add_command(sub, "menu", (0, 2, 4, 130), help="the interactive menu (also what no arguments start)",
                               description="The original tool's menu, in real time: Run test goes on while you "
                                           "deploy by hand, print info and nodes, or stop it.")
    _scenario_options(menu)
    menu.add_argument("--virtual", action="store_true",
                      help="virtual time: no time passes between choices except by Wait (fast experiments)")
    menu.set_defaults(func=_cmd_menu, deploy_at=None)


def _cmd_run(args: argparse.Namespace) -> int:
    scenario = _scenario(args)  # every input checked before anything runs or touches the disk
    out = _out_dir(args.out)
    args.workdir = out
    from repro_kit import driver, findings

    session = scenario.connect()
    try:
        run = driver.run_test(session, scenario=scenario, out=out)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted at {session.now():.1f} s of the run; the partial run is kept in {out} "
              f"(`{PROG} report {out}` analyses it)", file=sys.stderr)
        return 130
    except OSError:
        raise  # disk full, read-only: exit 4, said by main()
    except Exception:
        stopped = _run_stopped_by_a_failed_deploy(out)
        if stopped is None:
            raise
        # The deploy failed and stopped the run: its partial run is the evidence, and its verdict
        # is inconclusive (never clean: nothing was deployed), reported like any other.
        run, at = stopped
        print(f"{PROG}: the schema deploy failed at {at:.1f} s and stopped the run; the partial run is kept in {out}",
              file=sys.stderr)
    return _report_and_exit(findings.analyse(run), out, args.fail_on_loss)


def _run_stopped_by_a_failed_deploy(out: Path) -> tuple[Any, float] | None:
    """(the partial run in `out`, when its deploy failed) if its history ends in a failed deploy
    (the writer records the failure, then re-raises it), else None: any other error is not a
    verdict to report."""
    from repro_kit import recording

    try:
        run = recording.load_run(out)
    except (OSError, ValueError):
        return None
    h = run.history
    if h.empty:
        return None
    nemesis = h.loc[(h["process"].astype(str) == "nemesis").to_numpy(bool)]
    last = nemesis.iloc[-1] if len(nemesis) else None
    if last is None or str(last["f"]) != "deploy" or str(last["type"]) != "fail":
        return None
    return run, float(last["time"])


def _report_and_exit(analysis: Any, out: Path, fail_on_loss: bool) -> int:
    """Write the report bundle, print the one-line verdict and the files; the exit code."""
    from repro_kit import report

    paths = report.write_report(analysis, out)
    data = report.build_report(analysis)
    code = {"lost": 1, "inconclusive": 3}.get(data["verdict"], 0) if fail_on_loss else 0
    try:
        print(_summary(data, analysis))
        for key in ("md", "html", "json", "png", "svg", "sequence_png", "sequence_svg"):
            if key in paths:
                print(f"  {paths[key]}")
        sys.stdout.flush()
    except BrokenPipeError:  # `repro-kit run | head -1`: the reader left; the run and its files are complete
        _silence_stdout()
    return code


def _cmd_fleet(args: argparse.Namespace) -> int:
    from repro_kit import fleets

    flags = {name: flag for name, (flag, *_rest) in _FLEET_INPUTS.items()}
    kwargs = {name: getattr(args, name) for name in (*_FLEET_INPUTS, "poisson", "mode", "encoding", "reimport")}
    if kwargs["deploy_at_s"] == "auto":
        kwargs["deploy_at_s"] = 5.5
    try:  # every input checked before anything runs or touches the disk
        fleets.check_inputs(**kwargs)
    except InputError as exc:
        raise _UsageError(exc.named(flags)) from None
    out = _out_dir(args.out if args.out is not None else str(fleets.default_dir()))
    args.workdir = out
    return _fleet_report_and_exit(fleets.fleet(**kwargs, out=out, progress=None), out, args.fail_on_loss)


def _fleet_report_and_exit(analysis: Any, out: Path, fail_on_loss: bool) -> int:
    """A fleet's one-sentence verdict and its files; the exit code, as for a single run."""
    try:
        print(analysis.summary())
        for name in ("fleet.md", "fleet.json", "fleet.png", "fleet.svg"):
            print(f"  {out / name}")
    except BrokenPipeError:
        _silence_stdout()
    if not fail_on_loss:
        return 0
    return 1 if analysis.notes_orphaned else {"inconclusive": 3}.get(analysis.outcome, 0)


def _cmd_report(args: argparse.Namespace) -> int:
    """Any run directory's report, rebuilt from its recording: a run's or a replay's report.md and
    figures, a fleet's fleet.md, with the verdict its own command printed. A meta.json that cannot
    be trusted (missing, not JSON, NaN) makes the verdict inconclusive, with the reason."""
    from repro_kit import findings, fleets, recording

    args.workdir = Path(args.dir)
    busy = RunLock(args.dir).busy() if Path(args.dir).is_dir() else None
    if busy:  # its run is still writing: a report now would be of half a run, and race its own report
        raise _UsageError(f"DIR: {args.dir} is {busy}; report it once that run has ended")
    run = recording.load_run(args.dir)
    for warning in run.warnings:
        print(f"note: {warning}", file=sys.stderr)
    analysis = findings.analyse(run)
    if run.kind == "fleet":
        fleet = fleets.load_fleet(analysis)
        fleets.write_fleet_report(fleet, Path(args.dir))
        return _fleet_report_and_exit(fleet, Path(args.dir), args.fail_on_loss)
    return _report_and_exit(analysis, Path(args.dir), args.fail_on_loss)


def _known(value: Any) -> bool:
    """A value a person can read as a fact: not None, not NaN or infinity."""
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def _count(value: Any) -> str:
    return str(value) if _known(value) else "unknown"


def _deploy_words(meta: dict[str, Any], analysis: Any) -> str:
    """When the run deployed, in words: "deploy at 5.5 s", "no deploy", "deploy unknown"."""
    planned = meta.get("deploy_at_s")
    if isinstance(planned, (int, float)) and not isinstance(planned, bool) and math.isfinite(planned):
        return f"deploy at {planned:g} s"
    made = [t for t, _v in analysis.nemesis("deploy")]
    if made:  # by hand (the menu, the panel), or a run without meta: the history says when
        return f"deploy at {min(made):g} s"
    if "deploy_at_s" in meta and planned is None:
        return "no deploy"
    return "deploy time unknown"


def _setup_words(data: dict[str, Any], analysis: Any, meta: dict[str, Any]) -> str:
    """The run's set-up in words: "emulator production encoding=replace", or why it is unknown."""
    if not any(_known(data.get(k)) for k in ("backend", "mode", "encoding")):
        if meta:
            return "unknown set-up"
        missing = any(r.startswith("meta.json is missing") for r in analysis.run.incomplete)
        return "unknown set-up (no meta.json)" if missing else "unknown set-up (meta.json unusable)"
    return (f"{data['backend'] if _known(data['backend']) else 'unknown backend'} "
            f"{data['mode'] if _known(data['mode']) else 'unknown mode'} "
            f"encoding={data['encoding'] if _known(data['encoding']) else 'unknown'}")


def _summary(data: dict[str, Any], analysis: Any) -> str:
    """The verdict in one line, in words: never "None" or "nan" (an unknown is said to be one)."""
    verdict = analysis.verdict
    meta = analysis.meta if isinstance(analysis.meta, dict) else {}
    writes = f"{data['writes']} writes" if _known(data.get("writes")) else "writes unknown"
    head = f"{_setup_words(data, analysis, meta)}: {writes}, {_deploy_words(meta, analysis)}"
    counts = f"root children {_count(data['root_children'])}, nodes {_count(data['nodes_total'])}"
    if data["verdict"] == "inconclusive":
        reason = verdict.inconclusive_reason or "the recording cannot show the outcome"
        advice = " Run longer to see the re-import." if "re-import" in reason or "halted" in reason else ""
        if analysis.run.incomplete:  # no count from incomplete evidence, not even "none so far"
            return f"{head}. INCONCLUSIVE: {reason} ({counts} at the end).{advice}"
        return f"{head}. INCONCLUSIVE: {reason}; no acknowledged node lost so far ({counts}).{advice}"
    if data["verdict"] == "clean":
        return f"{head}. No acknowledged node was lost ({counts})."
    cause = verdict.cause_sentence() or ""
    more = (f" The run ended early ({verdict.inconclusive_reason}): more may be lost."
            if verdict.inconclusive_reason else "")
    first = (f", first visible at {data['first_loss_at_s']:g} s" if _known(data.get("first_loss_at_s"))
             else ", first visible at an unrecorded time")
    batches = (f"re-import: {verdict.batches_phrase()}" if data.get("resync_batches")
               else "no re-import batch reached the device")
    return (f"{head}. LOST {data['lost_count']} of {data['nodes_created']} acknowledged nodes: orphaned "
            f"(documents kept, {_count(data['nodes_total'])} nodes in total, only {_count(data['root_children'])} "
            f"in the root's children){first}; {batches}. {cause}{more}")


def _cmd_menu(args: argparse.Namespace) -> int:
    scenario = _scenario(args)
    return Menu(scenario.connect(), args).loop()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a file
        return False


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush is quiet too."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


class Menu:
    """The original tool's menu over `Actions`, driven by any input stream (a test feeds it lines).

    Listener lines and a Run test's lines print as they happen, from the run's thread; the
    prompt stays open meanwhile, so the user deploys by hand, prints info or stops the run. At a
    terminal the prompt is read with readline and redrawn below every line that arrives while it
    waits (with what was typed so far), so the user never types without a visible prompt; from
    a pipe (a script, a test) lines are read plainly and nothing is redrawn. Ctrl-C stops a
    running test (its partial run is kept) or cancels a Wait, and returns to the prompt; at the
    prompt with nothing running, a second Ctrl-C in a row exits. End of input at a question
    cancels it.
    """

    def __init__(self, session: Any, args: argparse.Namespace, stdin: TextIO | None = None,
                 stdout: TextIO | None = None) -> None:
        from repro_kit.actions import COMMANDS, Actions

        self.session = session
        self.args = args
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self._say_lock = threading.Lock()
        self._prompt: str | None = None  # the prompt on screen while input is awaited (a terminal only)
        self._readline: Any = None
        self._erase = ""
        if stdin is None and stdout is None and _is_terminal(sys.stdin) and _is_terminal(sys.stdout):
            try:  # only at a terminal, and only where it exists (POSIX): input() then edits lines with it
                import readline

                self._readline = readline
            except ImportError:  # pragma: no cover - Windows: input() without line editing
                pass
            # "\r" + erase-line, except on a terminal that cannot (TERM=dumb): there, a new line
            self._erase = "\n" if os.environ.get("TERM", "") in ("", "dumb") else "\r\x1b[K"
            self._terminal = True
        else:
            self._terminal = False
        self.actions = Actions(session, emit=self.say)
        #: The menu's choices: the command table both front ends read, then Exit.
        self.options: tuple[tuple[str, Any], ...] = (
            *((c.label, getattr(self, f"_{c.name}")) for c in COMMANDS), ("Exit", self._exit))

    def say(self, text: str = "") -> None:
        """Print a block of lines; at a terminal, while a prompt waits, above it, the prompt and
        what was typed redrawn below."""
        with self._say_lock:
            try:
                if self._prompt is None:
                    print(text, file=self.stdout, flush=True)
                    return
                typed = self._readline.get_line_buffer() if self._readline is not None else ""
                self.stdout.write(f"{self._erase}{text}\n{self._prompt}{typed}")
                self.stdout.flush()
            except BrokenPipeError:
                pass

    def ask(self, prompt: str) -> str | None:
        """One line of input; None at end of input (which cancels the question)."""
        if self._terminal:
            # Lines from now on go above the prompt. (Not from readline's pre-input hook: a Ctrl-C
            # landing inside a hook is swallowed by readline; a line in the instant before readline
            # draws the prompt shows it twice, which is only cosmetic.)
            with self._say_lock:
                self._prompt = prompt
            try:
                line = input(prompt)
            except EOFError:
                line = None
            finally:
                with self._say_lock:
                    self._prompt = None
            if line is None:
                self.say()
                return None
            return line.strip()
        with self._say_lock:
            self.stdout.write(prompt)
            self.stdout.flush()
        line = self.stdin.readline()
        if line == "":
            self.say()
            return None
        return line.strip()

    def _menu_line(self) -> str:
        return "  ".join(f"{i}. {label}" for i, (label, _handler) in enumerate(self.options, 1))

    def loop(self) -> int:
        s = self.session
        info = s.info()
        clock = "real time" if s.realtime else "virtual time (only Wait moves the clock)"
        root = info.root_id if info.root_id is not None else "none yet (Add to root creates it)"
        self.say(f"Connected ({s.backend}, {s.mode} mode, {clock}). User id: {info.user_id}; root node id: {root}.")
        self.say("Times are seconds since the latest Run test started (session time before the first, said so).")
        self.say(self._menu_line())
        interrupts = 0
        ctrl_c: Any = CtrlC() if self._terminal else contextlib.nullcontext()
        with ctrl_c:  # at a terminal, a Ctrl-C that lands while readline draws the prompt still counts
            return self._loop(interrupts)

    def _loop(self, interrupts: int) -> int:
        try:
            while True:
                try:
                    choice = self.ask("Choose a command (1-9, ? for the list): ")
                    interrupts = 0
                    if choice is None:  # end of input: nothing more can be chosen
                        return 0
                    try:
                        if not self.handle(choice):
                            return 0
                    except ValueError as exc:
                        self.say(f"error: {exc}")
                except KeyboardInterrupt:
                    interrupts = self._interrupted(interrupts)
                    if interrupts >= 2:
                        return 130
        finally:
            self.actions.close()

    def _interrupted(self, interrupts: int) -> int:
        """Ctrl-C: stop a running test (back to the prompt), else warn; a second one in a row
        exits. A Ctrl-C that lands while this is being said counts as the next one."""
        while True:
            try:
                self.say()
                if self.actions.running:
                    self._show(self.actions.stop())
                    return 0
                interrupts += 1
                if interrupts >= 2:
                    self.say("Exiting.")
                    return interrupts
                self.say("(Press Ctrl-C again to exit, or choose 9. Exit.)")
                return interrupts
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts >= 2:
                    self.say("Exiting.")
                    return interrupts

    def _show(self, lines: list[str]) -> None:
        """An answer's lines as one block: a listener line from another thread never splits it."""
        if lines:
            self.say("\n".join(lines))

    def handle(self, choice: str) -> bool:
        """Run one menu choice (its number, or the start of its label); False means exit."""
        if choice in ("?", "", "help"):
            self.say(self._menu_line())
            return True
        by_number = {str(i): entry for i, entry in enumerate(self.options, 1)}
        entry = by_number.get(choice) or next(
            (e for e in self.options if choice and e[0].lower().startswith(choice.lower())), None)
        if entry is None:
            self.say(f"Unknown choice {choice!r}: pick 1-{len(self.options)}.")
            return True
        return entry[1]() is not False

    # -- one handler per command -------------------------------------------------------------
    def _add_to_root(self) -> None:
        self._show(self.actions.add_to_root())

    def _run_test(self) -> None:
        args = self.args
        self._show(self.actions.run_test(writes=args.writes, interval_s=args.interval, deploy_at_s=args.deploy_at,
                                         settle_s=args.settle, field=None if args.field == "tags" else args.field,
                                         bson_type=args.bson_type))
        if not self.session.realtime:
            self.actions.wait_for_run()  # virtual time: the run takes no time, so show its end before the prompt

    def _print_nodes(self) -> None:
        self._show(self.actions.print_nodes())

    def _print_info(self) -> None:
        self._show(self.actions.print_info())

    def _reset(self) -> None:
        answer = self.ask(f"{self.actions.reset_question()} Type 'yes' to confirm: ")
        self._show(self.actions.reset() if answer == "yes" else ["Reset cancelled; nothing deleted."])

    def _deploy(self) -> None:
        args = self.args
        default = self.actions.default_field() if args.field == "tags" else args.field
        field = self.ask(f"Field name [{default}]: ")
        if field:
            self.actions.check_field(field)  # a name the schema has is refused now, before the type is asked
        bson_type = None if field is None else self.ask(f"BSON type [{args.bson_type}]: ")
        if field is None or bson_type is None:
            self.say("Deploy cancelled; nothing deployed.")
        else:
            self._show(self.actions.deploy(field or default, bson_type or args.bson_type))

    def _wait(self) -> None:
        text = self.ask("Seconds to wait: ")
        if text is None:
            self.say("Wait cancelled.")
            return
        try:
            seconds = float(text or "0")
        except ValueError:
            raise ValueError(f"seconds: not a number: {text!r}") from None
        self._show(self.actions.wait(seconds) if not self.session.realtime else self._wait_real_time(seconds))

    def _wait_real_time(self, seconds: float) -> list[str]:
        """A real-time Wait: it goes on in a thread, so Ctrl-C here cancels it (at its next slice)
        and never lands inside the model's step."""
        cancel, done = threading.Event(), threading.Event()
        answer: list[Any] = []

        def wait() -> None:
            try:
                answer.append(self.actions.wait(seconds, cancel=cancel))
            except Exception as exc:  # bad input: said by the loop, like any other choice's
                answer.append(exc)
            finally:
                done.set()

        worker = threading.Thread(target=wait, name="repro_kit menu: Wait", daemon=True)
        try:  # an Event, not Thread.join: a join interrupted by Ctrl-C can forget its thread (CPython 3.11)
            self.say(f"Waiting {seconds:g} s (Ctrl-C cancels)…")
            worker.start()
            while not done.wait(0.1):
                pass
        except KeyboardInterrupt:  # whenever it lands, from the line above on: the wait is cancelled
            cancel.set()
            if worker.ident is not None:
                done.wait()
        result = answer[0] if answer else [f"Wait cancelled at {self.actions.at(self.session.now())}."]
        if isinstance(result, Exception):
            raise result
        return result

    def _stop(self) -> None:
        self._show(self.actions.stop())

    def _exit(self) -> bool:
        if self.actions.running:
            self._show(self.actions.stop())
        return False


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    """The subcommands `parser` knows, in the order they were added."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [name for action in actions for name in action.choices]


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code (`repro_kit._errors.EXIT_CODES`, the README's table)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["menu"]
    args: argparse.Namespace | None = None
    try:
        parser = _build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            commands = list(_commands(parser))
            raise _UsageError(f"choose a command: {', '.join(commands[:-1])} or {commands[-1]}")
        return int(args.func(args) or 0)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return _errors.BAD_INPUT
    except ValueError as exc:
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if line.startswith("out: "):  # the recorder's refusal of a run directory, named as the flag
            line = "--" + line
        print(f"{PROG}: error: {line}", file=sys.stderr)
        return _errors.BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return _errors.INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return _errors.DONE
    except OSError as exc:  # disk full, permission, read-only: could not do the job, said in words
        where = getattr(args, "workdir", None) or getattr(args, "dir", None)
        print(f"{PROG}: error: {_errors.describe_os_error(exc, where)}", file=sys.stderr)
        return _errors.CANNOT
    except _errors.CannotDoTheJob as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return _errors.CANNOT
    except Exception as exc:  # one line, never a traceback; never 1, which means "nodes were lost"
        first = str(exc).splitlines()[0] if str(exc) else ""
        if isinstance(exc, LiveError):
            print(f"{PROG}: error: {first}", file=sys.stderr)
        else:  # a bug: its name helps the report
            print(f"{PROG}: error: internal error ({type(exc).__name__}: {first}); please report it", file=sys.stderr)
        return _errors.CANNOT


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
