"""Timed writes: the original tool's "Add to root" and "Run test", plus the deploy as a fault.

`run_test` is the report's experiment as a script: append a node to the root every
`interval_s`, deploy the schema change (the nemesis) at `deploy_at_s`, keep watching
through `settle_s`, and record it all to a run directory.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import math
import time
from pathlib import Path
from typing import Any

from repro_kit import recording
from repro_kit._session import Session
from repro_kit.watcher import Watcher

__all__ = ["add_to_root", "run_test", "validate_schedule", "DEFAULT_FIELD", "DEFAULT_BSON_TYPE"]

DEFAULT_FIELD = "tags"
DEFAULT_BSON_TYPE = "array<string>"  # the report's "Array<String>"

# Schedule kinds, in the order they happen when due at the same instant.
_WRITE, _DEPLOY, _POLL, _END = 0, 1, 2, 3


def add_to_root(session: Session, text: str) -> str:
    """The original "Add to root": create a node and append it to the root's children."""
    return session.add_to_root(text)


def validate_schedule(writes: Any, interval_s: Any, deploy_at_s: Any, settle_s: Any, poll_s: Any = 5.0) -> None:
    """Raise ValueError naming the first bad parameter of a timed run."""
    if isinstance(writes, bool) or not isinstance(writes, int) or writes < 1:
        raise ValueError(f"writes: must be a positive integer, got {writes!r}")
    for name, value in (("interval_s", interval_s), ("settle_s", settle_s), ("poll_s", poll_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: must be a number, got {value!r}")
    if interval_s <= 0:
        raise ValueError(f"interval_s: must be > 0, got {interval_s!r}")
    if settle_s < 0:
        raise ValueError(f"settle_s: must be >= 0, got {settle_s!r}")
    if poll_s <= 0:
        raise ValueError(f"poll_s: must be > 0, got {poll_s!r}")
    if deploy_at_s is not None:
        if isinstance(deploy_at_s, bool) or not isinstance(deploy_at_s, (int, float)) or not math.isfinite(deploy_at_s):
            raise ValueError(f"deploy_at_s: must be a number or None, got {deploy_at_s!r}")
        last = (writes - 1) * interval_s
        if not 0 <= deploy_at_s <= last:
            raise ValueError(f"deploy_at_s: must be between 0 and the last write at {last:g} s, got {deploy_at_s!r}")


def default_run_dir(root: str | Path = "runs") -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return Path(root) / stamp


def run_test(
    session: Session,
    writes: int = 20,
    interval_s: float = 1.0,
    deploy_at_s: float | None = 5.5,
    settle_s: float = 300.0,
    *,
    field: str = DEFAULT_FIELD,
    bson_type: str = DEFAULT_BSON_TYPE,
    out: str | Path | None = None,
    poll_s: float = 5.0,
    progress: bool | None = None,
    recorder: Any = None,
    pause_during_resync: bool = False,
) -> "recording.Run":
    """Run the report's experiment on `session` and return the recorded run.

    Writes happen at 0, interval_s, ... (seconds since run start); the deploy, when
    `deploy_at_s` is not None, at `deploy_at_s` (after a write due at the same instant).
    A progress bar shows in real time (`progress=None`), never in virtual time.
    `recorder` is a factory `(path, meta) -> recorder` (default `recording.RunRecorder`);
    one with a `load()` method returns the run itself (sweeps keep runs in memory).
    `pause_during_resync` is an app-level mitigation: writes due while the control plane
    has halted translation are held by the app and made once it resumes.
    """
    validate_schedule(writes, interval_s, deploy_at_s, settle_s, poll_s)
    if deploy_at_s is not None:
        from repro_kit import _schema

        _schema.validate_field_name(field)
        _schema.parse_bson_type(bson_type)
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
    last_write = (writes - 1) * interval_s
    end = last_write + settle_s
    schedule: list[tuple[float, int, int]] = [(i * interval_s, _WRITE, i) for i in range(writes)]
    if deploy_at_s is not None:
        schedule.append((float(deploy_at_s), _DEPLOY, 0))
    schedule += [(k * poll_s, _POLL, k) for k in range(1, int(end // poll_s) + 1)]
    schedule.append((end, _END, 0))
    heapq.heapify(schedule)

    bar = None
    if progress or (progress is None and session.realtime):
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

        nemesis_seen = len(session.nemesis_log())
        halted = False
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
            node_id = session.add_to_root(f"node {i + 1}")
            pending[node_id] = None
            rec.op(process=0, type="invoke", f="add", value=node_id, time=now)
            if session.is_acknowledged(node_id):
                on_ack(node_id, session.now())

        watcher = Watcher(session, lambda e: (drain_nemesis(), rec.event(e)), t0)
        watcher.start()
        unsubscribe_acks = session.subscribe_acks(on_ack)
        unsubscribe_trace = session.subscribe_trace(lambda r: rec.trace({**r, "time": rel(r["time"])}))
        try:
            while schedule:
                at, kind, i = heapq.heappop(schedule)
                session.wait_until(t0 + at)
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
                    value = {"field": field, "bson_type": bson_type}
                    rec.op(process="nemesis", type="invoke", f="deploy", value=value, time=rel(session.now()))
                    try:
                        result = session.deploy_schema_change(field, bson_type)
                    except Exception as exc:  # recorded, then re-raised: the run stays readable
                        rec.op(process="nemesis", type="fail", f="deploy",
                               value={**value, "error": str(exc).splitlines()[0][:200]}, time=rel(session.now()))
                        raise
                    drain_nemesis()
                    rec.op(process="nemesis", type="ok" if result.status == "successful" else "fail", f="deploy",
                           value={**value, "status": result.status}, time=rel(session.now()))
                elif kind == _POLL:
                    watcher.poll()
            drain_nemesis()
            for node_id in list(pending):
                rec.op(process=0, type="info", f="add", value=node_id, time=rel(session.now()))
        finally:
            watcher.stop()
            if unsubscribe_acks is not None:
                unsubscribe_acks()
            if unsubscribe_trace is not None:
                unsubscribe_trace()
            if bar is not None:
                bar.close()
        extra: dict[str, Any] = {"finished": True, "ended_at_s": round(end, 6), "duration_s": round(end, 6)}
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
