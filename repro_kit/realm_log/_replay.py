"""Replay a client's sync log through the kit's merge and name the objects that left a list.

Why: a trace log holds every changeset the device uploaded and downloaded, with the versions
that order them; replayed through `repro_kit.emulator.ot` (the kit's model of realm-core's merge,
checked on 2,400 realm-core outcomes) it shows the device's list as the device saw it, which
objects left it, in which changeset, and which merge rule took them, without a model of the app.

The order of integration comes from versions, not from log lines. A local changeset uploaded
with `server_version=s` was made when the device had integrated server version s (FORMAT_NOTES:
it is the change's base), so it lies after download s and before download s+1. A download's
header `client_version` is the last of this client's versions the server had merged before it
(realm-core's `last_integrated_local_version`), so the device rebases the download past its own
changes with a higher client version, exactly as realm-core's client does. A batch summary
`Received: DOWNLOAD(download_server_version=V, download_client_version=C, ...)` acknowledges
this client's changes up to C, integrated at the server versions up to V that no download took.

`origin_base` says how "based on server version N" of a downloaded changeset is known; read it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from repro_kit.causes import describe_instruction
from repro_kit.emulator import ot

from ._logparse import REALM_EPOCH, LogChangeset, SyncLog, parse_log
from ._translate import LIST_FIELD, TABLE, Untranslatable, describe, translate

__all__ = ["Replay", "Step", "Loss", "BaseVersion", "replay", "replay_log", "origin_base"]

_PLACEHOLDER = "\x00before-log:"  # list elements the device had before the log began (never a real pk)


@dataclasses.dataclass
class Step:
    """One changeset the device integrated: its own ("local") or another peer's ("download")."""

    kind: str
    line: int
    time: float
    client_version: int
    server_version: int | None
    base_version: int | None
    origin: int
    origin_timestamp: int
    instructions: list[dict[str, Any]]
    realm: tuple[Any, ...]
    untranslatable: list[Untranslatable]
    acked_at: float | None = None
    ack_exact: bool = True
    size: int | None = None
    base: BaseVersion | None = None

    @property
    def label(self) -> str:
        if self.kind == "local":
            where = f", integrated as server version {self.server_version}" if self.server_version else ""
            return f"the device's own change (client version {self.client_version}, based on server version " \
                   f"{self.base_version}{where})"
        return f"server version {self.server_version} from origin_file_ident {self.origin}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "line": self.line, "time": round(self.time, 6),
                "client_version": self.client_version, "server_version": self.server_version,
                "base_version": self.base_version, "base_derivation": self.base.how if self.base else None,
                "origin_file_ident": self.origin, "origin_timestamp": self.origin_timestamp, "size": self.size,
                "acked_at": None if self.acked_at is None else round(self.acked_at, 6),
                "instructions": [describe(i) for i in self.realm],
                "kit_instructions": self.instructions,
                "untranslatable": [dataclasses.asdict(u) for u in self.untranslatable]}


@dataclasses.dataclass(frozen=True)
class BaseVersion:
    """The server version a downloaded changeset's author had integrated when making it.

    `version`: None when the log cannot tell; `how`: "inferred" or "unknown" with `why`;
    `at_most`: the bound the download header gives (see `origin_base`)."""

    version: int | None
    how: str
    why: str
    at_most: int | None


@dataclasses.dataclass(frozen=True)
class Loss:
    """Objects that were appended to a list and are not in it at the end, grouped by cause."""

    objects: tuple[str, ...]
    list: str  # Node[root].children
    outcome: str  # "left" | "never-entered" | "deleted"
    step: dict[str, Any] | None  # the changeset that removed them (Step.as_dict, short)
    instruction: str | None  # the removing instruction, e.g. Clear(root.children)
    rule: str | None  # the merge rule, e.g. clear-vs-array-insert; None: not a merge outcome
    at: str | None  # where the rule acted: "server" (reconstructed) | "device"
    explanation: str

    def sentence(self) -> str:
        names = ", ".join(self.objects)
        return f"{names} {self.explanation}"


@dataclasses.dataclass
class Replay:
    """The outcome of a replay; `write_run(dir)` records it as a kit run directory."""

    log: SyncLog
    client_file_ident: int | None
    steps: list[Step]
    root_id: str | None
    state: dict[str, Any]
    losses: list[Loss]
    appends: dict[str, dict[str, Any]]  # object -> its first append into the root's list
    inconclusive: list[str]
    notes: list[str]
    trace: list[dict[str, Any]]
    events: list[dict[str, Any]]
    ops: list[dict[str, Any]]
    encoding: str
    list_history: list[tuple[Step, list[str]]] = dataclasses.field(default_factory=list)
    """The root's list as the device saw it after each step (what notebook 06 draws)."""

    @property
    def lost(self) -> list[str]:
        return [o for loss in self.losses for o in loss.objects]

    @property
    def orphaned(self) -> list[str]:
        return [o for loss in self.losses if loss.outcome != "deleted" for o in loss.objects]

    @property
    def verdict(self) -> str:
        if self.lost:
            return "lost"
        return "inconclusive" if self.inconclusive else "clean"

    def root_children(self) -> list[str]:
        return _visible_children(self.state, self.root_id) if self.root_id else []

    def summary_lines(self) -> list[str]:
        """What `repro-kit replay` prints: one line per loss, how each base is known, the verdict."""
        lines = [loss.sentence() for loss in self.losses]
        for loss in self.losses:
            base = (loss.step or {}).get("base_derivation")
            if base:
                lines.append(f"  ({base})")
        if not self.losses:
            n = sum(1 for a in self.appends.values())
            lines.append(f"No appended object left {self._list_name()}: {n} appends replayed, "
                         f"{len(self.root_children())} objects in the list at the end.")
        for reason in self.inconclusive:
            lines.append(f"Inconclusive: {reason}")
        return lines

    def _list_name(self) -> str:
        return f"{TABLE}[{self.root_id}].{LIST_FIELD}" if self.root_id else f"{TABLE}.{LIST_FIELD}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "log": self.log.source,
            "client_file_ident": self.client_file_ident,
            "verdict": self.verdict,
            "list": self._list_name(),
            "root_id": self.root_id,
            "orphaned": self.orphaned,
            "lost": self.lost,
            "losses": [dataclasses.asdict(loss) for loss in self.losses],
            "root_children_at_end": self.root_children(),
            "objects_at_end": sorted(pk for pk in self.state.get(TABLE, {}) if not pk.startswith(_PLACEHOLDER)),
            "inconclusive_reasons": self.inconclusive,
            "notes": self.notes,
            "changesets": [s.as_dict() for s in self.steps],
            "skipped": self.log.skipped_lines(),
            "untranslatable": [dict(dataclasses.asdict(u), changeset_line=s.line)
                               for s in self.steps for u in s.untranslatable],
        }

    def write_run(self, out: str | os.PathLike[str]) -> Path:
        """Record the replay as a kit run directory (meta, history, events, trace) the kit's checker
        (`findings.analyse(load_run(out))`) and `repro-kit report` read like any run."""
        # measured: the recorder imports pandas (~0.9 s); a replay without a run directory never needs it
        from ._record import write_run  # noqa: PLC0415 - see above (and _record imports this module)

        return write_run(self, Path(out))


# ------------------------------------------------------------------------------------------ helpers


def _visible_children(state: dict[str, Any], pk: str | None) -> list[str]:
    table = state.get(TABLE, {})
    obj = table.get(pk) if pk is not None else None
    if obj is None:
        return []
    return [c for c in obj.get(LIST_FIELD, []) if c in table]


def _objects(state: dict[str, Any]) -> set[str]:
    return {pk for pk in state.get(TABLE, {}) if not pk.startswith(_PLACEHOLDER)}


def _seconds(log: SyncLog, changesets: list[LogChangeset]) -> Any:
    """origin_timestamp (ms since 2015-01-01) -> seconds on the log's own time axis."""
    if log.start is not None:
        start = log.start

        def at(ms: int) -> float:
            return (REALM_EPOCH + _dt.timedelta(milliseconds=ms) - start).total_seconds()
        return at
    first = min((c.origin_timestamp for c in changesets if c.origin_timestamp), default=0)
    return lambda ms: (ms - first) / 1000.0


def _first(items: Iterable[Any]) -> Any:
    return next(iter(items), None)


# ------------------------------------------------------------------------------------------ the base


def origin_base(step: Step, device_lists: dict[int, dict[str, list[str]]], own_versions: dict[int, int]) -> BaseVersion:
    """The server version the author of a downloaded changeset had integrated: its base.

    What the log says, field by field (realm-core 13.17.1, protocol_codec.hpp and
    client_impl_base.cpp):
    - DOWNLOAD CHANGESET's `server_version` is the changeset's own version; its `client_version`
      is `last_integrated_local_version`: the last of THIS client's versions the server had
      merged into its history before integrating the changeset. With the batch summaries
      (`download_server_version=V, download_client_version=C`: this client's changes up to C are
      in the server's history by version V) it gives the server version of that client change,
      an upper bound: the author cannot have seen anything the server integrated later.
    - Nothing in a client's log carries the author's own base: realm-core's protocol sends the
      base only upstream (UPLOAD's `server_version`, logged by the author's client and by the
      server as `Received: UPLOAD CHANGESET(... server_version=N ...)`), never to other clients;
      `original_changeset_size` equal to `changeset_size` only says the server's merge did not
      change the changeset.
    So the base is inferred, and said to be: a changeset that clears a list and writes it back
    (`Clear` then `ArrayInsert`s: a re-import, realm-core's `List::assign`) writes the list as
    its author saw it; the base is the latest server version, at or below the bound, after which
    the list held exactly that (as this device saw the server's history). When no version
    matches, or the changeset writes no list back, the base is "unknown" and only the bound is
    given. (A log of the author's own client, or the server's log, would give it exactly.)
    """
    assert step.server_version is not None
    bound = own_versions.get(step.client_version)  # the server version of this client's change `client_version`
    written = _rewritten_lists(step.instructions)
    if not written:
        return BaseVersion(None, "unknown", "the changeset rewrites no list, so the log cannot tell what its author "
                                            "had seen", bound)
    candidates = sorted(v for v in device_lists if v < step.server_version and (bound is None or v <= bound))
    for version in reversed(candidates):
        lists = device_lists[version]
        if all(lists.get(owner) == content for owner, content in written.items()):
            owner = next(iter(written))
            limit = f" (the download header's client_version={step.client_version} bounds it by server version " \
                    f"{bound})" if bound is not None else ""
            return BaseVersion(version, "inferred",
                               f"based on server version {version}: inferred, the changeset writes "
                               f"{TABLE}[{owner}].{LIST_FIELD} back exactly as it was at server version {version}; "
                               f"no field of a client's log carries the author's base{limit}", bound)
    return BaseVersion(None, "unknown", "the list it writes back matches no server version this device saw", bound)


def _rewritten_lists(instructions: list[dict[str, Any]]) -> dict[str, list[str]]:
    """{owner: content} of each list the changeset clears and then writes (its final content)."""
    out: dict[str, list[str]] = {}
    cleared: set[str] = set()
    for ins in instructions:
        owner: Any = ins.get("object")
        if ins["op"] == "Clear":
            cleared.add(owner)
            out[owner] = []
        elif owner in cleared and ins.get("field") == LIST_FIELD:
            content = out[owner]
            if ins["op"] == "ArrayInsert":
                content.insert(ins["index"], ins["value"])
            elif ins["op"] == "ArrayErase":
                del content[ins["index"]]
            elif ins["op"] == "Update" and "index" in ins:
                content[ins["index"]] = ins["value"]
    return out


# ------------------------------------------------------------------------------------------ the replay


class _Replayer:
    _history: dict[int, tuple[int, dict[str, Any]]]  # the server's history, once built (_server_history)

    def __init__(self, log: SyncLog) -> None:
        self.log = log
        self.inconclusive: list[str] = []
        self.notes: list[str] = []
        self.trace: list[dict[str, Any]] = []
        idents = [e.fields.get("client_file_ident") for e in log.events if e.kind == "ident"]
        self.ident: int | None = idents[-1] if idents else None
        self.own_origin = self.ident if self.ident is not None else 0
        self.at = _seconds(log, log.changesets)
        self.erased: set[str] = set()

    def _say(self, bucket: list[str], text: str) -> None:
        if text not in bucket:
            bucket.append(text)

    # -- building the steps -----------------------------------------------------------------
    def steps(self) -> list[Step]:
        uploads: dict[int, LogChangeset] = {}
        downloads: dict[int, LogChangeset] = {}
        for c in self.log.changesets:  # an upload's first copy (when it was made), a download's last (integrated)
            if c.direction == "upload":
                if c.client_version in uploads:
                    self.log.skipped["an upload sent again (same client version, a new session)"] += 1
                    continue
                uploads[c.client_version] = c
            else:
                if c.server_version in downloads:
                    self.log.skipped["a download received again (same server version, a new session): the "
                                     "last copy is replayed"] += 1
                downloads[c.server_version] = c
        locals_ = [self._step(c, "local") for c in sorted(uploads.values(), key=lambda c: c.client_version)]
        remote = [self._step(c, "download") for c in sorted(downloads.values(), key=lambda c: c.server_version)]
        self._acknowledge(locals_, remote)
        order: list[Step] = []
        pending = list(locals_)
        for d in remote:
            while (pending and pending[0].base_version is not None and d.server_version is not None
                   and pending[0].base_version < d.server_version):
                order.append(pending.pop(0))
            order.append(d)
        order += pending
        self._check_order(order)
        return order

    def _step(self, c: LogChangeset, kind: str) -> Step:
        assert c.decoded is not None
        t = translate(c.decoded.instructions)
        time = c.time if c.time is not None else self.at(c.origin_timestamp)
        if kind == "local":
            time = self.at(c.origin_timestamp) if self.log.timestamps else time
        else:
            integrated = _first(e for e in self.log.events if e.kind == "integrated" and e.line > c.line)
            if integrated is not None and integrated.time is not None:
                time = integrated.time
        for u in t.untranslatable:
            if u.touches_list:
                self._say(self.inconclusive, f"{u.instruction} (log line {c.line}): {u.reason}; the replay of "
                                             f"{TABLE}.{LIST_FIELD} cannot be trusted past it")
        return Step(kind=kind, line=c.line, time=time, client_version=c.client_version,
                    server_version=c.server_version if kind == "download" else None,
                    base_version=c.server_version if kind == "local" else None,
                    origin=self.own_origin if kind == "local" else c.origin_file_ident,
                    origin_timestamp=c.origin_timestamp, instructions=t.instructions, realm=c.decoded.instructions,
                    untranslatable=t.untranslatable, size=c.size)

    def _acknowledge(self, locals_: list[Step], remote: list[Step]) -> None:
        """Give each local change the server version it was integrated as, from the batch summaries."""
        taken = {d.server_version for d in remote}
        by_cv = {s.client_version: s for s in locals_}
        progress = 0
        for e in self.log.events:
            if e.kind != "batch":
                continue
            v, c = e.fields.get("download_server_version", 0), e.fields.get("download_client_version", 0)
            if v <= progress:
                continue
            free = [x for x in range(progress + 1, v + 1) if x not in taken]
            acked = [s for cv, s in sorted(by_cv.items()) if cv <= c and s.server_version is None]
            exact = len(free) == len(acked)
            when = e.time if e.time is not None else self._line_time(e.line)
            if len(free) < len(acked):
                self._say(self.notes, f"line {e.line}: more changes acknowledged than server versions free; "
                                      "their server versions are approximate")
            for step, version in zip(acked, free):
                step.server_version, step.acked_at, step.ack_exact = version, when, exact
                taken.add(version)
            if not exact and acked:
                self._say(self.notes, f"line {e.line}: {len(acked)} of this client's changes were acknowledged "
                                      f"among {len(free)} server versions; which is which is approximate")
            progress = v

    def _line_time(self, line: int) -> float:
        """A line without a timestamp happened no earlier than the changesets logged before it."""
        times = [c.time if c.time is not None else self.at(c.origin_timestamp)
                 for c in self.log.changesets if c.line < line]
        return max(times, default=0.0)

    def _check_order(self, order: list[Step]) -> None:
        last = None
        for step in order:
            if last is not None and step.time < last.time - 1e-3:
                self._say(self.notes, f"log line {step.line}: its time is before the change it follows in "
                                      "version order (clocks differ); versions decide the order")
                step.time = last.time
            last = step

    # -- applying them ---------------------------------------------------------------------
    def run(self) -> Replay:
        steps = self.steps()
        state: dict[str, Any] = {TABLE: {}}
        applied: list[tuple[Step, dict[str, Any]]] = []  # local changes, rebased as downloads arrive
        self.root = self._root(steps)
        lists_at_version: dict[int, dict[str, list[str]]] = {0: {}}
        own_versions = {s.client_version: s.server_version for s in steps if s.kind == "local" and s.server_version}
        self.events: list[dict[str, Any]] = []
        timeline: list[tuple[Step, dict[str, list[str]], dict[str, list[str]], set[str], set[str], dict[str, Any]]] = []
        before_objects: set[str] = set()
        for step in steps:
            lists_before = self._lists(state)
            changeset = {"origin": step.origin, "timestamp": step.origin_timestamp, "instructions": step.instructions}
            if step.kind == "local":
                applied_cs = changeset
                applied.append((step, changeset))
            else:
                applied_cs = self._merge_download(step, changeset, applied)
            self._apply(state, applied_cs, step)
            lists_after = self._lists(state)
            objects_after = _objects(state)
            timeline.append((step, lists_before, lists_after, before_objects, objects_after, applied_cs))
            before_objects = objects_after
            version = step.server_version
            # The server's lists at each version this device knows: after a download, the device's
            # lists (it had integrated every version up to it, and its own changes up to client_version).
            if step.kind == "download" and version is not None:
                lists_at_version[version] = lists_after
            elif step.kind == "local" and step.server_version is not None:
                lists_at_version.setdefault(step.server_version, lists_after)
        for step in steps:
            if step.kind == "download":
                step.base = origin_base(step, lists_at_version, own_versions)
                step.base_version = step.base.version
        replay = Replay(log=self.log, client_file_ident=self.ident, steps=steps, root_id=self.root, state=state,
                        losses=[], appends={}, inconclusive=self.inconclusive, notes=self.notes, trace=self.trace,
                        events=self.events, ops=[], encoding=self._encoding(steps))
        replay.list_history = [(entry[0], list(entry[2].get(self.root or "", []))) for entry in timeline]
        self._record(replay, timeline)
        replay.losses = self._losses(replay, timeline)
        return replay

    def _merge_download(self, step: Step, changeset: dict[str, Any],
                        applied: list[tuple[Step, dict[str, Any]]]) -> dict[str, Any]:
        """A download as the device integrates it: rebased past the device's own changes the server
        had not yet acknowledged when it sent it (which are rebased past it in turn, in `applied`)."""
        unacked = [(i, s, cs) for i, (s, cs) in enumerate(applied) if s.client_version > step.client_version]
        if not unacked:
            return changeset

        def trace(n: int, record: dict[str, Any]) -> None:
            self._device_trace(step, unacked[n][1], record)

        try:
            merged, rebased = ot.transform_past(changeset, [cs for _i, _s, cs in unacked], trace=trace)
        except ValueError as exc:
            self._say(self.inconclusive, f"the merge could not rebase {step.label} past the device's own "
                                         f"changes ({exc})")
            return changeset
        for (i, s, _old), new in zip(unacked, rebased):
            applied[i] = (s, new)  # type: ignore[assignment]  # as transform_past returns it
        return merged

    def _root(self, steps: list[Step]) -> str | None:
        """The list the investigation is about: where the device appended most, else where anyone did."""
        mine: dict[str, int] = {}
        anyone: dict[str, int] = {}
        for step in steps:
            for ins in step.instructions:
                if ins["op"] == "ArrayInsert":
                    anyone[ins["object"]] = anyone.get(ins["object"], 0) + 1
                    if step.kind == "local":
                        mine[ins["object"]] = mine.get(ins["object"], 0) + 1
        counts = mine or anyone
        return max(counts, key=lambda pk: (counts[pk], -list(counts).index(pk))) if counts else None

    def _lists(self, state: dict[str, Any]) -> dict[str, list[str]]:
        table = state.get(TABLE, {})
        return {pk: [c for c in obj.get(LIST_FIELD, []) if c in table] for pk, obj in table.items()
                if obj.get(LIST_FIELD) and not pk.startswith(_PLACEHOLDER)}

    def _apply(self, state: dict[str, Any], changeset: dict[str, Any], step: Step) -> None:
        """ot.apply, after making room for what the device had before the log began."""
        self._fill_history(state, changeset, step)
        try:
            ot.apply(state, changeset)
            return
        except ValueError as exc:
            self._say(self.inconclusive, f"{step.label} (log line {step.line}) does not apply to the replayed state "
                                         f"({exc}): the log lacks history the device had")
        for ins in changeset["instructions"]:  # what can be applied, one instruction at a time
            try:
                ot.apply(state, {**changeset, "instructions": [ins]})
            except ValueError:
                continue

    def _fill_history(self, state: dict[str, Any], changeset: dict[str, Any], step: Step) -> None:
        """An object or list element the device had before the log starts: a placeholder, and the
        replay is inconclusive (what was there is not in the log)."""
        table = state[TABLE]
        created: set[str] = set()
        sizes: dict[str, int] = {}
        for ins in changeset["instructions"]:
            pk = ins["object"]
            if ins["op"] == "CreateObject":
                created.add(pk)
                continue
            if ins["op"] == "EraseObject":
                self.erased.add(pk)
                continue
            target = ins.get("value") if ins.get("field") == LIST_FIELD else None
            if isinstance(target, str) and target not in table and target not in created \
                    and target not in self.erased:  # a link to an object the log never created: it predates it
                table[target] = {"_id": target, "text": "", LIST_FIELD: []}
                self._say(self.inconclusive, f"{TABLE}[{target}] was created before the log starts (first linked "
                                             f"in {step.label}, log line {step.line})")
            if pk in created:
                continue
            if pk not in table:
                table[pk] = {"_id": pk, "text": "", LIST_FIELD: []}
                self._say(self.inconclusive, f"{TABLE}[{pk}] was created before the log starts (first seen in "
                                             f"{step.label}, log line {step.line}): its earlier changes are not "
                                             "in the log")
            if ins.get("field") == LIST_FIELD and "prior_size" in ins:
                have = sizes.get(pk, len(table[pk].get(LIST_FIELD, [])))
                if ins["prior_size"] > have and pk not in sizes:
                    missing = ins["prior_size"] - have
                    obj = ot.owned(table, pk)  # its own copy: a created object is shared between states
                    obj[LIST_FIELD] = [f"{_PLACEHOLDER}{pk}:{k}" for k in range(missing)] + obj[LIST_FIELD]
                    self._say(self.inconclusive, f"{TABLE}[{pk}].{LIST_FIELD} held {missing} element(s) before the "
                                                 f"log starts (log line {step.line}): they are not in the log")
                change = 1 if ins["op"] == "ArrayInsert" else -1 if ins["op"] == "ArrayErase" else 0
                sizes[pk] = ins["prior_size"] + change
            elif ins["op"] == "Clear":
                sizes[pk] = 0

    def _device_trace(self, step: Step, local: Step, record: dict[str, Any]) -> None:
        """The merge's evidence of the device's own rebase (the download is side a, its own change b)."""
        mine = record["side"] == "b"
        # the device's change by the server version it became, once acknowledged; "local" before that
        local_in: int | str = local.server_version if local.server_version is not None else "local"
        self.trace.append({"time": step.time, "kind": record["effect"], "at": "device", "peer": self.own_origin,
                           "version": step.server_version,
                           **{k: v for k, v in record.items() if k not in ("effect",)},
                           "instruction_in": local_in if mine else step.server_version,
                           "by_in": step.server_version if mine else local_in,
                           "local_client_version": local.client_version})

    def _encoding(self, steps: list[Step]) -> str:
        """"replace" when another peer wrote the root's list wholesale (Clear + ArrayInserts)."""
        for step in steps:
            if step.kind == "download" and self.root in _rewritten_lists(step.instructions):
                return "replace"
        return "unknown"

    # -- the recording: history, events, trace ----------------------------------------------
    def _record(self, replay: Replay, timeline: list[Any]) -> None:
        """The replay as a recording: the server's integrations (trace), what the device showed
        (events), and every append as an add op, invoked and acknowledged."""
        self._trace_integrations(replay)
        for step, before, after, objs_before, objs_after, _cs in timeline:
            self._device_events(step.time, before, after, objs_before, objs_after)
            self._note_appends(replay, step)
        replay.ops = _add_ops(replay.appends)

    def _trace_integrations(self, replay: Replay) -> None:
        index: dict[int, Step] = {}
        for step in replay.steps:
            if step.server_version is not None:
                index[step.server_version] = step
        for version in sorted(index):
            step = index[version]
            when = step.time if step.kind == "download" else (step.acked_at if step.acked_at is not None else step.time)
            self.trace.append({"time": when, "kind": "integrate", "version": version, "origin": step.origin,
                               "base_version": step.base_version, "timestamp": step.origin_timestamp,
                               "log_line": step.line, "instructions": step.instructions})

    def _device_events(self, t: float | None, before: dict[Any, list[str]], after: dict[Any, list[str]],
                       objs_before: set[str], objs_after: set[str]) -> None:
        """What one changeset changed on the device: documents, the root's list, the counts."""
        old, new = before.get(self.root, []), after.get(self.root, [])
        changes = [*(("doc_insert", pk) for pk in sorted(objs_after - objs_before)),
                   *(("enter", pk) for pk in new if pk not in old),
                   *(("leave", pk) for pk in old if pk not in new),
                   *(("doc_delete", pk) for pk in sorted(objs_before - objs_after))]
        for kind, pk in changes:
            self.events.append({"time": t, "observer": "device", "kind": kind, "node_id": pk})
        self.events.append({"time": t, "observer": "device", "kind": "counts", "root_children": len(new),
                            "nodes_total": len(objs_after)})

    def _note_appends(self, replay: Replay, step: Step) -> None:
        """Appends to the root's list first seen in `step`: the device's own, or (known when the
        device integrates it) another peer's."""
        for ins in step.instructions:
            if ins["op"] == "ArrayInsert" and ins["object"] == self.root and ins["value"] not in replay.appends:
                done = step.time if step.kind == "download" else step.acked_at
                replay.appends[ins["value"]] = {"by": "device" if step.kind == "local" else step.origin,
                                               "step": step, "invoked": step.time, "acknowledged": done}

    # -- what was lost, and why ---------------------------------------------------------------
    def _losses(self, replay: Replay, timeline: list[Any]) -> list[Loss]:
        root = self.root
        if root is None:
            return []
        final = set(_visible_children(replay.state, root))
        objects = _objects(replay.state)
        groups: dict[tuple[Any, ...], list[str]] = {}
        heads: dict[tuple[Any, ...], Loss] = {}
        for pk, append in replay.appends.items():
            if pk in final or append["acknowledged"] is None:
                continue
            loss = self._cause(replay, timeline, pk, pk in objects)
            key = (loss.outcome, loss.instruction, loss.rule, (loss.step or {}).get("line"), loss.explanation)
            groups.setdefault(key, []).append(pk)
            heads.setdefault(key, loss)
        out = []
        for key, objects_ in groups.items():
            loss = heads[key]
            if "{what}" in loss.explanation:  # the downloads that carried the discarded appends
                step_of = {pk: replay.appends[pk]["step"] for pk in objects_}
                versions = sorted({s.server_version for s in step_of.values()})
                origins = sorted({s.origin for s in step_of.values()})
                what = (f"server version{'s' if len(versions) > 1 else ''} {_span(versions)} from "
                        f"origin_file_ident {', '.join(map(str, origins))}")
                loss = dataclasses.replace(loss, explanation=loss.explanation.replace("{what}", what))
            out.append(dataclasses.replace(loss, objects=tuple(objects_)))
        return out

    def _cause(self, replay: Replay, timeline: list[Any], pk: str, exists: bool) -> Loss:
        """Why an acknowledged append is not in the root's list at the end: the changeset after
        which it left (and the server's merge rule, when a download carried it), or why it never
        entered."""
        root = self.root
        where = f"{TABLE}[{root}].{LIST_FIELD}"
        left = None
        for entry in timeline:
            before, after = entry[1], entry[2]
            if pk in before.get(root, []) and pk not in after.get(root, []):
                left = entry
        if left is None:  # never visible here: the device's own rebase discarded its insert
            return self._never_entered(replay, pk, where)
        step = left[0]
        removing = self._removing_instruction(left, pk)
        text = describe_instruction(removing, root) if removing else "an instruction"
        if not exists:
            who = "the device itself" if step.kind == "local" else "the client integrated " + step.label
            return Loss((pk,), where, "deleted", _short(step), text, None, None,
                        f"left {where} when {who} deleted it: {text}")
        if step.kind == "local":
            return Loss((pk,), where, "left", _short(step), text, None, None,
                        f"left {where} by the device's own change (client version {step.client_version}): {text}, "
                        "not a merge outcome")
        return self._left_on_download(replay, step, pk, where, text)

    def _never_entered(self, replay: Replay, pk: str, where: str) -> Loss:
        """An append the device never showed: its own rebase discarded it (the trace says by what)."""
        record = next((r for r in self.trace if r.get("at") == "device" and r["kind"] == "discarded"
                       and r["instruction"].get("op") == "ArrayInsert" and r["instruction"].get("value") == pk), None)
        if record is None:
            return Loss((pk,), where, "never-entered", None, None, None, None,
                        f"never entered {where} on this device (the log does not show why)")
        local = next(s for s in replay.steps if s.kind == "local"
                     and s.client_version == record["local_client_version"])
        by = describe_instruction(record["by"], self.root)
        return Loss((pk,), where, "never-entered", _short(local), by, record["rule"], "device",
                    f"never entered {where}: the client integrated {{what}} against its own change not yet "
                    f"uploaded (client version {local.client_version}, based on server version "
                    f"{local.base_version}): {by}, rule {record['rule']}")

    def _left_on_download(self, replay: Replay, step: Step, pk: str, where: str, text: str) -> Loss:
        """An append that left the list when the device integrated a download: the server's merge
        rule that discarded it, when the log lets the merge be rebuilt."""
        base = step.base
        based = f" (based on server version {base.version})" if base and base.version is not None else \
            f" (based on an unknown server version{f', at most {base.at_most}' if base and base.at_most else ''})"
        rule, at = self._server_rule(replay, step, pk)
        head = f"left {where} when the client integrated server version {step.server_version} from " \
               f"origin_file_ident {step.origin}{based}: {text}"
        if rule is not None:
            return Loss((pk,), where, "left", _short(step), text, rule, at, f"{head}, rule {rule}")
        if base is not None and base.version is not None:
            why = "its author had already seen the append, so no merge rule was involved"
        else:
            why = "whether its author had seen the append is not in this log, so the merge rule cannot be named"
        return Loss((pk,), where, "left", _short(step), text, None, None, f"{head} ({why})")

    def _removing_instruction(self, entry: Any, pk: str) -> dict[str, Any] | None:
        """The instruction of the integrated changeset after which `pk` was no longer in the root's list."""
        _step, before, _after, _ob, _oa, applied = entry
        root = self.root
        state = {TABLE: {p: {"_id": p, LIST_FIELD: list(children)} for p, children in before.items()}}
        for p in _ob:
            state[TABLE].setdefault(p, {"_id": p, LIST_FIELD: []})
        for ins in applied["instructions"]:
            try:
                ot.apply(state, {"origin": 0, "timestamp": 0, "instructions": [ins]}, validate=False)
            except (IndexError, KeyError, TypeError):
                continue
            if pk not in _visible_children(state, root):
                return ins
        return None

    def _server_rule(self, replay: Replay, step: Step, pk: str) -> tuple[str | None, str | None]:
        """Reconstruct the server's merge of a downloaded changeset with the kit's `ot`, traced:
        the changeset (as downloaded) rebased past the history entries after its base that came
        from other origins (the device's own uploads, as the server integrated them, and the other
        downloads); the rule that discarded `pk`'s ArrayInsert names the cause."""
        base, version = step.base, step.server_version
        if base is None or base.version is None or version is None:
            return None, None
        history = self._server_history(replay.steps)
        missing = [v for v in range(base.version + 1, version) if v not in history]
        if missing:
            self._say(self.notes, f"server versions {missing[0]}-{missing[-1]} are not in this log: the server's "
                                  f"merge of version {version} is reconstructed without them")
        entries = [(v, cs) for v, (origin, cs) in sorted(history.items())
                   if base.version < v < version and origin != step.origin]
        incoming = {"origin": step.origin, "timestamp": step.origin_timestamp, "instructions": step.instructions}
        found: list[dict[str, Any]] = []

        def tracer(n: int, record: dict[str, Any]) -> None:
            theirs = entries[n][0]
            line = {"time": step.time, "kind": record["effect"], "at": "server", "version": step.server_version,
                    **{k: v for k, v in record.items() if k != "effect"},
                    "instruction_in": step.server_version if record["side"] == "a" else theirs,
                    "by_in": theirs if record["side"] == "a" else step.server_version, "reconstructed": True}
            found.append(line)
        try:
            ot.transform_past(incoming, [cs for _v, cs in entries], want_others=False, trace=tracer)
        except ValueError as exc:
            self._say(self.notes, f"the server's merge of version {step.server_version} could not be reconstructed "
                                  f"({exc})")
            return None, None
        for line in found:
            if line not in self.trace:
                self.trace.append(line)
        hit = next((r for r in found if r["kind"] == "discarded" and r["side"] == "b"
                    and r["instruction"].get("op") == "ArrayInsert" and r["instruction"].get("value") == pk), None)
        return (hit["rule"], "server") if hit else (None, None)

    def _server_history(self, steps: list[Step]) -> dict[int, tuple[int, dict[str, Any]]]:
        """version -> (origin, changeset as the server integrated it) for every version the log shows:
        downloads as received, the device's own changes rebased past what the server had before them."""
        if hasattr(self, "_history"):
            return self._history
        history: dict[int, tuple[int, dict[str, Any]]] = {}
        versioned = sorted(((s.server_version, s) for s in steps if s.server_version is not None), key=lambda p: p[0])
        for version, step in versioned:
            cs = {"origin": step.origin, "timestamp": step.origin_timestamp, "instructions": step.instructions}
            if step.kind == "local" and step.base_version is not None:
                concurrent = [h for v, (o, h) in sorted(history.items())
                              if step.base_version < v < version and o != step.origin]
                if concurrent:
                    with contextlib.suppress(ValueError):  # kept as received when it cannot be rebased
                        cs = ot.rebase(cs, concurrent, validate=False)
            history[version] = (step.origin, cs)
        self._history = history
        return history


def _span(versions: list[int]) -> str:
    """3, 4, 5 -> "3-5"; 3, 6 -> "3, 6"."""
    if len(versions) > 2 and versions == list(range(versions[0], versions[-1] + 1)):
        return f"{versions[0]}-{versions[-1]}"
    return ", ".join(map(str, versions))


def _short(step: Step) -> dict[str, Any]:
    return {"kind": step.kind, "line": step.line, "server_version": step.server_version,
            "client_version": step.client_version, "origin_file_ident": step.origin,
            "base_version": step.base_version, "base_derivation": step.base.why if step.base else None,
            "time": round(step.time, 6)}


def replay_log(log: SyncLog) -> Replay:
    """Replay an already parsed log (`log.check()` must pass: see `replay`)."""
    log.check()
    return _Replayer(log).run()


def replay(path: str | os.PathLike[str]) -> Replay:
    """Parse and replay a client's trace log. Raises LogError (a ValueError, one line) for a log that
    cannot be replayed faithfully, OSError when the file cannot be read."""
    return replay_log(parse_log(path))


def log_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of the log, for the run's meta (which log was replayed, without copying it)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _add_ops(appends: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every append as an add op, invoked (and acknowledged when it was), in time order; another
    peer's appends under its origin's process number."""
    ops: list[dict[str, Any]] = []
    for pk, append in appends.items():
        process = 0 if append["by"] == "device" else int(append["by"])
        acked = append["acknowledged"]
        ops.append({"time": min(append["invoked"], acked if acked is not None else append["invoked"]),
                    "process": process, "type": "invoke", "f": "add", "value": pk})
        if acked is not None:
            ops.append({"time": acked, "process": process, "type": "ok", "f": "add", "value": pk})
    ops.sort(key=lambda op: op["time"])
    return ops
