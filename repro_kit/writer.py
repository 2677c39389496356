"""Timed writes: the original tool's "Add to root" and "Run test", plus the deploy as a fault.

`run_test` is the report's experiment as a script: append a node to the root every
`interval_s`, deploy the schema change (the nemesis) at `deploy_at_s`, keep watching
through `settle_s`, and record it all to a run directory.
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from repro_kit import recording
from repro_kit import scenario as _scenario
from repro_kit._session import Session
from repro_kit.emulator._scheduling import relaxed_gc
from repro_kit.watcher import Watcher

__all__ = ["add_to_root", "run_test", "RunControl", "validate_schedule", "DEFAULT_FIELD", "DEFAULT_BSON_TYPE"]

DEFAULT_FIELD = _scenario.DEFAULT_FIELD
DEFAULT_BSON_TYPE = _scenario.DEFAULT_BSON_TYPE
_WRITE, _DEPLOY, _POLL, _END = _scenario.WRITE, _scenario.DEPLOY, _scenario.POLL, _scenario.END


def add_to_root(session: Session, text: str) -> str:
    """The original "Add to root": create a node and append it to the root's children."""
    return session.add_to_root(text)


def validate_schedule(writes: Any, interval_s: Any, deploy_at_s: Any, settle_s: Any, poll_s: Any = 5.0) -> None:
    """Raise ValueError (a `ScenarioError`) naming the first bad input of a timed run."""
    _scenario.Scenario(writes=writes, interval_s=interval_s, deploy_at_s=deploy_at_s, settle_s=settle_s,
                       poll_s=poll_s)


class RunControl:
    """Steer a running `run_test` from another thread, and hear from it.

    `stop()` ends the run at its next step (a partial run, kept and loadable); `deploy()`
    deploys the schema change by hand while the run goes, recorded in its history like
    the scheduled one (which is then skipped: the user deployed). `on_write(n, text,
    remaining)` is called as each write is made. The menu and the control panel hold one
    per Run test; a script needs none.
    """

    def __init__(self, on_write: Callable[[int, str, int], None] | None = None) -> None:
        self.on_write = on_write
        self._stop = threading.Event()
        self._requests: queue.Queue[tuple[str, str, concurrent.futures.Future]] = queue.Queue()
        self.manual_deploys = 0
        self.t0: float | None = None
        self.end_s: float | None = None
        self.elapsed_s = 0.0
        self.stopped_at_s: float | None = None

    def stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def deploy(self, field: str, bson_type: str, timeout: float | None = 60.0) -> Any:
        """Deploy `field` now, from the run's own thread (so the run records it); returns the
        DeployResult, or raises what the deploy raised."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._requests.put((field, bson_type, future))
        return future.result(timeout=timeout)

    def _serve(self, perform: Callable[[str, str], Any]) -> None:
        while True:
            try:
                field, bson_type, future = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(perform(field, bson_type))
            except Exception as exc:
                future.set_exception(exc)

    def _cancel_pending(self) -> None:
        while True:
            try:
                _f, _b, future = self._requests.get_nowait()
            except queue.Empty:
                return
            future.set_exception(RuntimeError("the run ended before the deploy could be made"))


#: Longest stretch a real-time run waits without looking at its RunControl (stop, deploy).
_SLICE_S = 0.1


def default_run_dir(root: str | Path | None = None) -> Path:
    """A new run directory under `root` (default: `recording.runs_root()`, shared by the CLI,
    the control panel and the notebooks)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return Path(root if root is not None else recording.runs_root()) / stamp


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
) -> "recording.Run":
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
    `control` (a `RunControl`) lets another thread stop the run or deploy by hand.
    """
    if scenario is None:
        params = getattr(session, "params", None)
        scenario = _scenario.Scenario(
            writes=writes, interval_s=interval_s, deploy_at_s=deploy_at_s, settle_s=settle_s, poll_s=poll_s,
            field=field, bson_type=bson_type, pause_during_resync=pause_during_resync,
            **({"params": params} if params is not None else {}))
    elif not isinstance(scenario, _scenario.Scenario):
        raise ValueError(f"scenario: must be a Scenario, got {type(scenario).__name__}")
    sc = scenario
    writes, interval_s, deploy_at_s, settle_s, poll_s = sc.writes, sc.interval_s, sc.deploy_at_s, sc.settle_s, sc.poll_s
    field, bson_type, pause_during_resync = sc.field, sc.bson_type, sc.pause_during_resync
    path = Path(out) if out is not None else default_run_dir()
    root = session.root()
    meta: dict[str, Any] = {
        **session.describe(),
        "writes": writes,
        "interval_s": interval_s,
        "deploy_at_s": deploy_at_s,
        "settle_s": settle_s,
        "poll_s": poll_s,
        "field": field,
        "bson_type": bson_type,
        "root_id": str(root["_id"]),
        "pause_during_resync": pause_during_resync,
    }  # the recorder adds started_at, versions and finished
    t0 = session.now()
    wall0 = time.monotonic()
    end = sc.end_s
    schedule = sc.schedule()

    bar = None
    if progress or (progress is None and session.realtime and sys.stderr.isatty()):  # no bar in logs
        from tqdm.auto import tqdm

        bar = tqdm(total=round(end, 1), unit="s", desc="run test", leave=False)

    factory = recorder if recorder is not None else recording.RunRecorder
    with factory(path, meta) as rec:
        def rel(t: float) -> float:
            return round(t - t0, 6)

        pending: dict[str, None] = {}
        lateness: list[float] = []

        def on_ack(node_id: str, t: float) -> None:
            if node_id in pending:
                del pending[node_id]
                rec.op(process=0, type="ok", f="add", value=node_id, time=rel(t))

        earlier = session.nemesis_log()
        nemesis_seen = len(earlier)
        last_state = next((e for e in reversed(earlier) if e["f"] in ("halt", "resume")), None)
        halted = last_state is not None and last_state["f"] == "halt"
        if halted:  # a deploy before this run halted translation: the run starts inside that halt, and says so
            rec.op(process="nemesis", type="info", f="halt", time=0.0,
                   value={**(last_state.get("value") or {}), "before_run": True, "halted_at_s": rel(last_state["time"])})
        held: list[int] = []

        def drain_nemesis() -> None:
            nonlocal nemesis_seen, halted
            log = session.nemesis_log()
            for entry in log[nemesis_seen:]:
                rec.op(process="nemesis", type="info", f=entry["f"], value=entry.get("value"), time=rel(entry["time"]))
                halted = {"halt": True, "resume": False}.get(entry["f"], halted)
            nemesis_seen = len(log)

        def write(i: int) -> None:
            now = rel(session.now())
            text = f"Test node {i + 1}"
            if control is not None and control.on_write is not None:
                control.on_write(i + 1, text, writes - i - 1)
            node_id = session.add_to_root(text)
            pending[node_id] = None
            rec.op(process=0, type="invoke", f="add", value=node_id, time=now)
            if session.is_acknowledged(node_id):
                on_ack(node_id, session.now())

        def deploy(deploy_field: str, deploy_type: str, manual: bool = False) -> Any:
            value = {"field": deploy_field, "bson_type": deploy_type, **({"manual": True} if manual else {})}
            rec.op(process="nemesis", type="invoke", f="deploy", value=value, time=rel(session.now()))
            try:
                result = session.deploy_schema_change(deploy_field, deploy_type)
            except Exception as exc:  # recorded, then re-raised: the run stays readable
                rec.op(process="nemesis", type="fail", f="deploy",
                       value={**value, "error": str(exc).splitlines()[0][:200]}, time=rel(session.now()))
                raise
            drain_nemesis()
            rec.op(process="nemesis", type="ok" if result.status == "successful" else "fail", f="deploy",
                   value={**value, "status": result.status}, time=rel(session.now()))
            return result

        def manual_deploy(deploy_field: str, deploy_type: str) -> Any:
            assert control is not None
            control.manual_deploys += 1  # the scheduled deploy, if any, is skipped: the user deployed
            return deploy(deploy_field, deploy_type, manual=True)

        def wait_until(target: float) -> bool:
            """Let time pass until `target`, serving the control between slices; False: stopped."""
            if control is None:
                session.wait_until(target)
                return True
            while True:
                control._serve(manual_deploy)
                control.elapsed_s = session.now() - t0
                if control.stop_requested:
                    return False
                now = session.now()
                if now >= target:
                    return True
                session.wait_until(min(target, now + _SLICE_S) if session.realtime else target)

        watcher = Watcher(session, lambda e: (drain_nemesis(), rec.event(e)), t0)
        watcher.start()
        unsubscribe_acks = session.subscribe_acks(on_ack)
        unsubscribe_trace = session.subscribe_trace(lambda r: rec.trace({**r, "time": rel(r["time"])}))
        if control is not None:
            control.t0, control.end_s = t0, end
        stopped_at: float | None = None
        gc_relaxed = relaxed_gc()
        gc_relaxed.__enter__()  # the model runs without the collector rescanning its live state
        try:
            for at, kind, i in schedule:
                if not wait_until(t0 + at):
                    stopped_at = rel(session.now())
                    break
                drain_nemesis()
                if session.realtime:
                    lateness.append(time.monotonic() - wall0 - at)
                if bar is not None:
                    bar.update(round(at, 1) - bar.n)
                if unsubscribe_acks is None:  # backends that cannot push acks
                    for node_id in [n for n in pending if session.is_acknowledged(n)]:
                        on_ack(node_id, session.now())
                if held and not halted:
                    for j in held:
                        write(j)
                    held.clear()
                if kind == _WRITE:
                    if pause_during_resync and halted:
                        held.append(i)
                    else:
                        write(i)
                elif kind == _DEPLOY:
                    if control is None or not control.manual_deploys:
                        deploy(field, bson_type)
                elif kind == _POLL:
                    watcher.poll()
            drain_nemesis()
            for node_id in list(pending):
                rec.op(process=0, type="info", f="add", value=node_id, time=rel(session.now()))
        finally:
            gc_relaxed.__exit__(None, None, None)
            if control is not None:
                control._cancel_pending()
                control.elapsed_s = session.now() - t0
                control.stopped_at_s = stopped_at
            watcher.stop()
            if unsubscribe_acks is not None:
                unsubscribe_acks()
            if unsubscribe_trace is not None:
                unsubscribe_trace()
            if bar is not None:
                bar.close()
        if stopped_at is not None:  # stopped by hand: a partial run, and it says so
            extra: dict[str, Any] = {"finished": False, "stopped_at_s": stopped_at, "duration_s": stopped_at}
        else:
            extra = {"finished": True, "ended_at_s": round(end, 6), "duration_s": round(end, 6)}
        if lateness:
            ordered = sorted(lateness)
            extra["lateness_ms"] = {
                "p50": round(1000 * ordered[len(ordered) // 2], 3),
                "p99": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
                "max": round(1000 * ordered[-1], 3),
            }
        rec.finish(extra)
    if hasattr(rec, "load"):
        return rec.load()
    return recording.load_run(path)
