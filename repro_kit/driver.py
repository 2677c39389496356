"""The run driver: the report's experiment as a schedule over a Session, recorded from its history.

`run_test` is what the original tool's "Run test" did, plus the fault: append a node to the root
every `interval_s`, deploy the schema change at `deploy_at_s`, keep watching through `settle_s`.
The driver only makes the schedule's operations happen at their times; everything it records
comes from the session's one history stream (ops, nemesis, events, trace), plus its own
observations (an Atlas poll, the final read), so a deploy made by hand from another thread, an
acknowledgement or a halt lands in the run exactly as it happened. A fleet is the same driver
over many users (`repro_kit.fleets`).
"""

from __future__ import annotations

import datetime as _dt
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from repro_kit import _checks, recording
from repro_kit import scenario as _scenario
from repro_kit._history import Event, Nemesis, Op, Record, Trace
from repro_kit._session import Session

__all__ = ["add_to_root", "run_test", "RunControl", "Driver", "default_run_dir", "DEFAULT_FIELD",
           "DEFAULT_BSON_TYPE"]

DEFAULT_FIELD = _scenario.DEFAULT_FIELD
DEFAULT_BSON_TYPE = _scenario.DEFAULT_BSON_TYPE
#: Longest stretch a real-time run waits without looking at its RunControl (stop).
_SLICE_S = 0.1

Step = Callable[[], None]


def add_to_root(session: Session, text: str) -> str:
    """The original "Add to root": create a node and append it to the root's children."""
    return session.add_to_root(text)


def default_run_dir(root: str | Path | None = None, prefix: str = "") -> Path:
    """A new run directory under `root` (default: `recording.runs_root()`, shared by the CLI,
    the control panel and the notebooks)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return Path(root if root is not None else recording.runs_root()) / f"{prefix}{stamp}"


class RunControl:
    """Steer a running run from another thread, and hear from it.

    `stop()` ends the run at its next step (a partial run, kept and loadable). `on_write(n, text,
    remaining)` is called as each write is made. A deploy by hand needs nothing from here: call
    the session's `deploy_schema_change`, and the run records it from the session's history
    (and skips its own scheduled deploy). The menu and the panel hold one per Run test."""

    def __init__(self, on_write: Callable[[int, str, int], None] | None = None) -> None:
        self.on_write = on_write
        self._stop = threading.Event()
        self.t0: float | None = None
        self.end_s: float | None = None
        self.elapsed_s = 0.0
        self.stopped_at_s: float | None = None

    def stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()


class Driver:
    """Makes steps happen at their times on a clock with a history stream, and records the run.

    `clock`: a Session, or a fleet's world (anything with `now`, `wait_until` and `history`).
    Records arrive from the clock's history (`listen`) and are written relative to `t0`."""

    def __init__(self, clock: Any, recorder: Any, *, control: RunControl | None = None,
                 realtime: bool = False, progress: Any = None) -> None:
        self.clock = clock
        self.rec = recorder
        self._event_all = getattr(recorder, "event_all", None)  # several events at once (`listen_all`), if it can
        self.control = control
        self.realtime = realtime
        self.progress = progress
        self.t0 = clock.now()
        self.deploys = 0
        self.deploying = False  # the schedule's own deploy is under way (any other is by hand)
        self._by_hand = False  # the latest deploy was made by hand
        self.halted = False
        self.pending: dict[int, dict[str, None]] = {}  # process -> node ids invoked, not yet acknowledged
        self.lateness: list[float] = []
        self._wall0 = time.monotonic()
        self._lock = threading.Lock()

    def rel(self, t: float) -> float:
        return round(t - self.t0, 6)

    # -- the stream ---------------------------------------------------------------------------
    def listen(self, record: Record) -> None:
        """One history record, written to the run (times relative to the run's start)."""
        with self._lock:
            self._record(record)

    def listen_all(self, records: list[Record]) -> None:
        """Several records at once, in order (a device notification's events): each as `listen`
        writes it, the events handed to the recorder together (`RunRecorder.event_all`)."""
        events = self._event_all
        with self._lock:
            if events is None:
                for record in records:
                    self._record(record)
                return
            lines = []
            for record in records:
                if type(record) is Event:
                    lines.append(self._event_line(record))
                    continue
                if lines:
                    events(lines, take=True)
                    lines = []
                self._record(record)
            if lines:
                events(lines, take=True)

    def _event_line(self, event: Event) -> dict[str, Any]:
        """The event's line, its time relative to the run: a new dict in the written order, the recorder's to take."""
        line = event.line()
        line["time"] = round(event.time - self.t0, 6)  # `rel`, inlined: a fleet records millions
        return line

    def _record(self, record: Record) -> None:
        if isinstance(record, Event):
            self.rec.event(self._event_line(record), take=True)
            return
        t = round(record.time - self.t0, 6)  # `rel`, inlined
        if isinstance(record, Op):
            self._op(record, t)
        elif isinstance(record, Nemesis):
            value = record.value
            if record.f == "deploy":
                if record.type == "invoke":
                    self.deploys += 1
                    self._by_hand = not self.deploying  # not the schedule's: a deploy by hand
                if self._by_hand and isinstance(value, dict):
                    value = {**value, "manual": True}
            self.halted = {"halt": True, "resume": False}.get(record.f, self.halted)
            self.rec.op(process="nemesis", type=record.type, f=record.f, value=value, time=t)
        elif isinstance(record, Trace):
            self.rec.trace({**record.fields, "time": t})

    def _op(self, op: Op, t: float) -> None:
        if op.f == "add" and op.value is not None:
            waiting = self.pending.setdefault(op.process, {})
            if op.type == "invoke":
                waiting[op.value] = None
            else:
                waiting.pop(op.value, None)
        self.rec.op(process=op.process, type=op.type, f=op.f, value=op.value, time=t)

    # -- time -----------------------------------------------------------------------------------
    def wait(self, at: float) -> bool:
        """Let time pass until run time `at`, looking at the control between slices; False: stopped."""
        target = self.t0 + at
        control = self.control
        if control is None:
            self.clock.wait_until(target)
            return True
        while True:
            now = self.clock.now()
            control.elapsed_s = now - self.t0
            if control.stop_requested:
                return False
            if now >= target:
                return True
            self.clock.wait_until(min(target, now + _SLICE_S) if self.realtime else target)

    def run(self, steps: Iterable[tuple[float, Step]]) -> float | None:
        """Each step at its run time, in order; returns the run time it was stopped at, or None."""
        for at, step in steps:
            if not self.wait(at):
                return self.rel(self.clock.now())
            if self.realtime:
                self.lateness.append(time.monotonic() - self._wall0 - at)
            if self.progress is not None:
                self.progress(at)
            step()
        return None

    def settle(self, done: Callable[[], bool], step_s: float, bound_s: float) -> None:
        """After the schedule: wait in steps until `done()` or run time `bound_s`."""
        while not done() and self.clock.now() - self.t0 < bound_s:
            at = min(bound_s, self.clock.now() - self.t0 + step_s)
            if not self.wait(at):
                return
            if self.progress is not None:
                self.progress(at)

    # -- the end --------------------------------------------------------------------------------
    def read(self, process: int, view: Any) -> None:
        """The final read of a user's device view (Jepsen's set-full: what the checker trusts at the end)."""
        self.read_ids(process, None if view.root is None else view.root["_id"], [c["_id"] for c in view.children],
                      len(view.documents))

    def read_ids(self, process: int, root_id: Any, children: list[Any], nodes_total: int) -> None:
        """`read` from the ids alone (a fleet reads ten thousand devices without copying their nodes)."""
        t = self.rel(self.clock.now())
        value = {"root_id": None if root_id is None else str(root_id), "children": [str(c) for c in children],
                 "nodes_total": int(nodes_total)}
        with self._lock:
            self.rec.op(process=process, type="invoke", f="read", value=None, time=t)
            self.rec.op(process=process, type="ok", f="read", value=value, time=t)

    def unacknowledged(self) -> None:
        """Writes still unacknowledged at the end: indeterminate (Jepsen's `info`)."""
        t = self.rel(self.clock.now())
        with self._lock:
            for process, waiting in self.pending.items():
                for node_id in list(waiting):
                    self.rec.op(process=process, type="info", f="add", value=node_id, time=t)
                waiting.clear()

    def finish_meta(self, stopped_at: float | None, end_s: float) -> dict[str, Any]:
        if stopped_at is not None:  # stopped by hand: a partial run, and it says so
            extra: dict[str, Any] = {"finished": False, "stopped_at_s": stopped_at, "duration_s": stopped_at}
        else:
            extra = {"finished": True, "ended_at_s": round(end_s, 6), "duration_s": round(end_s, 6)}
        if self.lateness:
            ordered = sorted(self.lateness)
            extra["lateness_ms"] = {
                "p50": round(1000 * ordered[len(ordered) // 2], 3),
                "p99": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
                "max": round(1000 * ordered[-1], 3),
            }
        return extra


def _scenario_of(session: Session, scenario: _scenario.Scenario | None, **inputs: Any) -> _scenario.Scenario:
    if scenario is None:
        params = getattr(session, "params", None)
        return _scenario.Scenario(**inputs, **({"params": params} if params is not None else {}))
    return _checks.instance("scenario", scenario, _scenario.Scenario, "a Scenario")


def run_test(
    session: Session,
    writes: int = 20,
    interval_s: float = 1.0,
    deploy_at_s: float | str | None = _scenario.AUTO,
    settle_s: float = 300.0,
    *,
    field: str = DEFAULT_FIELD,
    bson_type: str = DEFAULT_BSON_TYPE,
    out: str | Path | None = None,
    poll_s: float = 5.0,
    progress: bool | None = None,
    recorder: Any = None,
    pause_during_resync: bool = False,
    scenario: _scenario.Scenario | None = None,
    control: RunControl | None = None,
) -> recording.Run:
    """Run the report's experiment on `session` and return the recorded run.

    Writes happen at 0, interval_s, ... (seconds since run start); the deploy, when
    `deploy_at_s` is not None, at `deploy_at_s` ("auto": between two early writes, 5.5 s
    for the defaults; after a write due at the same instant). `scenario` (a `Scenario`)
    gives all of these at once instead. Every input is checked (`ScenarioError`) before
    anything runs, and the run's cost is bounded (`repro_kit.scenario` limits).
    A progress bar shows in real time on a terminal (`progress=None`), never in virtual time.
    `recorder` is a factory `(path, meta) -> recorder` (default `recording.RunRecorder`);
    one with a `load()` method returns the run itself (sweeps keep runs in memory).
    `pause_during_resync` is an app-level mitigation: writes due while the control plane
    has halted translation are held by the app and made once it resumes.
    `control` (a `RunControl`) lets another thread stop the run.
    """
    sc = _scenario_of(session, scenario, writes=writes, interval_s=interval_s, deploy_at_s=deploy_at_s,
                      settle_s=settle_s, poll_s=poll_s, field=field, bson_type=bson_type,
                      pause_during_resync=pause_during_resync)
    path = Path(out) if out is not None else default_run_dir()
    meta = {"kind": "run", **session.describe(), **sc.run_meta(), "root_id": str(session.root()["_id"])}
    factory = recorder if recorder is not None else recording.RunRecorder
    with factory(path, meta) as rec:
        driver = Driver(session, rec, control=control, realtime=session.realtime)
        if control is not None:
            control.t0, control.end_s = driver.t0, sc.end_s
        steps = _TestSteps(session, sc, driver, control)
        bar = None
        if progress or (progress is None and session.realtime and sys.stderr.isatty()):  # no bar in logs
            # imported here, not at the top: tqdm.auto took ~50 ms (a quarter of the imports) of the
            # report's scenario in a fresh process, which never draws a bar (`python -X importtime`, issue 21)
            from tqdm.auto import tqdm  # noqa: PLC0415 - see above

            bar = tqdm(total=round(sc.end_s, 1), unit="s", desc="run test", leave=False)
            driver.progress = lambda at: bar.update(round(at, 1) - bar.n)
        unsubscribe = session.history(driver.listen)
        stopped_at: float | None = None
        try:
            stopped_at = driver.run(steps)
            driver.read(0, session.view(session.observers[0]))
            driver.unacknowledged()
        finally:
            unsubscribe()
            if control is not None:
                control.elapsed_s = session.now() - driver.t0
                control.stopped_at_s = stopped_at
            if bar is not None:
                bar.close()
        rec.finish(driver.finish_meta(stopped_at, sc.end_s))
    if hasattr(rec, "load"):
        return rec.load()
    return recording.load_run(path)


class _TestSteps:
    """The Run test's schedule as steps: writes (held while translation is halted when the app
    pauses during a resync), the deploy (skipped when one was made by hand), Atlas polls."""

    def __init__(self, session: Session, sc: _scenario.Scenario, driver: Driver, control: RunControl | None) -> None:
        self.session, self.sc, self.driver, self.control = session, sc, driver, control
        self.held: list[int] = []

    def __iter__(self) -> Any:
        for at, kind, i in self.sc.schedule():
            yield at, (lambda kind=kind, i=i: self.step(kind, i))

    def step(self, kind: int, i: int) -> None:
        if self.held and not self.driver.halted:
            for j in self.held:
                self.write(j)
            self.held.clear()
        if kind == _scenario.WRITE:
            if self.sc.pause_during_resync and self.driver.halted:
                self.held.append(i)
            else:
                self.write(i)
        elif kind == _scenario.DEPLOY:
            if not self.driver.deploys:  # the user deployed by hand during the run: that was the deploy
                self.driver.deploying = True
                try:
                    self.session.deploy_schema_change(self.sc.field, self.sc.bson_type)
                finally:
                    self.driver.deploying = False
        elif kind == _scenario.POLL:
            info = self.session.view("atlas").info
            self.driver.rec.event({"time": self.driver.rel(self.session.now()), "observer": "atlas", "kind": "poll",
                                   "root_children": info.root_children, "nodes_total": info.nodes_total})

    def write(self, i: int) -> None:
        text = f"Test node {i + 1}"
        if self.control is not None and self.control.on_write is not None:
            self.control.on_write(i + 1, text, self.sc.writes - i - 1)
        self.session.add_to_root(text)
