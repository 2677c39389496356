"""One analysis of a recorded run: the verdict, its evidence and its explanation.

`analyse(run)` reads the run directory alone (history, events, the server's trace) and
returns an `Analysis`: intervals, lifecycle, final counts, the deploy window, resync
batches, the verdict (lost / clean / inconclusive) and, for every lost node, the causal
chain the trace witnesses. Each piece is computed once, on first use; the CLI, reports,
figures, the control panel and sweeps all take an `Analysis` and never recompute it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from repro_kit import _checks
from repro_kit._checks import InputError

from . import _timeline as timeline
from ._columns import nan_max
from .causes import Cause, Evidence, Explanation, Step, changeset_label, describe_instruction, group_causes
from .recording import EVENTS_ARROW, EVENTS_FILE, Run, load_run

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# pandas is imported only where a DataFrame is returned (intervals, lifecycle, batches): the
# verdict is computed on numpy columns (`_columns`), so a fresh process judging a run does not
# pay pandas' ~0.3 s import (issue 21, `python -X importtime`).

__all__ = ["Analysis", "analyse", "as_analysis", "check", "Verdict", "describe_batches"]

_NO_TRACE = "the backend cannot see the sync server's merge"
_DEVICE = "device"
#: How many candidates an ambiguous id prefix names before "and N more".
_CANDIDATES_SHOWN = 5
#: Up to this many re-import batches are described size by size.
_BATCHES_LISTED = 6


def describe_batches(sizes: Sequence[int]) -> str:
    """The re-import batches in words: "1 batch of 7 documents", "3 batches of 20, 20 and 6
    documents", "no re-import batch". A batch's number is its size in documents; printed bare
    ("[7]") it read as a count of batches."""
    sizes = [int(s) for s in sizes]
    if not sizes:
        return "no re-import batch"
    docs = "document" if sizes == [1] else "documents"
    if len(sizes) == 1:
        return f"1 batch of {sizes[0]} {docs}"
    if len(set(sizes)) == 1:
        return f"{len(sizes):,} batches of {sizes[0]:,} {docs}"
    if len(sizes) > _BATCHES_LISTED:  # a whole collection's re-import: thousands of batches
        return (f"{len(sizes):,} batches of {min(sizes):,} to {max(sizes):,} documents "
                f"({sum(sizes):,} documents in all)")
    listed = ", ".join(str(s) for s in sizes[:-1]) + f" and {sizes[-1]}"
    return f"{len(sizes)} batches of {listed} documents"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the run shows.

    `outcome`: "lost" (an acknowledged node is missing from the root's children on the
    device at the end), "clean", or "inconclusive" (the run ended before the deploy's
    re-import could have shown a loss; `inconclusive_reason` says why). `valid` is
    False when lost, True when clean, None when inconclusive. `lost`/`orphaned`/
    `first_loss_at_s` judge the device's view (the user's data); `stale` lists nodes
    stale in any view; `by_observer` has each view's own lists. Id lists are in ack order.
    `causes` group the lost nodes by what the trace shows removed them; `unexplained`
    are lost nodes it does not account for (all of them where the backend cannot see
    the server: `trace_available` False).
    """

    acknowledged: list[str]
    lost: list[str]
    orphaned: list[str]
    stale: list[str]
    first_loss_at_s: float | None
    resync_batches: list[int]
    valid: bool | None
    by_observer: dict[str, timeline.ObserverVerdict]
    stale_threshold_s: float = 1.0
    outcome: str = "clean"
    inconclusive_reason: str | None = None
    causes: tuple[Cause, ...] = ()
    unexplained: tuple[str, ...] = ()
    trace_available: bool = False
    no_trace: str = _NO_TRACE
    """Why there is no trace to explain a loss with, where there is none."""

    def cause_sentence(self) -> str | None:
        """The causes in one sentence, or None when nothing was lost."""
        if not self.lost:
            return None
        parts = [c.describe() for c in self.causes]
        if self.unexplained:
            why = "" if self.trace_available else f" ({self.no_trace})"
            parts.append(f"{len(self.unexplained)} unexplained{why}")
        return "Cause: " + "; ".join(parts) + "."

    def batches_phrase(self) -> str:
        """The re-import batches the device saw, in words (`describe_batches`)."""
        return describe_batches(self.resync_batches)

    def summary(self) -> str:
        """The verdict in one or two sentences, naming the cause, e.g. "14 of 20 nodes orphaned ..."."""
        n = len(self.acknowledged)
        if self.outcome == "inconclusive" and not self.lost:
            return (f"Inconclusive: {self.inconclusive_reason}. No acknowledged node lost so far "
                    f"({n} acknowledged).")
        if not self.lost:
            return f"No loss: all {n} acknowledged nodes are in the root's children at the end."
        at = f"; first loss at {self.first_loss_at_s:.1f} s" if self.first_loss_at_s is not None else ""
        if len(self.orphaned) == len(self.lost):
            what = f"{len(self.orphaned)} of {n} nodes orphaned (documents kept, missing from the root's children)"
        elif self.orphaned:
            what = f"{len(self.lost)} of {n} nodes lost from the root's children ({len(self.orphaned)} orphaned)"
        else:
            what = f"{len(self.lost)} of {n} nodes lost (missing from the root's children)"
        more = f" The run ended early ({self.inconclusive_reason}): more may be lost." \
            if self.inconclusive_reason else ""
        return f"{what}{at}. {self.cause_sentence()}{more}"


class Analysis:
    """Everything a run shows, computed once from the recording. Build with `analyse(run)`."""

    def __init__(self, run: Run, stale_threshold_s: float = 1.0) -> None:
        self.run: Run = _checks.instance("run", run, Run, "a loaded Run (repro_kit.load_run)")
        self.stale_threshold_s = _checks.number("stale_threshold_s", stale_threshold_s, 0)

    def __repr__(self) -> str:
        return f"<Analysis of {self.run.path}: {self.verdict.outcome}>"

    @property
    def meta(self) -> dict[str, Any]:
        return self.run.meta

    # -- the timeline --------------------------------------------------------------------
    @functools.cached_property
    def _events(self) -> Any:
        return self.run._columns("events")

    @functools.cached_property
    def _history(self) -> Any:
        return self.run._columns("history")

    @functools.cached_property
    def _coded(self) -> timeline._Coded:
        return timeline._Coded(self.run, self._events, self._history)

    @functools.cached_property
    def _arrays(self) -> dict[str, np.ndarray]:
        return timeline._interval_arrays(self._coded)

    @functools.cached_property
    def _life(self) -> dict[str, np.ndarray]:
        return timeline._lifecycle_arrays(self._coded, self._arrays)

    @functools.cached_property
    def intervals(self) -> pd.DataFrame:
        """Every present/absent interval per node and observer (see `timeline.intervals`)."""
        return timeline._intervals_frame(self._coded, self._arrays)

    @functools.cached_property
    def lifecycle(self) -> pd.DataFrame:
        """One row per (node, observer) (see `timeline.lifecycle`)."""
        return timeline._lifecycle_frame(self._coded, self._life)

    @functools.cached_property
    def final_counts(self) -> dict[str, dict[str, Any]]:
        """Each view's counts at the end: the last ones its events reported, or for the user's own
        view the final read where the run made one (what was there, whatever the events say)."""
        counts = timeline._final_counts(self._events)
        reads = self.final_reads
        if len(reads) == 1:
            (read,) = reads.values()
            counts[self.judged] = {"root_children": len(read.get("children") or ()),
                                   "nodes_total": read.get("nodes_total")}
        return counts

    @functools.cached_property
    def _batches(self) -> tuple[np.ndarray, np.ndarray]:
        return timeline._batches(self._events)

    @functools.cached_property
    def batches(self) -> pd.DataFrame:
        """The re-import batches the device saw: [time, batch (documents)]."""
        import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

        times, sizes = self._batches
        return pd.DataFrame({"time": times, "batch": sizes})

    @functools.cached_property
    def deploy_window(self) -> tuple[float, float] | None:
        """(deploy invoked, translation resumed); without a resume, until the last device batch
        after the deploy, or the run end. None: no deploy."""
        h = self._history
        deploys = h.time[h.rows("deploy", "invoke")]
        if not len(deploys):
            return None
        start = -nan_max(-deploys)  # pandas' min: NaN skipped
        with np.errstate(invalid="ignore"):
            resumes = h.time[h.rows("resume") & (h.time >= start)]
        if len(resumes):
            return start, float(resumes.min())
        times = self._batches[0]
        after = times[times >= start]
        end = float(after.max()) if len(after) else self.run.end_s
        return start, max(end, start)

    @functools.cached_property
    def _nemesis_rows(self) -> list[int]:
        return self._history.nemesis_rows()

    def nemesis(self, f: str) -> list[tuple[float, Any]]:
        """(time, value) of every nemesis op named `f` ("deploy", "halt", "resume"), in time order."""
        h = self._history
        return [(float(h.time[i]), h.value[i]) for i in self._nemesis_rows if h.f[i] == f]

    # -- the evidence --------------------------------------------------------------------
    @functools.cached_property
    def trace_available(self) -> bool:
        """Could this backend see the sync server's merge? (The live backend cannot.)"""
        declared = self.meta.get("server_trace")
        return bool(declared) if declared is not None else bool(self.run.trace)

    @functools.cached_property
    def evidence(self) -> Evidence:
        root = self.meta.get("root_id")
        return Evidence(self.run.trace, str(root) if root is not None else None)

    @functools.cached_property
    def _grouped(self) -> tuple[tuple[Cause, ...], tuple[str, ...]]:
        return group_causes(self.evidence, self._device.lost)

    @property
    def causes(self) -> tuple[Cause, ...]:
        """Lost nodes grouped by the instruction that discarded their link, most nodes first."""
        return self._grouped[0]

    @property
    def unexplained(self) -> tuple[str, ...]:
        return self._grouped[1]

    # -- the verdict ---------------------------------------------------------------------
    @functools.cached_property
    def _by_observer(self) -> dict[str, timeline.ObserverVerdict]:
        return {o: timeline._observer_verdict(self._coded, self._life, o, self.stale_threshold_s)
                for o in self._coded.observers}

    @functools.cached_property
    def judged(self) -> str:
        """The view the verdict judges: the user's own (the device's; Atlas's on a backend that
        cannot see a device, per meta.json "observers")."""
        observers = self.meta.get("observers")
        first = observers[0] if isinstance(observers, list) and observers else _DEVICE
        return first if first in self._by_observer else _DEVICE

    @property
    def _device(self) -> timeline.ObserverVerdict:
        return self._by_observer[self.judged]

    @functools.cached_property
    def final_reads(self) -> dict[Any, dict[str, Any]]:
        """The driver's final read of each process's device view: {process: {"root_id", "children",
        "nodes_total"}} (Jepsen's set-full final read); empty for runs recorded without one."""
        h = self._history
        reads = np.flatnonzero(h.rows("read", "ok")).tolist()
        return {h.process[i]: h.value[i] for i in reads if isinstance(h.value[i], dict)}

    @functools.cached_property
    def _lost_by_read(self) -> list[str] | None:
        """Acknowledged nodes missing from their process's final read, in ack order (None: no reads)."""
        reads = self.final_reads
        if not reads:
            return None
        h = self._history
        acks = np.flatnonzero(h.rows("add", "ok")).tolist()
        owner = {str(h.node_id[i]): h.process[i] for i in acks}
        kept = {p: set(map(str, v.get("children") or ())) for p, v in reads.items()}
        return [n for n in self._coded.ack_ids if owner.get(n) in kept and n not in kept[owner[n]]]

    def _evidence_problem(self) -> str | None:
        """Why the recording cannot be trusted for a count: a file cut short, meta.json missing or
        invalid, or the events disagreeing with the final read."""
        if self.run.incomplete:
            return "; ".join(self.run.incomplete)
        by_read = self._lost_by_read
        if by_read is not None and set(by_read) != set(self._device.lost):
            differ = len(set(by_read) ^ set(self._device.lost))
            path = self.run.path
            events = EVENTS_ARROW if path is not None and (path / EVENTS_ARROW).exists() else EVENTS_FILE
            return (f"{events} disagrees with the final read of the device on {differ} node(s): "
                    "the events are incomplete")
        return None

    @functools.cached_property
    def inconclusive_reason(self) -> str | None:
        """Why the run cannot show whether the deploy loses data, or None.

        The evidence incomplete (a file cut short, meta.json missing or invalid, events that
        disagree with the final read; a recording that knows it is incomplete says why in
        meta.json's `inconclusive_reason`, e.g. a replayed log that lacks history the device had),
        a deploy that failed or never happened though one was planned, translation still halted
        at the end, or a re-import not all of whose batches reached the device."""
        problem = self._evidence_problem()
        if problem is not None:
            return problem
        declared = self.meta.get("inconclusive_reason")
        if declared:
            return str(declared)
        end = self.run.end_s
        planned = self.meta.get("deploy_at_s")
        deploys = self.nemesis("deploy")
        if not deploys and not self.run.finished:
            if planned is not None:
                return f"the run stopped at {end:.1f} s, before the deploy planned at {float(planned):g} s"
            return f"the run stopped at {end:.1f} s, before any schema deploy"
        failed = self._deploy_not_made(planned)
        if failed is not None:
            return failed
        halts, resumes = self.nemesis("halt"), self.nemesis("resume")
        if halts:
            last_halt = halts[-1][0]
            later = [(t, v) for t, v in resumes if t >= last_halt]
            if not later:
                return (f"translation was still halted when the run ended at {end:.1f} s (halted at "
                        f"{last_halt:.1f} s; the re-import had not run)")
            expected = later[0][1].get("batches") if isinstance(later[0][1], dict) else None
            seen = int((self._batches[0] >= last_halt).sum())
            if isinstance(expected, int) and seen < expected:
                return (f"the device had received {seen} of {expected} re-import batches when the run ended "
                        f"at {end:.1f} s")
        return None

    def _deploy_not_made(self, planned: Any) -> str | None:
        """Why no deploy took effect though one was asked for (planned in meta, or invoked), or
        None: a run whose deploy failed, never completed or never happened shows nothing about
        what a deploy does, so it is never clean."""
        h = self._history
        rows = [i for i in self._nemesis_rows if h.f[i] == "deploy"]  # in time order
        types = [str(h.type[i]) for i in rows]
        if "ok" in types:
            return None
        if "fail" in types:
            at, value = h.time[rows[types.index("fail")]], h.value[rows[types.index("fail")]]
            value = value if isinstance(value, dict) else {}
            because = (f" ({value['error']})" if value.get("error") else
                       f" (deployment status {value['status']!r})" if value.get("status") else "")
            return f"the schema deploy at {float(at):.1f} s failed{because}: nothing was deployed"
        if "invoke" in types:
            at = h.time[rows[types.index("invoke")]]
            return f"the schema deploy invoked at {float(at):.1f} s never completed"
        if planned is not None:
            return f"the schema deploy planned at {float(planned):g} s never happened"
        return None

    @functools.cached_property
    def verdict(self) -> Verdict:
        c = self._coded
        acked = list(c.ack_ids)
        ack_rank = {n: i for i, n in enumerate(acked)}
        by = self._by_observer
        stale = sorted({n for v in by.values() for n in v.stale}, key=ack_rank.__getitem__)
        device = self._device
        reason = self.inconclusive_reason
        lost, orphaned = device.lost, device.orphaned
        if self._evidence_problem() is not None:  # no count from incomplete evidence
            outcome = "inconclusive"
            if lost:
                reason = (f"{reason} (what could be read shows {len(lost)} acknowledged node(s) missing from the "
                          "root's children; no count is given from incomplete evidence)")
            lost, orphaned = [], []
        else:
            outcome = "lost" if lost else ("inconclusive" if reason else "clean")
        return Verdict(
            acknowledged=acked, lost=lost, orphaned=orphaned, stale=stale,
            first_loss_at_s=device.first_loss_at_s,
            resync_batches=[int(b) for b in self._batches[1]],
            valid={"lost": False, "clean": True}.get(outcome), by_observer=by,
            stale_threshold_s=self.stale_threshold_s, outcome=outcome, inconclusive_reason=reason,
            causes=self.causes if lost else (), unexplained=self.unexplained if lost else (),
            trace_available=self.trace_available,
            no_trace=str(self.meta.get("trace_note") or Verdict.no_trace),
        )

    def summary(self) -> str:
        return self.verdict.summary()

    def figures(self) -> dict[str, Any]:
        """The run's outcome as plain numbers: one row of a sweep (`sweeps.RESULT_COLUMNS`)."""
        v = self.verdict
        device = self.final_counts.get(self.judged, {})
        return {
            "nodes_created": len(v.acknowledged),
            "lost_count": len(v.lost),
            "orphaned": len(v.orphaned),
            "root_children": device.get("root_children"),
            "nodes_total": device.get("nodes_total"),
            "first_loss_at_s": v.first_loss_at_s,
            "resync_batches": len(v.resync_batches),
            "valid": v.valid,
            "verdict": v.outcome,
            "cause": v.causes[0].rule if v.causes else None,
        }

    # -- explanations --------------------------------------------------------------------
    @functools.cached_property
    def node_ids(self) -> tuple[str, ...]:
        """Every node id the run shows (the root, acknowledged nodes, nodes a view saw), root first."""
        root = self.meta.get("root_id")
        ids = ([str(root)] if root is not None else []) + list(self.verdict.acknowledged) \
            + list(self._adds) + self.lifecycle["node_id"].astype(str).tolist()
        return tuple(dict.fromkeys(ids))

    def resolve_node(self, node_id: Any) -> str:
        """The full id of `node_id`: a node of this run, or a unique prefix of one (the figures
        show 8-character prefixes). ValueError, saying which, for None, "", an id that is no
        node of this run, and a prefix that starts several (naming them)."""
        if node_id is None:
            raise InputError("node_id", f"None given; pass a node's id or a unique prefix of it "
                             f"(verdict.lost lists the {len(self.verdict.lost)} lost nodes)")
        node = str(node_id).strip()
        if not node:
            raise InputError("node_id", f"empty string given; pass a node's id or a unique prefix of it "
                             f"(verdict.lost lists the {len(self.verdict.lost)} lost nodes)")
        ids = self.node_ids
        if node in ids:
            return node
        matches = [n for n in ids if n.startswith(node)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(matches[:_CANDIDATES_SHOWN])
            more = f" and {len(matches) - _CANDIDATES_SHOWN} more" if len(matches) > _CANDIDATES_SHOWN else ""
            raise InputError("node_id", f"prefix {node!r} is ambiguous: {len(matches)} nodes start with it "
                             f"({shown}{more}); give more characters")
        raise InputError("node_id", f"{node!r} is no node of this run (neither the id of one of its "
                         f"{len(ids)} nodes nor the prefix of one)")

    def explain(self, node_id: Any) -> Explanation:
        """The causal chain of a lost node, from the recording. `node_id` is its id or a unique
        prefix of it. ValueError, saying which, when it names the root, a node that survived,
        one never acknowledged, no node of the run, an ambiguous prefix, "" or None."""
        node = self.resolve_node(node_id)
        if node not in self._device.lost:
            raise ValueError(self._not_lost(node))
        return next(e for e in self._explanations if e.node_id == node)

    def _not_lost(self, node: str) -> str:
        """Why `node` (a node of this run) has no causal chain."""
        n_lost = len(self._device.lost)
        hint = f"verdict.lost lists the {n_lost} lost nodes" if n_lost else "this run lost no node"
        if node == str(self.meta.get("root_id")):
            return (f"node_id: {node} is not a lost node of this run: it is the root node, which holds the "
                    f"children list ({hint})")
        if node not in self.verdict.acknowledged:
            return (f"node_id: {node} is not a lost node of this run: the server never acknowledged it, so "
                    f"losing it is not a loss of acknowledged data ({hint})")
        return (f"node_id: {node} is not a lost node of this run: it survived, in the root's children on the "
                f"device at the end ({hint})")

    def explanations(self) -> list[Explanation]:
        """One explanation per lost node, in ack order (built once; the report, its figures and
        the sequence diagram all read them)."""
        return list(self._explanations)

    @functools.cached_property
    def _explanations(self) -> tuple[Explanation, ...]:
        return tuple(self._explain(n) for n in self._device.lost)

    @functools.cached_property
    def _adds(self) -> dict[str, dict[str, float]]:
        h = self._history
        out: dict[str, dict[str, float]] = {}
        for row in np.flatnonzero(h.rows("add") & (h.node_id != None)).tolist():  # noqa: E711 (elementwise)
            out.setdefault(str(h.node_id[row]), {}).setdefault(str(h.type[row]), float(h.time[row]))
        return out

    def _explain(self, node: str) -> Explanation:
        """The causal chain of one lost node: its write and ack, the halt it fell into, the
        changeset that carried the instruction, the discard, and what each view showed after."""
        record = self.evidence.discard_of(node)
        lost_by = float(record["time"]) if record is not None and record.get("time") is not None else self.run.end_s
        steps = [*self._write_steps(node), *self._halt_steps(lost_by)]
        cause = next((c for c in self.causes if node in c.nodes), None)
        if record is None or cause is None:
            why = ("the trace shows no instruction that removed it" if self.trace_available
                   else f"{self.meta.get('trace_note') or _NO_TRACE} (no trace)")
            steps += self._aftermath(node)
            steps.append(Step(None, "sync server", f"unexplained: {why}"))
            return Explanation(node_id=node, explained=False, cause=None, steps=tuple(sorted(steps, key=_order)))
        steps += [self._changeset_step(node, cause), self._discard_step(record), *self._aftermath(node)]
        return Explanation(node_id=node, explained=True, cause=cause, steps=tuple(sorted(steps, key=_order)),
                           discard=dict(record))

    def _write_steps(self, node: str) -> list[Step]:
        """The device's write and the server's acknowledgement, as the history has them."""
        ev = self.evidence
        adds = self._adds.get(node, {})
        created = ev.created_in.get(node)
        origin = ev.integrated.get(created, {}).get("origin") if created is not None else None
        who = f"device (peer {origin})" if isinstance(origin, int) and origin != 1 else "device"
        steps = []
        if "invoke" in adds:
            steps.append(Step(adds["invoke"], "device", f"{who} wrote the node and appended it to the root's children"))
        if "ok" in adds:
            at = f" as server version {created}" if created is not None else ""
            steps.append(Step(adds["ok"], "sync server", f"integrated it{at} and acknowledged it"))
        return steps

    def _halt_steps(self, lost_by: float) -> list[Step]:
        """The halt the loss came out of: the last one before it."""
        halts = [(t, v) for t, v in self.nemesis("halt") if t <= lost_by]
        steps = []
        for t, value in halts[-1:]:
            info = value if isinstance(value, dict) else {}
            snap, docs = info.get("snapshot_version"), info.get("snapshot_docs")
            detail = f" at server version {snap}" if snap is not None else ""
            count = f" ({docs} documents)" if docs is not None else ""
            earlier = " (before this run began)" if info.get("before_run") else ""
            steps.append(Step(t, "translator", f"the schema deploy halted translation and snapshotted "
                                               f"Atlas{detail}{count}{earlier}"))
        return steps

    def _changeset_step(self, node: str, cause: Cause) -> Step:
        """The changeset that carried the discarded instruction, and the version it was based on."""
        ev = self.evidence
        created = ev.created_in.get(node)
        linked = ev.linked_in.get(node, created)
        cs = cause.changeset
        base = cs.get("base_version")
        before = ""
        if isinstance(base, int) and isinstance(linked, int) and base < linked:
            before = " (before the node existed)" if created is not None and base < created else " (before its link)"
        based = f", based on version {base}{before}" if base is not None else ""
        label = changeset_label({**cs, "time": None, "base_version": None, "version": None})
        version = f" integrated as server version {cs['version']}" if cs.get("version") is not None else ""
        return Step(cs.get("time"), "translator" if cs.get("origin") == "re-import" else "sync server",
                    f"{label}{version}{based}, carried {cs.get('instruction')}")

    def _discard_step(self, record: Mapping[str, Any]) -> Step:
        """The merge rule that discarded the node's instruction, on the server or a device."""
        victim = describe_instruction(record.get("instruction") or {}, self.evidence.root_id)
        where = record.get("instruction_in")
        source = (f" (from version {where})" if isinstance(where, int)
                  else " (not yet acknowledged)" if where == "local" else "")
        on_device = record.get("at") != "server"
        at = f" (rebasing on device peer {record.get('peer')})" if on_device else ""
        return Step(float(record["time"]) if record.get("time") is not None else None,
                    "device" if on_device else "sync server",
                    f"rule {record.get('rule')} discarded the node's {victim}{source}{at}")

    def _aftermath(self, node: str) -> list[Step]:
        """When each view lost it, and whether its document survived."""
        import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

        life = self.lifecycle
        rows = life[(life["node_id"].astype(str) == node).to_numpy(bool)]
        steps: list[Step] = []
        row: Any  # a row's fields are whatever the frame holds
        for row in rows.itertuples(index=False):
            obs = str(row.observer)
            if row.final_present:
                continue
            kept = bool(row.doc_exists_at_end)
            doc = "its document was kept (orphaned)" if kept else "its document is gone too"
            if obs == _DEVICE:
                t = None if pd.isna(row.lost_at) else float(row.lost_at)
                batch = self.batches[(self.batches["time"] - (t or -1)).abs() < 1e-6]
                what = ("the device integrated the re-import batch and the node left the root's children"
                        if len(batch) else "on the device, the node left the root's children")
                steps.append(Step(t, "device", f"{what}; {doc}"))
            elif obs == "atlas":
                window = self.deploy_window
                t = window[1] if window is not None and self.nemesis("resume") else None
                steps.append(Step(t, "Atlas", f"once translation resumed, Atlas's root lacks the node; {doc}"))
        return steps


def _order(step: Step) -> tuple[float, int]:
    return (math.inf if step.time is None else step.time, 0)


def analyse(run: Run | str | os.PathLike[str], stale_threshold_s: float = 1.0) -> Analysis:
    """The one analysis of `run`: a loaded run directory, an in-memory run from a sweep, or the
    path of a run directory (str or PathLike; loaded with `load_run`)."""
    if isinstance(run, (str, os.PathLike)):
        if not str(run).strip():
            raise InputError("run", f"must name a run directory, got {str(run)!r}")
        run = load_run(run)
    return Analysis(run, stale_threshold_s)


def as_analysis(run: Run | Analysis | str | os.PathLike[str]) -> Analysis:
    """Callers may hand a Run or a run directory's path (analysed here, once) or the Analysis
    they already hold."""
    if isinstance(run, Analysis):
        return run
    if isinstance(run, (Run, str, os.PathLike)):
        return analyse(run)
    raise InputError("run", f"must be a Run, an Analysis or a run directory's path, got {type(run).__name__}")


def check(run: Run, stale_threshold_s: float = 1.0) -> Verdict:
    """`analyse(run).verdict`: lost, orphaned and stale nodes, first loss, batches, causes."""
    return analyse(run, stale_threshold_s).verdict
