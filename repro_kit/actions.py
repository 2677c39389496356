"""The original tool's operations, once: Add to root, Run test, Print nodes, Print info,
Reset, Deploy schema change, plus Wait and Stop.

The menu (`repro-kit`) and the control panel (`ControlPanel`) are thin front ends over
`Actions`: both read the command table (`COMMANDS`), each operation returns the lines to show,
and lines that come on their own (the original tool's listener lines, a Run test's per-write
lines, a run's verdict) go to `emit` as they happen, from whichever thread made them. Those come
from the session's history stream, the same records a run directory holds. Wording follows
stashpad/realm-bug-cli, so a session here reads like the report's video.

One clock for the user: every time shown (listener lines, deploy and halt lines, Wait, the
status, the verdict) is seconds since the latest Run test started (`at`); before the first Run
test, session time, and said so ("12.0 s of the session"). What the session waits for (a
deploy's halt and its re-import) is `waiting_for()`, with a countdown.

Time is the user's: on a real-time session a clock thread keeps the model at the wall clock,
so a deploy made by hand minutes into a run, an Atlas refresh or the listener lines of a
re-import happen when they would have; a Run test goes on in its own thread while the user
acts, and Stop ends it, keeping a partial run.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repro_kit import _checks, _schema, driver, findings, recording, report
from repro_kit._checks import InputError
from repro_kit._errors import describe_os_error
from repro_kit._history import Event, Nemesis, Record
from repro_kit._session import Session
from repro_kit.scenario import DEFAULT_BSON_TYPE, DEFAULT_FIELD, Scenario

__all__ = ["Actions", "Command", "COMMANDS", "MAX_WAIT_S", "countdown", "shown_path", "error_line"]

#: Longest single Wait (a day): a typo cannot freeze the tool.
MAX_WAIT_S = 86_400.0

_CLOCK_PERIOD_S = 0.2

#: A deploy's halt while under way: (translation halted since, re-import due at, if known), session time.
Halt = tuple[float, float | None]


def countdown(seconds: float) -> str:
    """A time left as a person reads a timer: "2:41", "1:02:05" (never negative)."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def shown_path(path: str | Path) -> str:
    """A path as a line shows it: relative to the current directory when inside it ("runs/2024..."),
    else in full."""
    target = Path(path)
    try:
        return str(target.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(target)


def error_line(action: str, exc: BaseException, where: str | Path | None = None) -> str:
    """An action's error as a front end shows it, in one line: a file-system error in words naming
    the path (`where`, where the error does not), bad input (a ValueError) as its message; only an
    unexpected error (a bug) keeps its Python name."""
    if isinstance(exc, OSError):
        return f"{action} failed: {describe_os_error(exc, where)}"
    text = str(exc).strip().splitlines()
    first = text[0] if text else "(no message)"
    if isinstance(exc, ValueError):
        return f"{action} failed: {first}"
    return f"{action} failed: {type(exc).__name__}: {first}"


def _halt_after(at: float, value: dict[str, Any], earlier: Halt | None) -> Halt:
    """(halted since, re-import due at) after a halt record at `at`. A deploy during an earlier
    one's wait: translation stays halted since the first, the re-import is the new deploy's own,
    a full delay after it."""
    since = at - float(value.get("halted_for_s", 0.0))
    delay = value.get("reimport_due_in_s")
    due = since + float(delay) if isinstance(delay, (int, float)) else None
    return (min(since, earlier[0]) if earlier is not None else since, due)


@dataclasses.dataclass(frozen=True)
class Command:
    """One operation as a front end offers it: `name` is the Actions method, `label` the original
    tool's wording, `tip` a one-line help."""

    name: str
    label: str
    tip: str


#: The operations, in the menu's order (the original tool's, then Wait and Stop).
COMMANDS = (
    Command("add_to_root", "Add to root", "Create a node and append it to the root's children"),
    Command("run_test", "Run test", "Append a note to the root every interval; deploy by hand while it runs"),
    Command("print_nodes", "Print nodes", "The root and its children, as the device shows them"),
    Command("print_info", "Print info", "The device's counts, and what a refresh of Atlas shows"),
    Command("reset", "Reset", "Delete this user's nodes (asks first)"),
    Command("deploy", "Deploy schema change", "Add an optional field to the Node schema, now (also during a run)"),
    Command("wait", "Wait", "Let time pass"),
    Command("stop", "Stop", "End the running test; its partial run is kept"),
)


class Actions:
    """The tool's operations on `session`. `emit(line)` receives the lines that happen on
    their own; `runs_dir` is where Run test records (default `recording.runs_root()`)."""

    def __init__(self, session: Session, emit: Callable[[str], None] | None = None,
                 runs_dir: str | Path | None = None) -> None:
        self.session = session
        self.emit = emit or (lambda line: None)
        self.runs_dir = Path(runs_dir) if runs_dir is not None else recording.runs_root()
        self.last_run: Any = None
        self.last_analysis: Any = None
        self.last_error: str | None = None
        self.series: list[tuple[float, str, int, int]] = []  # (time, observer, root_children, nodes_total)
        self.marks: list[tuple[float, str, Any]] = []  # (time, "halt" | "resume" | "batch" | "deploy", value)
        self.halt: Halt | None = None  # while under way
        self.run_t0: float | None = None  # session time the latest Run test started: the user's clock's zero
        self.analysing = False  # a run has ended and its verdict is being computed
        self.starting = False  # a Run test waits for an earlier deploy's re-import before its first write
        self._lock = threading.Lock()
        self._run_thread: threading.Thread | None = None
        self._control: driver.RunControl | None = None
        self._run_out: Path | None = None
        self._run_started_wall: float | None = None
        self._closed = threading.Event()
        self._changed = {"device": False}  # children moved since the device's last counts
        self._batch: int | None = None
        self._baseline = True
        self._unsubscribe = session.history(self._on_record)
        self._baseline = False
        self._clock: threading.Thread | None = None
        if session.realtime:
            self._clock = threading.Thread(target=self._tick, name="repro_kit: clock", daemon=True)
            self._clock.start()

    # -- time ----------------------------------------------------------------------------
    def _tick(self) -> None:
        """Keep a real-time model at the wall clock, so listener lines come when they happen."""
        while not self._closed.wait(_CLOCK_PERIOD_S):
            try:
                self.session.wait_until(self.session.now())  # a real-time model runs up to the wall clock
            except Exception as exc:  # a clock must not die silently: say it once, keep ticking
                self._say_error("clock", exc)

    def now(self) -> float:
        return self.session.now()

    def run_time(self, t: float | None = None) -> float | None:
        """Session time `t` (default now) as seconds since the latest Run test started; None before one."""
        control = self._control
        t0 = control.t0 if control is not None and control.t0 is not None else self.run_t0
        if t0 is None:
            return None
        return (self.session.now() if t is None else t) - t0

    def at(self, t: float) -> str:
        """Session time `t` on the user's clock: "5.9 s" (since the latest Run test started),
        "40.2 s before this Run test", or, before any Run test, "12.0 s of the session"."""
        rel = self.run_time(t)
        if rel is None:
            return f"{t:.1f} s of the session"
        if rel < -0.05:
            return f"{-rel:.1f} s before this Run test"
        return f"{max(rel, 0.0):.1f} s"

    def clock_words(self) -> str:
        """The clock as the status line shows it."""
        rel = self.run_time()
        if rel is None:
            return f"session time {self.session.now():.1f} s (no Run test yet)"
        return f"{max(rel, 0.0):.1f} s since Run test started"

    def waiting_for(self) -> str | None:
        """What the session waits for, or None: "translation halted since 5.9 s; re-import due at
        185.9 s (in 2:41)"; once due, "re-import under way"."""
        halt = self.halt
        if halt is None:
            return None
        since, due = halt
        head = f"translation halted since {self.at(since)}"
        if due is None:
            return f"{head}; re-import time unknown"
        left = due - self.session.now()
        if left <= 0:
            return f"{head}; re-import under way (due at {self.at(due)})"
        return f"{head}; re-import due at {self.at(due)} (in {countdown(left)})"

    # -- what the views show, as it happens ------------------------------------------------
    def _on_record(self, record: Record) -> None:
        if isinstance(record, Event):
            self._on_event(record)
        elif isinstance(record, Nemesis):
            self._on_nemesis(record)

    def _on_event(self, event: Event) -> None:
        """The original tool's two listeners (the user's nodes, the root's children) from the device's
        events; both views' counts for the live chart."""
        obs, kind = event.observer, event.kind
        if obs == "device" and kind in ("enter", "leave"):
            self._changed["device"] = True
        elif obs == "device" and kind == "batch":
            self._batch = int(event.fields["batch"])
            with self._lock:
                self.marks.append((event.time, "batch", self._batch))
        if kind != "counts":
            return
        children, total = int(event.fields["root_children"]), int(event.fields["nodes_total"])
        with self._lock:
            self.series.append((event.time, obs, children, total))
        if obs != "device" or self._baseline:
            return
        changed, batch = self._changed["device"], self._batch
        self._changed["device"], self._batch = False, None
        lines = [f"\t: User has {total} total nodes"]  # the two listeners' lines of one change: one block
        if changed or batch:
            lines.append(f"\t: Root has {children} children")
        if batch:
            lines.append(f"\t  (a re-import batch of {batch} documents from the server, at {self.at(event.time)})")
        self.emit("\n".join(lines))

    def _on_nemesis(self, record: Nemesis) -> None:
        """The control plane's halt and resume (what the session waits for, said as it happens) and
        the chart's marks (halt, resume, a deploy's start)."""
        value = record.value if isinstance(record.value, dict) else {}
        earlier = self.halt
        if record.f == "halt":
            self.halt = _halt_after(record.time, value, earlier)
        elif record.f == "resume":
            self.halt = None
        with self._lock:
            if record.f in ("halt", "resume") or (record.f == "deploy" and record.type == "invoke"):
                self.marks.append((record.time, record.f, value.get("field") if record.f == "deploy" else value))
        if self._baseline:
            return
        if record.f == "halt":
            self.emit(self._halt_line(record.time, earlier))
        elif record.f == "resume":
            self.emit(f"[App Services] translation resumed at {self.at(record.time)}")

    def _halt_line(self, at: float, earlier: Halt | None) -> str:
        """What a halt says: translation halted (or, during an earlier deploy's wait, halted still) and
        when the re-import is due."""
        due = self.halt[1] if self.halt is not None else None
        reimport = f"; its re-import is due at {self.at(due)}" if due is not None else ""
        if earlier is None:
            return f"[App Services] translation halted at {self.at(at)}; Atlas was snapshotted{reimport}"
        return (f"[App Services] a new deploy at {self.at(at)}: translation stays halted (since "
                f"{self.at(earlier[0])}); Atlas was snapshotted again{reimport}, a full wait after this "
                f"deploy (the earlier re-import is cancelled)")

    def snapshot(self) -> tuple[list[tuple[float, str, int, int]], list[tuple[float, str, Any]]]:
        """Copies of the views' counts over time and the control-plane marks (the live chart's data)."""
        with self._lock:
            return list(self.series), list(self.marks)

    # -- the operations ---------------------------------------------------------------------
    def add_to_root(self, text: str = "a child node") -> list[str]:
        node_id = self.session.add_to_root(text)
        return [f"Added a node to the root: {node_id}"]

    def print_nodes(self) -> list[str]:
        """The root, then each child indented: `text\\t(N children)`."""
        nodes = self.session.nodes()
        if not nodes:
            return ["The user has no root node."]
        root, children = nodes[0], nodes[1:]
        return [f"{root.get('text', '')}\t({len(root.get('children', []))} children)"] + [
            f"   {child.get('text', '')}\t({len(child.get('children', []))} children)" for child in children]

    def print_info(self) -> list[str]:
        """The original four lines, then what a refresh of the Atlas page shows."""
        info, atlas = self.session.info(), self.session.atlas.info()
        return [
            f"User id: {info.user_id if info.user_id is not None else 'unknown'}",
            f"Root node id: {info.root_id if info.root_id is not None else 'none yet (Add to root creates it)'}",
            f"Total node objects: {info.nodes_total}",
            f"Number of children in root: {info.root_children}",
            f"Atlas (a refresh of the Node collection): {atlas.nodes_total} node documents, "
            f"{atlas.root_children} children in the root",
            *([f"Waiting: {waiting}"] if (waiting := self.waiting_for()) else []),
            f"Clock: {self.clock_words()}",
        ]

    def reset_question(self) -> str:
        info = self.session.info()
        return f"Delete all {info.nodes_total} nodes of user {info.user_id}?"

    def reset(self) -> list[str]:
        """Delete this owner's nodes (only this owner's); the front end asks first."""
        if self.running:
            raise ValueError("Reset: a Run test is running; Stop it first")
        count = self.session.info().nodes_total
        self.session.reset()
        waiting = self.waiting_for()
        return [f"Deleting {count} nodes"] + ([f"(Still waiting: {waiting}; a new deploy gets its own full halt "
                                               f"and re-import.)"] if waiting else [])

    def _schema_fields(self) -> set[str]:
        """The field names of the app's current schema, where the backend knows them (the emulator)."""
        fields = getattr(self.session, "schema_fields", None)
        return set(fields()) if fields is not None else set()

    def default_field(self) -> str:
        """The field a deploy adds by default: `tags`, or `tags_2`, ... once the schema has it."""
        return _schema.next_field_name(self._schema_fields(), DEFAULT_FIELD)

    def check_field(self, field: str) -> str:
        """`field` if a deploy can add it to this session's schema, else ValueError saying why in
        one line: a name the schema already has (children, text, ...) is refused here, before
        anything is deployed or recorded in a running test."""
        known = self._schema_fields()
        taken = [*_schema.NODE_FIELDS, *sorted(known - set(_schema.NODE_FIELDS))]
        try:
            return _schema.validate_field_name(field, taken=taken)
        except ValueError as exc:
            reason = str(exc).split(": ", 1)[-1]
            raise ValueError(f"field {reason}; nothing was deployed (the next free name is "
                             f"{self.default_field()})") from None

    def deploy(self, field: str | None = None, bson_type: str | None = None) -> list[str]:
        """Deploy an optional field; during a Run test it is recorded in that run (from the session's
        history), and the run's scheduled deploy, if any, is skipped: the user deployed by hand. A
        field name the schema already has, or a bad BSON type, raises ValueError (one line) and
        deploys nothing."""
        field = self.check_field(field or self.default_field())
        bson_type = bson_type or DEFAULT_BSON_TYPE
        try:
            _schema.parse_bson_type(bson_type)
        except ValueError as exc:
            raise ValueError(f"{exc}; nothing was deployed") from None
        result = self.session.deploy_schema_change(field, bson_type)
        now = self.session.now()
        lines = [f"Deployed the optional field {field} ({bson_type}) at {self.at(now)}: {result.status}."]
        if self.session.mode == "production":
            delay = getattr(getattr(self.session, "params", None), "resync_delay_s", None)
            when = (f" at {self.at(now + float(delay))} (in about {delay:g} s)" if delay is not None
                    else " in a few minutes")
            lines.append(f"Production mode: translation to Atlas halts; the server re-imports the collection{when}.")
        return lines

    def wait(self, seconds: Any, cancel: threading.Event | None = None) -> list[str]:
        """Let `seconds` pass (in real time, really; in virtual time, at once). Setting `cancel`
        (from another thread) ends a real-time wait at its next slice: "Wait cancelled at ..."."""
        try:
            seconds = _checks.number("seconds", seconds, 0, MAX_WAIT_S)
        except InputError:  # one message for every refusal: the range it must be in
            raise InputError("seconds", f"must be a number from 0 to {MAX_WAIT_S:,.0f}, got {seconds!r}") from None
        if cancel is None or not self.session.realtime:
            self.session.wait(seconds)
            return [f"Clock at {self.at(self.session.now())}."]
        target = self.session.now() + seconds
        while self.session.now() < target:
            if cancel.is_set():
                return [f"Wait cancelled at {self.at(self.session.now())}."]
            self.session.wait_until(min(target, self.session.now() + _CLOCK_PERIOD_S))
        return [f"Clock at {self.at(self.session.now())}."]

    # -- Run test -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        thread = self._run_thread
        return thread is not None and thread.is_alive()

    def current_run_dir(self) -> Path | None:
        """The running test's run directory, or None."""
        return self._run_out if self.running else None

    def progress(self) -> tuple[float, float] | None:
        """(elapsed, total) seconds of the running test, or None."""
        control = self._control
        if not self.running or control is None or control.end_s is None:
            return None
        elapsed = control.elapsed_s
        if self.session.realtime and self._run_started_wall is not None:
            elapsed = max(elapsed, time.monotonic() - self._run_started_wall)
        return min(elapsed, control.end_s), control.end_s

    def run_test(self, writes: int = 20, interval_s: float = 1.0, deploy_at_s: float | str | None = None,
                 settle_s: float = 300.0, field: str | None = None, bson_type: str | None = None) -> list[str]:
        """Start the report's Run test in its own thread and return at once. Its first lines are
        emitted (not returned), before the run's own lines.

        `deploy_at_s=None` (the default): no automatic deploy; deploy by hand while it runs,
        as the report's author did. A number (or "auto"): deploy then, unless the user
        deploys by hand first. Raises ScenarioError (a ValueError) on bad input."""
        if self.running:
            raise ValueError("Run test: a Run test is already running; Stop it first")
        field = field or self.default_field()
        scenario = Scenario(writes=writes, interval_s=interval_s, deploy_at_s=deploy_at_s, settle_s=settle_s,
                            field=field, bson_type=bson_type or DEFAULT_BSON_TYPE,
                            **({"params": self.session.params} if hasattr(self.session, "params") else {}))
        out = driver.default_run_dir(self.runs_dir)
        control = driver.RunControl(
            on_write=lambda n, text, remaining: self.emit(f'Adding node with text "{text}" ({remaining} remaining)'))
        self._control, self._run_out = control, out
        self._run_started_wall = time.monotonic()
        waiting = self.waiting_for()
        if waiting is None:
            self.run_t0 = self.session.now()  # the user's clock restarts (the driver's t0 is this instant or later)
        self.starting = waiting is not None
        self.last_error = None
        self.analysing = False
        deploy = ("no automatic deploy: deploy the schema change by hand while it runs, as in the report"
                  if scenario.deploy_at_s is None else
                  f"the schema change deployed at {scenario.deploy_at_s:g} s unless you deploy it by hand first")
        lines = [f"Run test: {scenario.writes} writes {scenario.interval_s:g} s apart, then {scenario.settle_s:g} s of "
                 f"watching ({scenario.end_s:g} s in all); {deploy}. Recording to {shown_path(out)}"]
        if waiting:  # an earlier deploy's halt goes on: a run inside it could not show the loss
            lines.append(f"Run test waits for the earlier deploy's re-import first ({waiting}): a run started inside "
                         f"a halt cannot show the loss (its notes reach Atlas only after that re-import). It starts "
                         f"when translation resumes, its clock from 0; Stop cancels it.")
        # Said before the run's thread starts, so they come before anything the run says (in
        # virtual time a run can be over before this method could return its lines).
        self.emit("\n".join(lines))
        thread = threading.Thread(target=self._run, args=(scenario, out, control), name="repro_kit: Run test",
                                  daemon=True)
        self._run_thread = thread
        thread.start()
        return []

    def _run(self, scenario: Scenario, out: Path, control: driver.RunControl) -> None:
        try:
            if self.starting:
                while self.halt is not None:  # the earlier deploy's re-import first (run_test said why)
                    if control.stop_requested:
                        self.emit("Run test cancelled before its first write (it waited for the re-import): "
                                  "nothing recorded.")
                        return
                    self.session.wait_until(self.session.now() + _CLOCK_PERIOD_S)
                self.run_t0 = self.session.now()
                self.starting = False
                self.emit("Run test starts now: translation has resumed; times are seconds since this start.")
            run = driver.run_test(self.session, scenario=scenario, out=out, progress=False, control=control)
            if control.t0 is not None:
                self.run_t0 = control.t0  # the recorded run's zero stays the clock's until the next Run test
            self.analysing = True
            if control.stopped_at_s is not None:
                self.emit(f"Run test stopped at {control.stopped_at_s:.1f} s: the partial run is kept in "
                          f"{shown_path(out)}. Analysing…")
            else:
                self.emit(f"Run test finished; the run is in {shown_path(out)}. Analysing…")
            analysis = findings.analyse(run)
            report.write_report(analysis, out)
            self.last_run, self.last_analysis = run, analysis
            self.analysing = False
            self.emit(analysis.verdict.summary())
            self.emit(f"Report: {shown_path(Path(out) / 'report.md')}")
        except Exception as exc:
            self._say_error("Run test", exc, out)
        finally:
            self.analysing = self.starting = False

    def stop(self, timeout: float | None = 30.0) -> list[str]:
        """End the running test at its next step; the partial run stays loadable."""
        control, thread, out = self._control, self._run_thread, self._run_out
        if control is None or thread is None or out is None or not thread.is_alive():
            return ["No Run test is running."]
        control.stop()
        thread.join(timeout)
        return [f"(`repro-kit report {shown_path(out)}` analyses the partial run again at any time.)"]

    def wait_for_run(self, timeout: float | None = None) -> bool:
        """Block until the running test (if any) has ended; True when it has."""
        thread = self._run_thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    # -- the end ---------------------------------------------------------------------------
    def _say_error(self, action: str, exc: BaseException, where: Path | None = None) -> None:
        """The error in one line (`error_line`), kept as `last_error` and emitted."""
        self.last_error = error_line(action, exc, where)
        self.emit(self.last_error)

    def close(self) -> None:
        """Stop a running test, the clock and the listeners."""
        if self.running:
            self.stop()
        self._closed.set()
        if self._clock is not None:
            self._clock.join(2.0)
        self._unsubscribe()
