"""The blast radius of one deploy across a production-sized user base.

`fleet(users=10_000, ...)` runs many users of one emulated app (`EmulatedWorld`) through one
schema deploy with the same driver as a single Run test (`repro_kit.driver`): every user starts
with `notes_per_user` notes under their root (written through their own device, so the
collection, and the re-import's length, grow as a real app's do), then writes on their own
seeded schedule: one note every `write_every_s` (users staggered across the interval) or, with
`poisson=True`, at exponentially distributed gaps of that mean. The run directory is a normal
one (recorded columnar: history.arrows, events.arrows) whose records carry their user (ops: the
user's process number; events: `user`), so the one checker (`findings.analyse`) judges it;
`FleetAnalysis` groups its verdict by user: the notes written while translation was halted, the
notes orphaned, the users affected, how long the halt lasted (it grows with the collection, which
the re-import covers in batches) and when each loss became visible, in a sentence a post-mortem
can quote: "this deploy orphaned N notes of M users".

A fleet can be split into `partitions` run side by side, on any `concurrent.futures.Executor`, a
Dask cluster's included: an approximation of one server. Each partition is its own server over
its users' part of the collection, its re-import batches interleaved with the other partitions'
over the span one server's would take (`_partition_schedules`), so the halt, the notes orphaned
and the span of the losses agree within a few batches; one user's loss time does not (the order
of the users' roots in the collection follows the latency draws, which differ by partition).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import heapq
import json
import math
import os
import random
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from tqdm.auto import tqdm

from repro_kit import _checks, _schema, plots, recording
from repro_kit.driver import Driver, default_run_dir
from repro_kit.emulator.params import CHOICES, EmulatorParams
from repro_kit.emulator.session import EmulatedSession, EmulatedWorld
from repro_kit.findings import Analysis, analyse

__all__ = ["fleet", "FleetAnalysis", "FleetParams", "load_fleet", "fleet_figure", "write_fleet_report",
           "check_inputs", "halt_growth", "MAX_USERS", "BYTES_PER_NOTE"]

#: Most users one fleet run models.
MAX_USERS = 200_000
#: Memory a fleet takes per document of a user's (their root, notes and writes), for the bound on its
#: size: one user of 20 notes and 20 writes takes 41 of these (~96 KiB). Measured as the growth of the
#: whole fleet call's peak RSS (VmHWM; model, recording, analysis and report, in a fresh process, as
#: `benchmarks/fleet_users.py` runs it) from 3,000 users (586 MiB) to 10,000 users (1,233 MiB): 95 KiB
#: a user, 2,363 bytes a document, rounded up. The peak is the model's, by the end of its run (the
#: server's history, its older entries' instructions packed; the nodes of the devices, the server, the
#: translator's mirror and Atlas, a created note shared by the states that applied it; the delivery's
#: ports); measure again when the model's size changes (it was 2,800 bytes before created objects were
#: shared, 6,400 before the history was packed and the re-import stopped copying the mirror, and 4,600
#: before the delivery object and pure device reads).
BYTES_PER_NOTE = 2_400
#: Memory a fleet may plan to use: the machine's physical memory less a margin, at most this.
_MEMORY_CAP_BYTES = 64 << 30
#: Records a fleet's columnar recording buffers before it appends them as one Arrow batch per log
#: (a few tens of MiB at most: 10,000 users record about 1.7 million records, in ~35 batches).
_FLUSH_EVERY = 50_000
#: The observer whose view a fleet's losses are timed by: each user's own device.
_DEVICE_OBSERVER = "device"
#: Seconds between checks whether the re-import is done and every view agrees.
_SETTLE_STEP_S = 5.0


@dataclasses.dataclass(frozen=True)
class FleetParams:
    """A fleet scenario. Times in seconds since the run starts (after the notes exist); every field
    is checked when it is made (`check_inputs` makes one from `fleet`'s keyword arguments)."""

    users: int = 1000
    devices_per_user: int = 1
    notes_per_user: int = 20
    writes_per_user: int = 20
    write_every_s: float = 1.0
    poisson: bool = False
    deploy_at_s: float | None = 5.5
    settle_s: float | None = None
    """Seconds to keep watching after the last write; None: until the re-import has ended
    and every device, the server and Atlas agree (bounded by `max_duration_s`)."""
    max_duration_s: float = 30 * 86_400.0
    mode: str = "production"
    encoding: str = "replace"
    reimport: str = "all"
    seed: int = 0
    field: str = "tags"
    bson_type: str = "array<string>"
    params: EmulatorParams = dataclasses.field(default_factory=EmulatorParams)

    def __post_init__(self) -> None:
        _checks.integer("users", self.users, 1, MAX_USERS)
        _checks.integer("devices_per_user", self.devices_per_user, 1, 1000)
        _checks.integer("notes_per_user", self.notes_per_user, 0, 100_000)
        _checks.integer("writes_per_user", self.writes_per_user, 0, 100_000)
        _checks.integer("seed", self.seed, 0, 2**63 - 1)
        _checks.number("write_every_s", self.write_every_s, 0, above=True)
        _checks.number("max_duration_s", self.max_duration_s, 0, above=True)
        for name in ("deploy_at_s", "settle_s"):
            if getattr(self, name) is not None:
                _checks.number(name, getattr(self, name), 0)
        _checks.flag("poisson", self.poisson)
        for name in ("mode", "encoding", "reimport"):
            _checks.choice(name, getattr(self, name), CHOICES[name][0])
        if not isinstance(self.params, EmulatorParams):
            raise _checks.InputError("params", f"must be an EmulatorParams, got {type(self.params).__name__}")
        if self.deploy_at_s is not None:
            _schema.validate_field_name(self.field)
            _schema.parse_bson_type(self.bson_type)
        if self.write_span_s > self.max_duration_s:
            raise _checks.InputError("write_every_s", f"the writes would span {self.write_span_s:,.0f} s; at most "
                                                      f"max_duration_s={self.max_duration_s:,.0f} s")
        self._check_memory()

    def _check_memory(self) -> None:
        """Refuse a fleet the machine cannot hold, in one line that says how many users it can."""
        needed, available = self.estimated_bytes, _memory_budget()
        if needed <= available:
            return
        notes = self.notes_per_user + self.writes_per_user
        most = max(1, int(available // (BYTES_PER_NOTE * max(1, notes + 1))))
        raise _checks.InputError("users", f"{self.users:,} users with {notes:,} notes each would need about "
                                          f"{needed / 2**30:,.1f} GiB of memory; this machine has about "
                                          f"{available / 2**30:,.1f} GiB to spare: at most {most:,} users "
                                          "(or fewer notes per user)")

    @property
    def estimated_bytes(self) -> float:
        """About how much memory the run takes (model, recording and analysis)."""
        return float(self.users * (1 + self.notes_per_user + self.writes_per_user) * BYTES_PER_NOTE)

    @property
    def write_span_s(self) -> float:
        """When the last scheduled write is due (Poisson: the mean's worth, as a bound)."""
        return self.writes_per_user * self.write_every_s * (3 if self.poisson else 1)

    def user_rng(self, user: int) -> random.Random:
        """Each user's own schedule generator: the same for a user whatever the others do."""
        return random.Random(self.seed * 1_000_003 + user)

    def write_times(self, user: int) -> list[float]:
        """When `user` writes, in seconds since the run starts."""
        n = self.writes_per_user
        if not self.poisson:
            offset = self.write_every_s * user / self.users
            return [offset + k * self.write_every_s for k in range(n)]
        rng = self.user_rng(user)
        t, out = 0.0, []
        for _ in range(n):
            t += rng.expovariate(1.0 / self.write_every_s)
            out.append(t)
        return out


def _memory_budget() -> float:
    """Physical memory less a quarter (the rest of the machine), capped."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return float(_MEMORY_CAP_BYTES)
    return float(min(0.75 * total, _MEMORY_CAP_BYTES))


def check_inputs(*, partitions: int = 1, **inputs: Any) -> FleetParams:
    """The fleet's parameters, checked (ValueError naming the first bad one), before any work."""
    names = {f.name for f in dataclasses.fields(FleetParams)} - {"params"}
    params = {k: v for k, v in inputs.items() if k not in names}
    p = FleetParams(**{k: v for k, v in inputs.items() if k in names}, params=EmulatorParams.from_kwargs(**params))
    _checks.integer("partitions", partitions, 1, p.users)
    return p


# ---------------------------------------------------------------------------------------
# Running


class _Fleet:
    """One world of `count` users from `first` on, bootstrapped and driven through the deploy."""

    def __init__(self, p: FleetParams, first: int, count: int) -> None:
        self.p = p
        self.world = EmulatedWorld(p.mode, p.encoding, rng=random.Random(p.seed * 7_919 + first), params=p.params,
                                   reimport=p.reimport)
        self.world.tag_users = True
        self.sessions = []
        for user in range(first, first + count):
            owner = f"user-{user:06d}"
            session = EmulatedSession.join(self.world, owner, user)
            for _ in range(p.devices_per_user - 1):
                self.world.add_device(owner)
            self.sessions.append(session)

    def bootstrap(self) -> None:
        """Every user's root and notes, written in one transaction on their first device and synced
        to the server and Atlas before the run starts."""
        texts = [f"note {k + 1}" for k in range(self.p.notes_per_user)]
        for session in self.sessions:
            session.device.create_tree(texts)
        self.world.settle(step_s=_SETTLE_STEP_S)

    def steps(self, driver: Driver) -> Iterator[tuple[float, Any]]:
        """Every user's writes and the deploy, in time order (lazily merged)."""
        p, world = self.p, self.world

        def user_steps(session: EmulatedSession) -> Iterator[tuple[float, int, int, Any]]:
            user = session.user
            devices = user.devices
            for k, at in enumerate(p.write_times(user.process)):
                yield at, user.process, k, functools.partial(world.write, user, devices[k % len(devices)],
                                                             f"note {p.notes_per_user + k + 1}")

        streams = [user_steps(s) for s in self.sessions]
        if p.deploy_at_s is not None:
            def deploy() -> None:
                driver.deploying = True
                try:
                    world.deploy(p.field, p.bson_type)
                finally:
                    driver.deploying = False

            streams.append(iter([(p.deploy_at_s, -1, 0, deploy)]))
        # in (time, user) order, the user's own order on a tie: the tuples compare, no key to call
        for at, _user, _k, step in heapq.merge(*streams):
            yield at, step

    def run(self, rec: Any, progress: Any = None) -> dict[str, Any]:
        """Write, deploy and settle; every record into `rec`; returns the run's figures."""
        p, world = self.p, self.world
        driver = Driver(world, rec, progress=progress)
        unsubscribe = world.history(driver.listen, atlas=False, trace=False, baseline=False, batch=driver.listen_all)
        try:
            driver.run(self.steps(driver))
            last_write = max((max(p.write_times(s.user.process), default=0.0) for s in self.sessions), default=0.0)
            if p.settle_s is not None:
                driver.wait(last_write + p.settle_s)
            else:  # until the re-import is done and every view agrees
                deployed = p.deploy_at_s
                driver.settle(lambda: world.settled() and (deployed is None or world.now() - driver.t0 > deployed),
                              _SETTLE_STEP_S, p.max_duration_s)
            for session in self.sessions:
                device = session.device
                root = device.root_id()
                driver.read_ids(session.user.process, root, device.visible_children(root), len(device.owned_ids()))
            driver.unacknowledged()
        finally:
            unsubscribe()
        resumes = world.translator.resumes
        return {"ended_at_s": driver.rel(world.now()), "server_versions": world.server.version,
                "converged": self.agree(), "reimport_batches": resumes, "collection_docs": len(world.collection)}

    def agree(self) -> bool:
        """Every device of every user, the server and Atlas show the same root children."""
        table = self.world.server.state["Node"]
        for session in self.sessions:
            devices = session.user.devices
            views = {tuple(d.visible_children(d.root_id())) for d in devices}
            if len(views) != 1:
                return False
            root = devices[0].root_id()
            server_view = tuple(c for c in table.get(root, {}).get("children", ()) if c in table)
            atlas_root = self.world.collection.get(root)
            atlas_view = tuple(atlas_root["children"]) if atlas_root else ()
            if views != {server_view} or server_view != atlas_view:
                return False
        return True


def _partition_schedules(p: FleetParams, parts: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """Each partition's re-import as (delay, batch interval): its batches interleaved with the other
    partitions' over the span one server's batches would take. One server re-imports its collection
    in order: every user's root and notes (the bootstrap), then the notes written before the
    snapshot; so every partition's roots come back over the same first stretch, and the halt ends
    when the whole collection is back."""
    ep = p.params
    synced_by = (p.deploy_at_s or 0.0) - ep.upload_latency_s - ep.translator_lag_s  # in Atlas at the snapshot
    docs = [sum(1 + p.notes_per_user + sum(1 for t in p.write_times(user) if t < synced_by)
                for user in range(first, first + count)) for first, count in parts]
    total = sum(docs)
    return [(ep.resync_delay_s + k * ep.resync_batch_interval_s,
             ep.resync_batch_interval_s * total / max(1, n)) for k, n in enumerate(docs)]


def _run_partition(p: FleetParams, first: int, count: int, schedule: tuple[float, float]) -> dict[str, Any]:
    """One partition, start to end, in this process (a worker's task): the collector paused as in
    `fleet`, and the partition's world collected before its records go back."""
    delay, interval = schedule
    part = dataclasses.replace(p, params=dataclasses.replace(p.params, resync_delay_s=delay,
                                                             resync_batch_interval_s=interval))
    with _collector_paused():
        records = _partition_records(part, first, count)
        gc.collect()
    return records


def _partition_records(part: FleetParams, first: int, count: int) -> dict[str, Any]:
    world = _Fleet(part, first, count)
    world.bootstrap()
    rec = recording.MemoryRecorder()  # the partition's recording, in lists, back to the parent process
    try:
        figures = world.run(rec)
    finally:
        world.world.close()
    return {"ops": rec.ops, "events": rec.events, **figures}


def _run_partitions(p: FleetParams, partitions: int, rec: Any, executor: Executor | None) -> dict[str, Any]:
    size = -(-p.users // partitions)
    parts = [(first, min(size, p.users - first)) for first in range(0, p.users, size)]
    schedules = _partition_schedules(p, parts)
    own = None
    if executor is None:
        own = executor = ProcessPoolExecutor(max_workers=min(len(parts), os.cpu_count() or 1))
    try:
        futures = [executor.submit(_run_partition, p, first, count, schedule)
                   for (first, count), schedule in zip(parts, schedules)]
        results = [f.result() for f in futures]
    finally:
        if own is not None:
            own.shutdown()
    for op in _merged_ops(results):
        rec.op(op["process"], op["type"], op["f"], op["value"], time=op["time"])
    for event in sorted((e for r in results for e in r["events"]), key=lambda e: (e["time"], e.get("user", -1))):
        rec.event(event)
    return {"ended_at_s": max(r["ended_at_s"] for r in results), "converged": all(r["converged"] for r in results),
            "reimport_batches": sum(r["reimport_batches"] for r in results),
            "server_versions": sum(r["server_versions"] for r in results),
            "collection_docs": sum(r["collection_docs"] for r in results)}


def _merged_ops(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The partitions' ops as one app's: one deploy, one halt over the whole collection, the last
    resume, then every user's ops, in time order."""
    nemesis = [op for r in results for op in r["ops"] if op["process"] == "nemesis"]
    deploys: dict[str, dict[str, Any]] = {}  # the first deploy op of each type (invoke, ok, fail), in order
    for op in nemesis:
        if op["f"] == "deploy":
            deploys.setdefault(op["type"], op)
    ops = list(deploys.values())
    halt = next((op for op in nemesis if op["f"] == "halt"), None)
    if halt is not None:  # the partitions' control planes stand for one: one halt, the last resume
        total_docs = sum(r["collection_docs"] for r in results)
        ops.append({**halt, "value": {**(halt["value"] or {}), "snapshot_docs": total_docs}})
    resumes = [op for op in nemesis if op["f"] == "resume"]
    if resumes:
        ops.append(max(resumes, key=lambda op: op["time"]))
    ops += [op for r in results for op in r["ops"] if op["process"] != "nemesis"]
    ops.sort(key=lambda op: op["time"])
    return ops


def _progress(show: bool, p: FleetParams) -> tuple[Any, Any]:
    """(callback(at), close) of a progress bar over run time (a widget in a notebook), or (None, a no-op)."""
    if not show:
        return None, lambda: None
    total = p.write_span_s + (p.settle_s if p.settle_s is not None else p.params.resync_delay_s)
    bar = tqdm(total=round(total), unit="s", desc=f"fleet of {p.users:,} users", leave=False)
    longest = [round(total)]

    def tick(at: float) -> None:
        if round(at) > longest[0]:
            longest[0] = bar.total = round(at)
        bar.update(round(at) - bar.n)

    return tick, bar.close


def _show_progress() -> bool:
    """A terminal, or a Jupyter kernel (tqdm draws a widget there)."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def fleet(users: int = 1000, *, devices_per_user: int = 1, notes_per_user: int = 20, writes_per_user: int = 20,
          write_every_s: float = 1.0, poisson: bool = False, deploy_at_s: float | None = 5.5,
          settle_s: float | None = None, mode: str = "production", encoding: str = "replace", reimport: str = "all",
          seed: int = 0, out: str | os.PathLike[str] | None = None, partitions: int = 1,
          executor: Executor | None = None, progress: bool | None = None, **params: Any) -> FleetAnalysis:
    """Run a fleet through one deploy and record it; returns its analysis (report in `out`).

    `users` each have `devices_per_user` devices and `notes_per_user` notes beforehand, then
    write `writes_per_user` notes `write_every_s` apart (staggered), or at Poisson times of
    that mean with `poisson=True`; the schema change is deployed at `deploy_at_s`.
    `settle_s=None` keeps going until the re-import has ended and every view agrees.
    `partitions` > 1 splits the users into that many independent servers run on `executor`
    (default: one process each, up to the cores). `**params`: `EmulatorParams` fields.
    `progress`: a bar over run time (None: on a terminal). Writes the run directory's
    recording, fleet.json, fleet.md and fleet.png/.svg.
    """
    p = check_inputs(users=users, devices_per_user=devices_per_user, notes_per_user=notes_per_user,
                     writes_per_user=writes_per_user, write_every_s=write_every_s, poisson=poisson,
                     deploy_at_s=deploy_at_s, settle_s=settle_s, mode=mode, encoding=encoding, reimport=reimport,
                     seed=seed, partitions=partitions, **params)
    path = Path(out) if out is not None else default_dir()
    meta = {"kind": "fleet", "backend": "emulator", **{k: v for k, v in dataclasses.asdict(p).items() if k != "params"},
            "params": p.params.as_dict(), "partitions": partitions, "server_trace": False,
            "trace_note": "a fleet records no merge trace"}
    show = progress if progress is not None else _show_progress()
    # The report's libraries are loaded before the world exists: pandas and matplotlib with this
    # module, pyarrow by the columnar recorder (`format="arrow"`, which a fleet's size calls for).
    with _collector_paused():
        with recording.RunRecorder(path, meta, format="arrow", flush_every=_FLUSH_EVERY) as rec:
            figures = (_run_whole(p, rec, show) if partitions == 1
                       else _run_partitions(p, partitions, rec, executor))
            rec.finish({"finished": True, "duration_s": figures["ended_at_s"], **figures})
        if partitions == 1:
            # The world was freed as its run ended (`EmulatedWorld.close`), so the analysis reuses its
            # memory; what little cyclic garbage is left goes now (a scan of what is alive, no longer
            # of the whole model: it was 13% of a 2,000-user fleet's time).
            gc.collect()
        analysis = load_fleet(path)
        write_fleet_report(analysis, path)
    return analysis


def _run_whole(p: FleetParams, rec: recording.RunRecorder, show: bool) -> dict[str, Any]:
    """The fleet as one world in this process; the world is dropped on return (the analysis
    reads the recording alone)."""
    world = _Fleet(p, 0, p.users)
    world.bootstrap()
    tick, close = _progress(show, p)
    try:
        return world.run(rec, progress=tick)
    finally:
        close()
        world.world.close()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No automatic cyclic garbage collection in the body; the caller's setting is restored after.

    The model keeps millions of objects alive and makes almost no cyclic garbage while it runs
    (a 3,000-user fleet: 72 collectable objects at its end), so every automatic collection
    rescanned the live world for nothing: 23% of a fleet's CPU in the profile (issue 18), much
    of it set off by the report's imports and the analysis's allocations while the world was
    still alive."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def default_dir() -> Path:
    """A new fleet run directory under the runs root."""
    return default_run_dir(prefix="fleet-")


# ---------------------------------------------------------------------------------------
# Analysis: the one checker's verdict, by user


@dataclasses.dataclass
class FleetAnalysis:
    """What one deploy did to a user base: the run's `Analysis` grouped by user.

    `users`: one row per user (user, notes_written, notes_written_in_halt, orphaned,
    first_loss_at_s, root_children, nodes_total). `losses`: one row per orphaned note
    (user, node_id, lost_at_s: when the user's device showed it leave the root, written_at_s:
    when the user wrote it). `last_write_at_s`: the last note written by anyone."""

    analysis: Analysis
    users: pd.DataFrame
    losses: pd.DataFrame
    halt: tuple[float, float | None] | None
    batches: int
    deploy_at_s: float | None
    last_write_at_s: float | None = None

    @property
    def path(self) -> Path:
        """The run directory (a fleet's analysis is always of one)."""
        path = self.analysis.run.path
        if path is None:
            raise ValueError("this fleet analysis is of a run kept in memory: it has no run directory")
        return path

    @property
    def meta(self) -> dict[str, Any]:
        return self.analysis.meta

    @property
    def halt_s(self) -> float | None:
        if self.halt is None or self.halt[1] is None:
            return None
        return self.halt[1] - self.halt[0]

    @property
    def notes_orphaned(self) -> int:
        return int(self.users["orphaned"].sum())

    @property
    def users_affected(self) -> int:
        return int((self.users["orphaned"] > 0).sum())

    @property
    def outcome(self) -> str:
        """The one checker's verdict: "lost", "clean" or "inconclusive"."""
        return self.analysis.verdict.outcome

    def orphaned_by_write_time(self) -> dict[str, int]:
        """The orphaned notes by when they were written: "before" the halt began, "in" it (to
        the resume, or the run's end), "after" it, "unknown" (the history lacks the write)."""
        written = self.losses["written_at_s"].to_numpy(float)
        if self.halt is None:
            return {"before": 0, "in": 0, "after": 0, "unknown": len(written)}
        start = self.halt[0]
        end = self.halt[1] if self.halt[1] is not None else math.inf
        known = ~np.isnan(written)
        return {"before": int((known & (written < start)).sum()),
                "in": int((known & (written >= start) & (written <= end)).sum()),
                "after": int((known & (written > end)).sum()), "unknown": int((~known).sum())}

    def loss_window(self) -> str:
        """Which notes were orphaned, by when they were written, from the recording: e.g. "all
        4,350 notes written while it was halted and 20 written in the 0.07 s before the deploy"."""
        by = self.orphaned_by_write_time()
        in_halt = int(self.users["notes_written_in_halt"].sum())
        parts = []
        if in_halt or by["in"]:
            if by["in"] == in_halt:
                parts.append(f"all {in_halt:,} notes written while it was halted" if in_halt != 1
                             else "the 1 note written while it was halted")
            elif by["in"] == 0:
                parts.append(f"none of the {in_halt:,} notes written while it was halted")
            else:
                parts.append(f"{by['in']:,} of the {in_halt:,} notes written while it was halted")
        if by["before"] and self.halt is not None:
            first = float(self.losses.loc[self.losses["written_at_s"] < self.halt[0], "written_at_s"].min())
            parts.append(f"{by['before']:,} written in the {self.halt[0] - first:.2f} s before the deploy")
        if by["after"]:
            parts.append(f"{by['after']:,} written after translation resumed")
        if by["unknown"]:
            parts.append(f"{by['unknown']:,} whose write the history does not show")
        if not parts:
            return "no note"
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" and {parts[-1]}"

    def summary(self) -> str:
        """The sentence a post-mortem quotes: how many notes of how many users, and which notes
        (by when they were written, against the halt), all from the one checker's verdict."""
        verdict = self.analysis.verdict
        if verdict.outcome == "inconclusive":
            return f"Inconclusive: {verdict.inconclusive_reason}."
        n_users = len(self.users)
        halt = f"; translation was halted for {self.halt_s:,.0f} s" if self.halt_s is not None else ""
        if self.deploy_at_s is None:
            return f"No deploy: {self.notes_orphaned:,} notes of {self.users_affected:,} users orphaned{halt}."
        head = (f"This deploy orphaned {self.notes_orphaned:,} notes of {self.users_affected:,} users "
                f"(of {n_users:,} users{halt})")
        if self.halt is None:
            return head + "."
        if not self.notes_orphaned:
            in_halt = int(self.users["notes_written_in_halt"].sum())
            return f"{head}: none of the {in_halt:,} notes written while it was halted."
        return f"{head}: {self.loss_window()}."

    def figures(self) -> dict[str, Any]:
        """fleet.json's content."""
        m = self.meta
        first = self.losses["lost_at_s"].min() if len(self.losses) else None
        last = self.losses["lost_at_s"].max() if len(self.losses) else None
        return {
            "users": len(self.users), "devices_per_user": m.get("devices_per_user"),
            "notes_per_user": m.get("notes_per_user"), "writes_per_user": m.get("writes_per_user"),
            "deploy_at_s": self.deploy_at_s, "halt_s": None if self.halt_s is None else round(self.halt_s, 3),
            "reimport_batches": self.batches, "collection_docs": m.get("collection_docs"),
            "notes_written": int(self.users["notes_written"].sum()),
            "notes_written_in_halt": int(self.users["notes_written_in_halt"].sum()),
            "notes_orphaned": self.notes_orphaned, "users_affected": self.users_affected,
            "first_loss_at_s": None if first is None or pd.isna(first) else round(float(first), 3),
            "last_loss_at_s": None if last is None or pd.isna(last) else round(float(last), 3),
            "converged": m.get("converged"), "verdict": self.outcome,
            "inconclusive_reason": self.analysis.verdict.inconclusive_reason, "summary": self.summary(),
        }


def load_fleet(path: str | os.PathLike[str] | Analysis) -> FleetAnalysis:
    """The analysis of a fleet run directory, from the recording alone (through the one checker)."""
    a = path if isinstance(path, Analysis) else analyse(recording.load_run(path))
    if a.run.kind != "fleet":
        raise ValueError(f"not a fleet run (meta.json kind {a.meta.get('kind')!r}): {a.run.path}")
    return by_user(a)


def by_user(a: Analysis) -> FleetAnalysis:
    """The one analysis of a fleet run grouped by user: vectorised over the analysis's own columns
    (the history's and the lifecycle's arrays; no DataFrame of the whole history or lifecycle, no
    loop per user), joined by node code."""
    h = a._history
    deploys = a.nemesis("deploy")
    halts, resumes = a.nemesis("halt"), a.nemesis("resume")
    halt = (halts[0][0], resumes[-1][0] if resumes else None) if halts else None
    invokes = np.flatnonzero(h.rows("add", "invoke"))
    writer = h.process[invokes].astype(int)
    write_time = h.time[invokes]
    in_halt_end = halt[1] if halt is not None and halt[1] is not None else a.run.end_s
    written = pd.DataFrame({"user": writer, "time": write_time})
    written["in_halt"] = ((written["time"] >= halt[0]) & (written["time"] <= in_halt_end)) if halt is not None \
        else False
    per_user = written.groupby("user").agg(notes_written=("time", "size"), notes_written_in_halt=("in_halt", "sum"))
    reads = a.final_reads
    final = pd.DataFrame({"user": np.fromiter((int(u) for u in reads), int, len(reads)),
                          "root_children": [len(v.get("children") or ()) for v in reads.values()],
                          "nodes_total": [int(v.get("nodes_total") or 0) for v in reads.values()]})
    losses = _losses(a, [str(v) for v in h.node_id[invokes]], writer, write_time)
    by_loss = losses.groupby("user").agg(orphaned=("node_id", "size"), first_loss_at_s=("lost_at_s", "min"))
    users = final.set_index("user").join(per_user).join(by_loss)
    users = users.fillna({"notes_written": 0, "notes_written_in_halt": 0, "orphaned": 0}).reset_index()
    for col in ("notes_written", "notes_written_in_halt", "orphaned", "root_children", "nodes_total"):
        users[col] = users[col].astype(int)
    users["first_loss_at_s"] = users["first_loss_at_s"].astype(float)
    users = users[["user", "notes_written", "notes_written_in_halt", "orphaned", "first_loss_at_s", "root_children",
                   "nodes_total"]].sort_values("user").reset_index(drop=True)
    batches = a.meta.get("reimport_batches")
    if not isinstance(batches, int):
        batches = sum(int(v.get("batches", 0)) for _t, v in resumes if isinstance(v, dict))
    losses["user"] = losses["user"].astype("Int64")
    return FleetAnalysis(analysis=a, users=users, losses=losses, halt=halt, batches=int(batches),
                         deploy_at_s=deploys[0][0] if deploys else None,
                         last_write_at_s=float(written["time"].max()) if len(written) else None)


def _losses(a: Analysis, ids: list[str], writer: np.ndarray, write_time: np.ndarray) -> pd.DataFrame:
    """One row per orphaned note, in the verdict's order: its user (who first invoked its add), when
    the user's device showed it leave (its lifecycle's lost_at) and when it was first written."""
    orphaned = list(a.verdict.orphaned)
    coded, life = a._coded, a._life
    code_of = {node: i for i, node in enumerate(coded.nodes.tolist())}
    n = len(coded.nodes)
    # per node code: the first add's user, the earliest add, the device's lost_at (NaN: none)
    codes = np.fromiter((code_of.get(node, -1) for node in ids), np.int64, len(ids))
    known = np.flatnonzero(codes >= 0)
    user_of = np.full(n, np.nan)
    added, first = np.unique(codes[known], return_index=True)  # a node's first add names its user
    user_of[added] = writer[known[first]]
    written_at = np.full(n, np.inf)
    np.fmin.at(written_at, codes[known], write_time[known])  # (fmin: a missing time is skipped, as min skips it)
    written_at[np.isinf(written_at)] = np.nan
    lost_at = np.full(n, np.nan)
    device = life["observer"] == coded.obs_index.get(_DEVICE_OBSERVER, -1)
    lost_at[life["node"][device]] = life["lost_at"][device]
    rows = np.fromiter((code_of.get(node, -1) for node in orphaned), np.int64, len(orphaned))
    found = rows >= 0

    def at(column: np.ndarray) -> np.ndarray:
        return np.where(found, column[rows], np.nan)

    return pd.DataFrame({"user": at(user_of), "node_id": pd.Series(orphaned, dtype=object),
                         "lost_at_s": at(lost_at), "written_at_s": at(written_at)})


def halt_growth(runs: list[FleetAnalysis]) -> str:
    """What runs that differ in the collection's size show, in one computed sentence: how the
    halt and the last loss grew with the documents, and whether the notes orphaned did (they
    grow only when writes go on into the longer halt)."""
    rows = sorted(((int(a.meta.get("collection_docs") or 0), a) for a in runs if a.halt_s is not None),
                  key=lambda row: row[0])
    if len(rows) < 2:
        raise ValueError("runs: give at least two fleet runs with a halt, differing in collection size")
    ordered = [a for _, a in rows]
    return f"{_halt_growth_head([d for d, _ in rows], ordered)}; {_orphaned_growth(ordered)}."


def _halt_growth_head(docs: list[int], runs: list[FleetAnalysis]) -> str:
    """How the halt (and the last loss) grew with the documents, runs ordered by documents."""
    x = np.array(docs, float)
    halts = np.array([a.halt_s for a in runs], float)
    last = [float(a.losses["lost_at_s"].max()) if len(a.losses) else math.nan for a in runs]
    slope = float(np.polyfit(x, halts, 1)[0]) if np.ptp(x) > 0 else math.nan
    per_doc = f" (about {slope:.3f} s more per document)" if math.isfinite(slope) else ""
    head = (f"From {x[0]:,.0f} to {x[-1]:,.0f} documents, translation stayed halted from "
            f"{halts[0]:,.0f} s to {halts[-1]:,.0f} s{per_doc}")
    if all(math.isfinite(t) for t in last):
        head += f", and the last loss showed {last[0]:,.0f} s to {last[-1]:,.0f} s into the run"
    return head


def _orphaned_growth(runs: list[FleetAnalysis]) -> str:
    """Whether the notes orphaned grew with the halt, and why not where they did not."""
    orphaned = [a.notes_orphaned for a in runs]
    if orphaned == sorted(orphaned) and orphaned[-1] > orphaned[0]:
        return f"the notes orphaned grew from {orphaned[0]:,} to {orphaned[-1]:,}: the longer halt caught more writes"
    ends = [a.last_write_at_s for a in runs]
    shortest = min(a.halt[1] for a in runs if a.halt is not None and a.halt[1] is not None)
    last_write = max((e for e in ends if e is not None), default=math.inf)
    if None not in ends and last_write < shortest:
        return (f"the notes orphaned stayed between {min(orphaned):,} and {max(orphaned):,}: every note "
                f"was written by {last_write:.1f} s, before even the shortest halt ended ({shortest:,.0f} s), "
                "so a longer halt caught no more writes here")
    return f"the notes orphaned went {', '.join(f'{o:,}' for o in orphaned)}"


# ---------------------------------------------------------------------------------------
# The report


def fleet_figure(a: FleetAnalysis) -> Figure:
    """Losses over time (cumulative orphaned notes, the halt shaded) and per user."""
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    times = np.sort(a.losses["lost_at_s"].dropna().to_numpy(float))
    end = float(a.meta.get("ended_at_s") or (times[-1] if len(times) else 1.0))
    if a.halt is not None:
        left.axvspan(a.halt[0], a.halt[1] if a.halt[1] is not None else end, color=plots.WINDOW_COLOR, alpha=0.35,
                     lw=0, label=f"translation halted ({a.halt_s:,.0f} s)" if a.halt_s is not None
                     else "translation halted")
    if a.deploy_at_s is not None:
        left.axvline(a.deploy_at_s, color="#b8860b", ls="--", lw=1, label="deploy")
    if len(times):
        left.step(np.concatenate([[0.0], times, [end]]), np.concatenate([[0], np.arange(1, len(times) + 1),
                                                                          [len(times)]]),
                  where="post", color="#d7301f", lw=1.8, label="notes orphaned so far")
    left.set_xlim(0, end)
    left.set_ylim(bottom=0)
    left.set_xlabel("seconds since the run started")
    left.set_ylabel("orphaned notes")
    left.set_title("Losses over time: each shows when its user's re-import batch arrives", loc="left", fontsize=9)
    left.legend(loc="upper left", fontsize=8, frameon=False)
    per_user = a.users["orphaned"].to_numpy(int)
    counts = np.bincount(per_user) if len(per_user) else np.zeros(1, int)
    right.bar(np.arange(len(counts)), counts, color=["#9e9e9e"] + ["#d7301f"] * (len(counts) - 1))
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlim(-0.6, max(len(counts) - 0.4, 1.6))
    right.set_xlabel("orphaned notes per user")
    right.set_ylabel("users")
    right.set_title(f"Per user: {a.users_affected:,} of {len(a.users):,} affected", loc="left", fontsize=9)
    fig.suptitle("\n".join(textwrap.wrap(a.summary(), 140, break_on_hyphens=False)), fontsize=10, x=0.01, ha="left")
    return fig


def write_fleet_report(a: FleetAnalysis, out: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """fleet.json, fleet.md, fleet.png and fleet.svg in `out` (default: the run directory)."""
    folder = Path(out) if out is not None else a.path
    folder.mkdir(parents=True, exist_ok=True)
    data = a.figures()
    png, svg = plots.export(fleet_figure(a), folder / "fleet", formats=("png", "svg"))
    (folder / "fleet.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    top = a.users.sort_values(["orphaned", "user"], ascending=[False, True]).head(10)
    lines = [f"# The blast radius of one schema deploy ({a.meta.get('mode', 'unknown')}, "
             f"{a.meta.get('encoding', 'unknown')})", "",
             f"**{a.summary()}**", "", f"![losses over time and per user]({png.name})", "", "## In total", "",
             "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {'–' if v is None else v} |" for k, v in data.items() if k != "summary"]
    lines += ["", "## The most affected users", "", "| user | notes written | written while halted | orphaned | "
              "first loss (s) |", "|---|---|---|---|---|"]
    lines += [f"| {user} | {written} | {in_halt} | {orphaned} | {'–' if math.isnan(first) else f'{first:.1f}'} |"
              for user, written, in_halt, orphaned, first in zip(
                  top["user"].to_numpy(int).tolist(), top["notes_written"].to_numpy(int).tolist(),
                  top["notes_written_in_halt"].to_numpy(int).tolist(), top["orphaned"].to_numpy(int).tolist(),
                  top["first_loss_at_s"].to_numpy(float).tolist())]
    lines += ["", "The re-import covers the whole collection in batches, so the halt grows with the collection; "
              "each user's loss shows when the batch holding their root's `Clear` reaches their device.", ""]
    (folder / "fleet.md").write_text("\n".join(lines), encoding="utf-8")
    return {"json": folder / "fleet.json", "md": folder / "fleet.md", "png": png, "svg": svg}
