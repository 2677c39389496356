"""The blast radius of one deploy across a production-sized user base.

`fleet(users=10_000, ...)` runs many users of the emulated app through one schema deploy
(`repro_kit.emulator.fleet`), records it as a run directory, and returns a `FleetAnalysis`:
per user and in total, the notes written while translation was halted, the notes
orphaned, the users affected, how long the halt lasted (it grows with the collection, which
the re-import covers in batches) and when each loss became visible, in a sentence a
post-mortem can quote: "this deploy orphaned N notes of M users".

A fleet can be split into `partitions` run side by side (each its own server over its
users' part of the collection, its re-import starting where the previous partitions'
batches end, so the halt and every user's place in it stay what one server would give),
on any `concurrent.futures.Executor`, a Dask cluster's included.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import textwrap
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro_kit import recording
from repro_kit.emulator.fleet import FleetParams, FleetWorld
from repro_kit.emulator.params import EmulatorParams
from repro_kit.sweeps import MemoryRecorder

__all__ = ["fleet", "FleetAnalysis", "load_fleet", "fleet_figure", "write_fleet_report", "FleetParams", "check_inputs",
           "halt_growth"]

FLEET_REPORT_KEYS = ("users", "devices_per_user", "notes_per_user", "writes_per_user", "deploy_at_s", "halt_s",
                     "reimport_batches", "collection_docs", "notes_written", "notes_written_in_halt",
                     "notes_orphaned", "users_affected", "first_loss_at_s", "last_loss_at_s", "converged", "summary")


class _Recorder:
    """Turns the world's observations into Jepsen-style ops and events (README: "A production-sized app")."""

    def __init__(self, rec: Any) -> None:
        self.rec = rec  # a RunRecorder, or a sweeps.MemoryRecorder for a partition in a worker

    def add(self, user: int, pk: str, t: float) -> None:
        self.rec.op(process=user, type="invoke", f="add", value=pk, time=t)

    def ack(self, user: int, pk: str, t: float) -> None:
        self.rec.op(process=user, type="ok", f="add", value=pk, time=t)

    def nemesis(self, f: str, t: float, value: Any) -> None:
        self.rec.op(process="nemesis", type="info" if f != "deploy" else "invoke", f=f, value=value, time=t)

    def leave(self, user: int, pk: str, t: float) -> None:
        self.rec.event({"time": t, "observer": "device", "kind": "leave", "node_id": pk, "user": user})

    def batch(self, user: int, docs: int, t: float) -> None:
        self.rec.event({"time": t, "observer": "device", "kind": "batch", "batch": docs, "user": user})

    def final(self, user: int, t: float, children: list[str], total: int, root: str | None) -> None:
        self.rec.event({"time": t, "observer": "device", "kind": "final", "user": user, "root_id": root,
                        "root_children": len(children), "nodes_total": total, "children": children})


def _partition_delays(p: FleetParams, parts: list[tuple[int, int]]) -> list[float]:
    """Each partition's re-import starts where the batches of the partitions before it end:
    the documents of one server's collection, split in order."""
    ep = p.params
    synced_by = (p.deploy_at_s or 0.0) - ep.upload_latency_s - ep.translator_lag_s  # in Atlas at the snapshot
    delays, before = [], 0
    for first, count in parts:
        batches_before = math.ceil(before / ep.resync_batch_size) if before else 0
        delays.append(ep.resync_delay_s + batches_before * ep.resync_batch_interval_s)
        for user in range(first, first + count):  # the root, the notes, and the writes Atlas had at the snapshot
            before += 1 + p.notes_per_user + sum(1 for t in p.write_times(user) if t < synced_by)
    return delays


def _run_partition(p: FleetParams, first: int, count: int, delay: float) -> dict[str, Any]:
    """One partition, start to end, in this process (a worker's task)."""
    part = dataclasses.replace(p, params=dataclasses.replace(p.params, resync_delay_s=delay))
    world = FleetWorld(part, first_user=first, users=count)
    world.bootstrap()
    rec = MemoryRecorder()  # the partition's recording, in lists, back to the parent process
    figures = world.run(_Recorder(rec))
    return {"ops": rec.ops, "events": rec.events, **figures, "collection_docs": len(world.collection)}


def fleet(users: int = 1000, *, devices_per_user: int = 1, notes_per_user: int = 20, writes_per_user: int = 20,
          write_every_s: float = 1.0, poisson: bool = False, deploy_at_s: float | None = 5.5,
          settle_s: float | None = None, mode: str = "production", encoding: str = "replace", reimport: str = "all",
          seed: int = 0, out: str | os.PathLike[str] | None = None, partitions: int = 1,
          executor: Executor | None = None, progress: bool | None = None, **params: Any) -> "FleetAnalysis":
    """Run a fleet through one deploy and record it; returns its analysis (report in `out`).

    `users` each have `devices_per_user` devices and `notes_per_user` notes beforehand, then
    write `writes_per_user` notes `write_every_s` apart (staggered), or at Poisson times of
    that mean with `poisson=True`; the schema change is deployed at `deploy_at_s`.
    `settle_s=None` keeps going until the re-import has ended and every view agrees.
    `partitions` > 1 splits the users into that many independent servers run on `executor`
    (default: one process each, up to the cores). `**params`: `EmulatorParams` fields.
    Writes meta.json, history.jsonl, events.jsonl, fleet.json, fleet.md and fleet.png/.svg.
    """
    p = check_inputs(users=users, devices_per_user=devices_per_user, notes_per_user=notes_per_user,
                     writes_per_user=writes_per_user, write_every_s=write_every_s, poisson=poisson,
                     deploy_at_s=deploy_at_s, settle_s=settle_s, mode=mode, encoding=encoding, reimport=reimport,
                     seed=seed, partitions=partitions, **params)
    path = Path(out) if out is not None else _default_dir()
    meta = {"kind": "fleet", "backend": "emulator", **{k: v for k, v in dataclasses.asdict(p).items() if k != "params"},
            "params": p.params.as_dict(), "partitions": partitions}
    show = progress if progress is not None else sys.stderr.isatty()
    with recording.RunRecorder(path, meta, flush_every=10_000) as rec:
        if partitions == 1:
            world = FleetWorld(p)
            world.bootstrap()
            bar = _bar(show, "fleet")
            figures = world.run(_Recorder(rec), progress=(lambda t, total: bar(t, total)) if bar else None)
            figures["collection_docs"] = len(world.collection)
            if bar:
                bar(None, None)
        else:
            figures = _run_partitions(p, partitions, rec, executor)
        rec.finish({"finished": True, "duration_s": figures["ended_at_s"], **figures})
    analysis = load_fleet(path)
    write_fleet_report(analysis, path)
    return analysis


def check_inputs(*, partitions: int = 1, **inputs: Any) -> FleetParams:
    """The fleet's parameters, checked (ValueError naming the first bad one), before any work."""
    names = {f.name for f in dataclasses.fields(FleetParams)} - {"params"}
    params = {k: v for k, v in inputs.items() if k not in names}
    p = FleetParams(**{k: v for k, v in inputs.items() if k in names}, params=EmulatorParams.from_kwargs(**params))
    if isinstance(partitions, bool) or not isinstance(partitions, int) or not 1 <= partitions <= p.users:
        raise ValueError(f"partitions: must be an integer from 1 to users ({p.users}), got {partitions!r}")
    return p


def _run_partitions(p: FleetParams, partitions: int, rec: Any, executor: Executor | None) -> dict[str, Any]:
    size = -(-p.users // partitions)
    parts = [(first, min(size, p.users - first)) for first in range(0, p.users, size)]
    delays = _partition_delays(p, parts)
    own = None
    if executor is None:
        from concurrent.futures import ProcessPoolExecutor

        own = executor = ProcessPoolExecutor(max_workers=min(len(parts), os.cpu_count() or 1))
    try:
        futures = [executor.submit(_run_partition, p, first, count, delay)
                   for (first, count), delay in zip(parts, delays)]
        results = [f.result() for f in futures]
    finally:
        if own is not None:
            own.shutdown()
    nemesis = [op for r in results for op in r["ops"] if op["process"] == "nemesis"]
    halt = next((op for op in nemesis if op["f"] == "halt"), None)
    resumes = [op for op in nemesis if op["f"] == "resume"]
    ops: list[dict[str, Any]] = []
    if any(op["f"] == "deploy" for op in nemesis):
        ops.append(next(op for op in nemesis if op["f"] == "deploy"))
    if halt is not None:  # the partitions' control planes stand for one: one halt, the last resume
        total_docs = sum(r["collection_docs"] for r in results)
        ops.append({**halt, "value": {**(halt["value"] or {}), "snapshot_docs": total_docs}})
    if resumes:
        ops.append(max(resumes, key=lambda op: op["time"]))
    ops += [op for r in results for op in r["ops"] if op["process"] != "nemesis"]
    ops.sort(key=lambda op: op["time"])
    for op in ops:
        rec.op(op["process"], op["type"], op["f"], op["value"], time=op["time"])
    for event in sorted((e for r in results for e in r["events"]), key=lambda e: (e["time"], e.get("user", -1))):
        rec.event(event)
    return {"ended_at_s": max(r["ended_at_s"] for r in results), "converged": all(r["converged"] for r in results),
            "reimport_batches": sum(r["reimport_batches"] for r in results),
            "server_versions": sum(r["server_versions"] for r in results),
            "collection_docs": sum(r["collection_docs"] for r in results)}


def _default_dir() -> Path:
    from repro_kit.writer import default_run_dir

    run_dir = default_run_dir()
    return run_dir.with_name("fleet-" + run_dir.name)


def _bar(show: bool, desc: str) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    state: dict[str, Any] = {}

    def update(t: float | None, total: float | None) -> None:
        if t is None:
            if "bar" in state:
                state["bar"].close()
            return
        if "bar" not in state:
            state["bar"] = tqdm(total=round(total or 1.0), unit="s", desc=desc, leave=False)
        bar = state["bar"]
        bar.total = max(bar.total, round(total or 0))
        bar.update(round(t) - bar.n)

    return update


# ---------------------------------------------------------------------------------------
# Analysis


@dataclasses.dataclass
class FleetAnalysis:
    """What one deploy did to a user base, read from a fleet run directory.

    `users`: one row per user (user, notes_written, notes_written_in_halt, orphaned,
    first_loss_at_s, root_children, nodes_total). `losses`: one row per orphaned note
    (user, node_id, lost_at_s: when the user's device showed it leave the root, written_at_s:
    when the user wrote it). `last_write_at_s`: the last note written by anyone."""

    path: Path
    meta: dict[str, Any]
    users: pd.DataFrame
    losses: pd.DataFrame
    halt: tuple[float, float | None] | None
    batches: int
    deploy_at_s: float | None
    last_write_at_s: float | None = None

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

    def orphaned_by_write_time(self) -> dict[str, int]:
        """The orphaned notes by when they were written: "before" the halt began, "in" it (to
        the resume, or the run's end), "after" it, "unknown" (the history lacks the write)."""
        written = self.losses["written_at_s"].to_numpy(float) if "written_at_s" in self.losses else np.full(len(self.losses), np.nan)
        if self.halt is None:
            return {"before": 0, "in": 0, "after": 0, "unknown": int(len(written))}
        start = self.halt[0]
        end = self.halt[1] if self.halt[1] is not None else math.inf
        known = ~np.isnan(written)
        return {"before": int((known & (written < start)).sum()),
                "in": int((known & (written >= start) & (written <= end)).sum()),
                "after": int((known & (written > end)).sum()), "unknown": int((~known).sum())}

    def loss_window(self) -> str:
        """Which notes were orphaned, by when they were written, from the recording: e.g. "all
        4,350 notes written while it was halted, and 20 written in the 0.07 s before the deploy"."""
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
        if by["before"]:
            first = float(self.losses.loc[self.losses["written_at_s"] < self.halt[0], "written_at_s"].min())
            lead = self.halt[0] - first
            parts.append(f"{by['before']:,} written in the {lead:.2f} s before the deploy")
        if by["after"]:
            parts.append(f"{by['after']:,} written after translation resumed")
        if by["unknown"]:
            parts.append(f"{by['unknown']:,} whose write the history does not show")
        if not parts:
            return "no note"
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" and {parts[-1]}"

    def summary(self) -> str:
        """The sentence a post-mortem quotes: how many notes of how many users, and which notes
        (by when they were written, against the halt), all from the recording."""
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
        """fleet.json's content (FLEET_REPORT_KEYS)."""
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
            "first_loss_at_s": None if first is None else round(float(first), 3),
            "last_loss_at_s": None if last is None else round(float(last), 3),
            "converged": m.get("converged"), "summary": self.summary(),
        }


def load_fleet(path: str | os.PathLike[str]) -> FleetAnalysis:
    """The analysis of a fleet run directory, from the recording alone."""
    run = recording.load_run(path)
    if run.meta.get("kind") != "fleet":
        raise ValueError(f"not a fleet run (meta.json kind {run.meta.get('kind')!r}): {path}")
    h, ev = run.history, run.events
    nem = h[(h["process"].astype(str) == "nemesis").to_numpy(bool)]
    deploy = nem.loc[(nem["f"].astype(str) == "deploy").to_numpy(bool), "time"]
    halts = nem.loc[(nem["f"].astype(str) == "halt").to_numpy(bool), "time"]
    resumes = nem.loc[(nem["f"].astype(str) == "resume").to_numpy(bool), "time"]
    halt = (float(halts.min()), float(resumes.max()) if len(resumes) else None) if len(halts) else None
    adds = h[(h["f"].astype(str) == "add").to_numpy(bool)]
    invokes = adds[(adds["type"].astype(str) == "invoke").to_numpy(bool)]
    acked = adds[(adds["type"].astype(str) == "ok").to_numpy(bool)]
    user_col = "user" if "user" in ev.columns else None
    finals = ev[(ev["kind"].astype(str) == "final").to_numpy(bool)] if user_col else ev.iloc[0:0]
    leaves = ev[(ev["kind"].astype(str) == "leave").to_numpy(bool)] if user_col else ev.iloc[0:0]
    in_halt_end = halt[1] if halt is not None and halt[1] is not None else run.end_s
    # per user, vectorised: what they wrote (and while halted), what the server acknowledged,
    # and which acknowledged notes their device's root no longer holds at the end
    written = pd.DataFrame({"user": invokes["process"].astype(int).to_numpy(),
                            "time": invokes["time"].to_numpy(float)})
    written["in_halt"] = ((written["time"] >= halt[0]) & (written["time"] <= in_halt_end)) if halt is not None \
        else False
    per_user = written.groupby("user").agg(notes_written=("time", "size"), notes_written_in_halt=("in_halt", "sum"))
    ack = pd.DataFrame({"user": acked["process"].astype(int).to_numpy(),
                        "node_id": pd.Series(acked["node_id"].astype(str).to_numpy(), dtype=object)}).drop_duplicates()
    children = list(finals["children"]) if len(finals) else []
    final = pd.DataFrame({"user": finals["user"].astype(int).to_numpy() if len(finals) else np.empty(0, int),
                          "root_children": finals["root_children"].astype(int).to_numpy() if len(finals) else [],
                          "nodes_total": finals["nodes_total"].astype(int).to_numpy() if len(finals) else []})
    kept = pd.DataFrame({"user": np.repeat(final["user"].to_numpy(), [len(c or []) for c in children]),
                         "node_id": pd.Series([n for c in children for n in (c or [])], dtype=object)})
    merged = ack.merge(kept.assign(kept=True), on=["user", "node_id"], how="left")
    lost = merged.loc[merged["kept"].isna() & merged["user"].isin(final["user"]), ["user", "node_id"]]
    left_at = pd.DataFrame({"user": leaves["user"].astype(int).to_numpy() if len(leaves) else np.empty(0, int),
                            "node_id": pd.Series(leaves["node_id"].astype(str).to_numpy() if len(leaves) else [],
                                                 dtype=object),
                            "lost_at_s": leaves["time"].to_numpy(float) if len(leaves) else np.empty(0)})
    left_at = left_at.groupby(["user", "node_id"], as_index=False)["lost_at_s"].max()
    losses = lost.merge(left_at, on=["user", "node_id"], how="left").reset_index(drop=True)
    write_of = pd.DataFrame({"user": written["user"].to_numpy(),
                             "node_id": pd.Series(invokes["node_id"].astype(str).to_numpy(), dtype=object),
                             "written_at_s": written["time"].to_numpy(float)})
    write_of = write_of.groupby(["user", "node_id"], as_index=False)["written_at_s"].min()
    losses = losses.merge(write_of, on=["user", "node_id"], how="left")
    by_loss = losses.groupby("user").agg(orphaned=("node_id", "size"), first_loss_at_s=("lost_at_s", "min"))
    users = final.set_index("user").join(per_user).join(by_loss)
    users = users.fillna({"notes_written": 0, "notes_written_in_halt": 0, "orphaned": 0}).reset_index()
    for col in ("notes_written", "notes_written_in_halt", "orphaned", "root_children", "nodes_total"):
        users[col] = users[col].astype(int)
    users["first_loss_at_s"] = users["first_loss_at_s"].astype(float)
    users = users[["user", "notes_written", "notes_written_in_halt", "orphaned", "first_loss_at_s", "root_children",
                   "nodes_total"]].sort_values("user")
    batches = ev[(ev["kind"].astype(str) == "batch").to_numpy(bool)] if user_col else ev.iloc[0:0]
    n_batches = run.meta.get("reimport_batches")
    if n_batches is None:
        resume_values = nem.loc[(nem["f"].astype(str) == "resume").to_numpy(bool), "value"]
        n_batches = sum(int(v.get("batches", 0)) for v in resume_values if isinstance(v, dict)) or len(batches)
    return FleetAnalysis(path=Path(path), meta=run.meta, users=users.reset_index(drop=True),
                         losses=losses[["user", "node_id", "lost_at_s", "written_at_s"]],
                         halt=halt, batches=int(n_batches),
                         deploy_at_s=float(deploy.min()) if len(deploy) else None,
                         last_write_at_s=float(written["time"].max()) if len(written) else None)


def halt_growth(runs: list[FleetAnalysis]) -> str:
    """What runs that differ in the collection's size show, in one computed sentence: how the
    halt and the last loss grew with the documents, and whether the notes orphaned did (they
    grow only when writes go on into the longer halt)."""
    rows = sorted((int(a.meta.get("collection_docs") or 0), a) for a in runs if a.halt_s is not None)
    if len(rows) < 2:
        raise ValueError("runs: give at least two fleet runs with a halt, differing in collection size")
    docs = np.array([d for d, _ in rows], float)
    halts = np.array([a.halt_s for _, a in rows], float)
    last = [float(a.losses["lost_at_s"].max()) if len(a.losses) else math.nan for _, a in rows]
    orphaned = [a.notes_orphaned for _, a in rows]
    slope = float(np.polyfit(docs, halts, 1)[0]) if np.ptp(docs) > 0 else math.nan
    per_doc = f" (about {slope:.3f} s more per document)" if math.isfinite(slope) else ""
    lines = [f"From {docs[0]:,.0f} to {docs[-1]:,.0f} documents, translation stayed halted from "
             f"{halts[0]:,.0f} s to {halts[-1]:,.0f} s{per_doc}"]
    if all(math.isfinite(t) for t in last):
        lines[0] += f", and the last loss showed {last[0]:,.0f} s to {last[-1]:,.0f} s into the run"
    if orphaned == sorted(orphaned) and orphaned[-1] > orphaned[0]:
        lines.append(f"the notes orphaned grew from {orphaned[0]:,} to {orphaned[-1]:,}: the longer halt "
                     "caught more writes")
    else:
        ends = [a.last_write_at_s for _, a in rows]
        shortest = min(a.halt[1] for _, a in rows if a.halt is not None and a.halt[1] is not None)
        if all(e is not None for e in ends) and max(ends) < shortest:
            lines.append(f"the notes orphaned stayed between {min(orphaned):,} and {max(orphaned):,}: every note "
                         f"was written by {max(ends):.1f} s, before even the shortest halt ended "
                         f"({shortest:,.0f} s), so a longer halt caught no more writes here")
        else:
            lines.append(f"the notes orphaned went {', '.join(f'{o:,}' for o in orphaned)}")
    return "; ".join(lines) + "."


def fleet_figure(a: FleetAnalysis) -> Any:
    """Losses over time (cumulative orphaned notes, the halt shaded) and per user."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from repro_kit.plots import WINDOW_COLOR

    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    times = np.sort(a.losses["lost_at_s"].dropna().to_numpy(float))
    end = float(a.meta.get("ended_at_s") or (times[-1] if len(times) else 1.0))
    if a.halt is not None:
        left.axvspan(a.halt[0], a.halt[1] if a.halt[1] is not None else end, color=WINDOW_COLOR, alpha=0.35, lw=0,
                     label=f"translation halted ({a.halt_s:,.0f} s)" if a.halt_s is not None else "translation halted")
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
    from repro_kit import plots

    folder = Path(out) if out is not None else a.path
    folder.mkdir(parents=True, exist_ok=True)
    data = a.figures()
    png, svg = plots.export(fleet_figure(a), folder / "fleet", formats=("png", "svg"))
    (folder / "fleet.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    top = a.users.sort_values(["orphaned", "user"], ascending=[False, True]).head(10)
    lines = [f"# The blast radius of one schema deploy ({a.meta.get('mode')}, {a.meta.get('encoding')})", "",
             f"**{a.summary()}**", "", f"![losses over time and per user]({png.name})", "", "## In total", "",
             "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in data.items() if k != "summary"]
    lines += ["", "## The most affected users", "", "| user | notes written | written while halted | orphaned | "
              "first loss (s) |", "|---|---|---|---|---|"]
    lines += [f"| {int(r.user)} | {int(r.notes_written)} | {int(r.notes_written_in_halt)} | {int(r.orphaned)} | "
              f"{'–' if math.isnan(r.first_loss_at_s) else f'{r.first_loss_at_s:.1f}'} |" for r in top.itertuples()]
    lines += ["", "The re-import covers the whole collection in batches, so the halt grows with the collection; "
              "each user's loss shows when the batch holding their root's `Clear` reaches their device.", ""]
    (folder / "fleet.md").write_text("\n".join(lines), encoding="utf-8")
    return {"json": folder / "fleet.json", "md": folder / "fleet.md", "png": png, "svg": svg}

