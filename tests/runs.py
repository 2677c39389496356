"""Synthetic runs for the evidence-pipeline tests, written with the real RunRecorder.

`record_scenario` plays the seed report's story without the emulator: a device adds
one node a second, a schema deploy at `deploy_at_s` halts translation, and ~180 s
later a resync batch drops the nodes appended after the deploy from the root's
children (their documents survive). Options add a vanish-and-return node and a node
Atlas shows late, so each checker rule has a case that can fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repro_kit.recording import RunRecorder

ROOT_ID = "00000000-0000-4000-8000-000000000000"


def node_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i + 1:012d}"


class _Views:
    """Tracks each observer's children/docs so every notification carries true counts.

    Changes are queued in any order and replayed in time order by `play`."""

    def __init__(self) -> None:
        self.children: dict[str, set[str]] = {"device": set(), "atlas": set()}
        self.docs: dict[str, set[str]] = {"device": set(), "atlas": set()}
        self.events: list[dict[str, Any]] = []
        self.queue: list[tuple[float, int, str, tuple, dict]] = []

    def later(self, t: float, method: str, *args: Any, **kwargs: Any) -> None:
        self.queue.append((t, len(self.queue), method, (t, *args), kwargs))

    def play(self) -> list[dict[str, Any]]:
        for _, _, method, args, kwargs in sorted(self.queue, key=lambda q: (q[0], q[1])):
            getattr(self, method)(*args, **kwargs)
        return self.events

    def emit(self, t: float, observer: str, kind: str, node: str | None = None, **extra: Any) -> None:
        ev: dict[str, Any] = {"time": t, "observer": observer, "kind": kind}
        if node is not None:
            ev["node_id"] = node
        ev.update(extra)
        self.events.append(ev)

    def change(self, t: float, observer: str, *, insert=(), delete=(), enter=(), leave=()) -> None:
        for n in insert:
            self.docs[observer].add(n)
            self.emit(t, observer, "doc_insert", n)
        for n in delete:
            self.docs[observer].discard(n)
            self.emit(t, observer, "doc_delete", n)
        for n in enter:
            self.children[observer].add(n)
            self.emit(t, observer, "enter", n)
        for n in leave:
            self.children[observer].discard(n)
            self.emit(t, observer, "leave", n)
        self.counts(t, observer, "counts")

    def counts(self, t: float, observer: str, kind: str) -> None:
        self.emit(t, observer, kind, root_children=len(self.children[observer]),
                  nodes_total=len(self.docs[observer]))


def record_scenario(
    path: Path,
    *,
    writes: int = 20,
    interval_s: float = 1.0,
    first_write_s: float = 1.0,
    deploy_at_s: float | None = 5.5,
    loss: bool = True,
    loss_at_s: float = 185.0,
    resume_at_s: float = 185.5,
    atlas_delay_s: float = 0.1,
    vanish: tuple[int, float, float] | None = None,
    atlas_late: dict[int, float] | None = None,
    end_s: float = 200.0,
    finish: bool = True,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Record a synthetic run in `path` and return it.

    vanish=(i, leave_s, back_s): node i leaves the device's root children and returns.
    atlas_late={i: delay_s}: Atlas shows node i only after that delay.
    With loss=False (development mode / diff encoding) nothing is halted or dropped.
    """
    base_meta = {
        "backend": "emulator", "mode": "production" if loss else "development", "encoding": "replace",
        "writes": writes, "interval_s": interval_s, "deploy_at_s": deploy_at_s, "settle_s": 180.0,
        "seed": 7, "realtime": False, "params": {"resync_delay": 180.0, "resync_batch_size": 20},
        "user_id": "user-1", "root_id": ROOT_ID,
    }
    base_meta.update(meta or {})
    v = _Views()
    ops: list[tuple[float, int | str, str, str, Any]] = []
    for obs in ("device", "atlas"):
        v.later(0.0, "change", obs, insert=[ROOT_ID])
        if obs == "atlas":
            v.later(0.0, "counts", obs, "poll")

    halted = loss and deploy_at_s is not None
    ids = [node_id(i) for i in range(writes)]
    post_deploy = [n for i, n in enumerate(ids)
                   if deploy_at_s is not None and first_write_s + i * interval_s >= deploy_at_s]
    pre_deploy = [n for n in ids if n not in post_deploy]
    for i, n in enumerate(ids):
        t = first_write_s + i * interval_s
        ops.append((t, 0, "invoke", "add", n))
        v.later(t, "change", "device", insert=[n], enter=[n])
        ops.append((t + 0.05, 0, "ok", "add", n))
        if halted and n in post_deploy:
            continue  # Atlas gets it only when the halt lifts
        t_atlas = t + 0.05 + (atlas_late or {}).get(i, atlas_delay_s)
        v.later(t_atlas, "change", "atlas", insert=[n], enter=[n])

    if deploy_at_s is not None:
        deploy = {"field": "tags", "bson_type": "array<string>"}
        ops.append((deploy_at_s, "nemesis", "invoke", "deploy", deploy))
        ops.append((deploy_at_s + 1.0, "nemesis", "ok", "deploy", deploy))
        if halted:
            ops.append((deploy_at_s + 0.01, "nemesis", "info", "halt", {"snapshot_docs": len(pre_deploy) + 1}))
            v.later(loss_at_s, "emit", "device", "batch", batch=len(pre_deploy) + 1)
            v.later(loss_at_s, "change", "device", leave=post_deploy)
            ops.append((resume_at_s, "nemesis", "info", "resume", {"snapshot_docs": len(pre_deploy) + 1}))
            v.later(resume_at_s + 0.1, "change", "atlas", insert=post_deploy)

    if vanish is not None:
        i, leave_s, back_s = vanish
        v.later(leave_s, "change", "device", leave=[ids[i]])
        v.later(back_s, "change", "device", enter=[ids[i]])

    t = 10.0
    while t <= end_s:  # a person refreshing the Atlas page every 10 s
        v.later(t, "counts", "atlas", "poll")
        t += 10.0

    ops.sort(key=lambda op: op[0])
    rec = RunRecorder(path, base_meta)
    for t, process, typ, f, value in ops:
        rec.op(process, typ, f, value, time=t)
    for ev in v.play():
        rec.event(ev)
    if finish:
        rec.finish({"duration_s": end_s})
    else:
        rec.close()
    return Path(path)


def post_deploy_ids(writes: int = 20, first_write_s: float = 1.0, interval_s: float = 1.0,
                    deploy_at_s: float = 5.5) -> list[str]:
    """The ids record_scenario appends after the deploy began, in ack order."""
    return [node_id(i) for i in range(writes) if first_write_s + i * interval_s >= deploy_at_s]
