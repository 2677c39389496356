"""The translator between the sync history and the Atlas collection.

Sync -> Atlas: integrated changesets are applied to a mirror of the server state and the
touched documents written to Atlas after `lag_s`. Atlas -> sync: a document changed in
Atlas becomes a server-origin changeset. How a whole document is encoded is the model
parameter the bug hinges on:

- "replace": the list is written wholesale, `Clear` + one `ArrayInsert` per element
  (what realm-core's object store emits when a list is assigned, `List::assign` under
  `CreatePolicy::UpdateAll`); clearing a list that is already empty emits nothing
  (`Lst::clear` replicates only a non-empty list), so an empty base list gets inserts only;
- "diff": per-element `ArrayInsert`/`ArrayErase` against the base version.

A production-mode deploy calls `resync`: halt both directions, snapshot Atlas, and after
`delay_s` re-insert the snapshot's documents in batches, each based on the server
version at the snapshot; then lift the halt and flush what queued. Which documents are
re-inserted is the sourced assumption `reimport` (params.REIMPORTS): "all" of them (the
App Services docs until 2023-03-02) or only those that hold a value for the new field
("new-values", the docs since then).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import simpy

from repro_kit.emulator import ot
from repro_kit.emulator import server as _server
from repro_kit.emulator.atlas import AtlasCollection, clone
from repro_kit.emulator.params import REIMPORTS
from repro_kit.emulator.server import SERVER_PEER, SyncServer

__all__ = ["Translator"]

SOURCE = "translator"
_SCALARS_SKIP = ("_id", "children")
_PLAIN = frozenset({str, int, float, bool, type(None)})  # what `clone` returns as it is, without calling it


class Translator:
    # mypyc: fields `EmulatedWorld.close` deletes (a compiled class has no __dict__ to clear)
    __deletable__ = ("env", "server", "atlas", "encoding", "lag_s", "mirror", "applied_version", "_mirrored",
                     "_touched", "_halt_base", "halted", "_flush_scheduled", "_held_atlas_changes", "_last_ts",
                     "nemesis_listeners", "halt", "_reimport_due", "_reimport", "_generation", "resumes")

    def __init__(
        self,
        env: simpy.Environment,
        server: SyncServer,
        atlas: AtlasCollection,
        encoding: str = "replace",
        lag_s: float = 0.1,
    ) -> None:
        if encoding not in ("replace", "diff"):
            raise ValueError(f"encoding: must be 'replace' or 'diff', got {encoding!r}")
        self.env, self.server, self.atlas, self.encoding, self.lag_s = env, server, atlas, encoding, lag_s
        self.mirror: dict[str, Any] = {"Node": {}}
        self.applied_version = 0  # what Atlas reflects
        self._mirrored = 0  # what the mirror reflects: ahead of Atlas while halted (`_flush`)
        self._touched: dict[str, None] = {}  # the objects of the changesets mirrored, not yet written to Atlas
        self._halt_base: dict[str, Any] | None = None  # what a re-import encodes against, while halted
        self.halted = False
        self._flush_scheduled = False
        self._held_atlas_changes: list[dict[str, Any]] = []
        self._last_ts = 0
        #: Told of the control plane's happenings as they happen: `listener(f, value)`, f "halt" | "resume".
        self.nemesis_listeners: list[Callable[[str, dict[str, Any]], None]] = []
        #: (halted since, the halt's value) while a production deploy's halt is under way, else None.
        self.halt: tuple[float, dict[str, Any]] | None = None
        self._reimport_due: float | None = None
        self._reimport: simpy.Process | None = None
        self._generation = 0  # of the latest deploy's re-import: only it lifts the halt
        self.resumes = 0  # re-import batches integrated by the deploys whose halt has lifted
        server.on_integrated(self._on_integrated)
        atlas.watch(self._on_atlas_change, ignore_source=SOURCE)

    def pending(self) -> tuple[float, float | None] | None:
        """(halted since, re-import due at) while a deploy's halt is under way (the due time is
        None once the batches are going), else None."""
        if self.halt is None:
            return None
        return self.halt[0], self._reimport_due

    def _tell(self, f: str, value: dict[str, Any]) -> None:
        for listener in list(self.nemesis_listeners):
            listener(f, value)

    @property
    def caught_up(self) -> bool:
        """Not halted, and Atlas reflects every changeset the server has integrated."""
        return not self.halted and self.applied_version >= self.server.version

    # -- sync -> Atlas -----------------------------------------------------------------
    def _on_integrated(self, version: int, origin: int, changeset: dict[str, Any]) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.server.delivery.call_later(self.lag_s, self._flush)

    def _flush(self) -> None:
        """Apply what the server integrated since to the mirror, and write the documents it touched
        to Atlas, unless halted: then the mirror alone follows (while the changesets' compiled forms
        are still kept), and Atlas gets every document touched when the halt lifts, as if they had
        all been applied then (a re-import encodes against the mirror as the halt found it)."""
        self._flush_scheduled = False
        touched = self._touched
        for _origin, entry in self.server.history[self._mirrored :]:
            instructions = entry["instructions"]
            if type(instructions) is _server.Packed:  # an old entry (a bootstrap's): read once,
                instructions = list(instructions)  # applied as a plain dict (compiled for this once, not kept)
                entry = {**entry, "instructions": instructions}
            ot.apply(self.mirror, entry, validate=False)
            for ins in instructions:
                touched[ins["object"]] = None
        self._mirrored = self.server.version
        if self.halted:
            return
        self._touched = {}
        self.applied_version = self.server.version
        table = self.mirror["Node"]
        for pk in touched:
            obj = table.get(pk)
            if obj is None:
                self.atlas.delete_one({"_id": pk}, source=SOURCE)  # primary-key lookups: no scan
            else:
                self.atlas.put(self._document(obj), source=SOURCE)  # (the object's _id is its pk: a primary-key write)

    def _document(self, obj: dict[str, Any]) -> dict[str, Any]:
        table = self.mirror["Node"]
        doc = {k: v if v.__class__ in _PLAIN else clone(v) for k, v in obj.items() if k != "children"}
        doc["children"] = [c for c in obj.get("children", ()) if c in table]
        return doc

    # -- Atlas -> sync -----------------------------------------------------------------
    def _on_atlas_change(self, change: dict[str, Any]) -> None:
        if self.halted:
            self._held_atlas_changes.append(change)
            return
        self.server.delivery.call_later(self.lag_s, self._import_change, change)

    def _import_change(self, change: dict[str, Any]) -> None:
        if self.halted:
            self._held_atlas_changes.append(change)
            return
        self._flush()  # base the import on what Atlas reflects now
        pk = change["documentKey"]["_id"]
        if change["operationType"] == "delete":
            instructions = [{"op": "EraseObject", "table": "Node", "object": pk}]
        else:
            instructions = self.encode(change["fullDocument"], self.mirror)
        if instructions:
            self.server.integrate(SERVER_PEER, self._changeset(instructions), self.applied_version, trusted=True)

    def _changeset(self, instructions: list[dict[str, Any]]) -> dict[str, Any]:
        ts = max(int(self.env.now * 1000), self._last_ts + 1)
        self._last_ts = ts
        return ot.Changeset(origin=SERVER_PEER, timestamp=ts, instructions=instructions)

    def encode(self, doc: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
        """Instructions that make `base`'s object equal `doc`, per `self.encoding`.

        What comes from Atlas is checked here (a string `_id`, string field names, a list of
        string links in `children`), so the server can take the changeset as built."""
        pk = doc["_id"]
        children = doc.get("children", [])
        if not isinstance(pk, str) or not isinstance(children, list) or not all(isinstance(c, str) for c in children) \
                or not all(isinstance(k, str) for k in doc):
            raise ValueError(f"Atlas document {pk!r}: needs a string _id, string field names and a children "
                             "list of string ids to be synced")
        current = base["Node"].get(pk)
        head = {"table": "Node", "object": pk}
        out: list[dict[str, Any]] = [{"op": "CreateObject", **head}]
        for field, value in doc.items():
            if field in _SCALARS_SKIP:
                continue
            out.append({"op": "Update", **head, "field": field,
                        "value": value if value.__class__ in _PLAIN else clone(value), "is_default": False})
        new = list(doc.get("children", []))
        old = list(current.get("children", [])) if current is not None else []
        if self.encoding == "replace":
            if old:  # realm-core's Lst::clear replicates only a non-empty list: List::assign on [] is inserts only
                out.append({"op": "Clear", **head, "field": "children"})
            out.extend(
                {"op": "ArrayInsert", **head, "field": "children", "index": i, "value": v, "prior_size": i}
                for i, v in enumerate(new)
            )
        else:
            out.extend(_list_diff(head, old, new))
        return out

    # -- production-mode resync -------------------------------------------------------
    def resync(self, delay_s: float, batch_size: int, batch_interval_s: float, *,
               reimport: str = "all", field: str | None = None) -> simpy.Process:
        """Halt, snapshot Atlas, re-insert the snapshot in batches after `delay_s`, resume.

        `reimport="new-values"` keeps only the documents holding a value for `field`; the
        halt lasts `delay_s` either way (what the server does before re-inserting is unknown).
        """
        if reimport not in REIMPORTS:
            raise ValueError(f"reimport: must be one of {', '.join(REIMPORTS)}, got {reimport!r}")
        if reimport == "new-values" and not field:
            raise ValueError("field: reimport='new-values' needs the deployed field's name")
        superseded = None
        if self._reimport is not None and self._reimport.is_alive and self._reimport_due is not None:
            # A deploy while an earlier one's re-import is still waiting: the new deploy gets its own
            # full halt and re-import (the earlier one's timer must not end this halt early).
            superseded = self.halt[0] if self.halt is not None else None
            self._reimport.interrupt("superseded by a later deploy")
        self.halted = True  # at once: nothing the deploy races with reaches Atlas
        snapshot = self.atlas.snapshot()
        if reimport == "new-values":
            snapshot = [doc for doc in snapshot if doc.get(field or "") is not None]
        base_version = self.applied_version
        # What `encode` reads of the mirror at the snapshot: each object's list, where it has one (an
        # absent object and an empty list encode alike); not a copy of every object through the halt.
        # A deploy during a halt finds the mirror as the halt began (`_flush`): its base is the same.
        if self._halt_base is None:
            self._halt_base = {"Node": {pk: {"children": list(obj["children"])}
                                        for pk, obj in self.mirror["Node"].items() if obj.get("children")}}
        base_state = self._halt_base
        value: dict[str, Any] = {"snapshot_docs": len(snapshot), "snapshot_version": base_version, "reimport": reimport,
                                 "reimport_due_in_s": delay_s}
        if superseded is not None:
            value["supersedes_halt_at"] = superseded
        self.halt = (self.env.now, value)
        self._reimport_due = self.env.now + delay_s
        self._tell("halt", value)
        self._generation += 1
        self._reimport = self.env.process(self._reimport_run(snapshot, base_version, base_state, delay_s, batch_size,
                                                             batch_interval_s, self._generation))
        return self._reimport

    def _reimport_run(self, snapshot: list[Any], base_version: int, base_state: dict[str, Any],
                      delay_s: float, batch_size: int, batch_interval_s: float,
                      generation: int):
        try:
            yield self.env.timeout(delay_s)
        except simpy.Interrupt:
            return  # superseded by a later deploy, which re-imports in its own time
        self._reimport_due = None
        batches = -(-len(snapshot) // batch_size)
        for number, start in enumerate(range(0, len(snapshot), batch_size), 1):
            if start:
                yield self.env.timeout(batch_interval_s)
            docs = snapshot[start : start + batch_size]
            snapshot[start : start + batch_size] = [None] * len(docs)  # encoded now: not kept through the halt
            instructions: list[dict[str, Any]] = []
            for doc in docs:
                instructions.extend(self.encode(doc, base_state))
            note = {"reimport_batch": number, "reimport_batches": batches, "reimport_docs": len(docs)}
            self.server.integrate(SERVER_PEER, self._changeset(instructions), base_version, note, trusted=True)
        if generation != self._generation:
            return  # a later deploy came while these batches went: its halt goes on until its own re-import
        self.halted = False
        self.halt = None
        self._halt_base = None
        self.resumes += batches
        self._tell("resume", {"batches": batches})
        self._flush()
        queued, self._held_atlas_changes = self._held_atlas_changes, []
        for change in queued:
            self._import_change(change)


def _list_diff(head: dict[str, Any], old: list[Any], new: list[Any]) -> list[dict[str, Any]]:
    """Per-element erases and inserts turning `old` into `new`, indices valid in sequence."""
    out: list[dict[str, Any]] = []
    size = len(old)
    offset = 0
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        at = i1 + offset
        for _ in range(i2 - i1):  # erase the old run
            out.append({"op": "ArrayErase", **head, "field": "children", "index": at, "prior_size": size})
            size -= 1
        for k, value in enumerate(new[j1:j2]):
            out.append({"op": "ArrayInsert", **head, "field": "children", "index": at + k, "value": value,
                        "prior_size": size})
            size += 1
        offset += (j2 - j1) - (i2 - i1)
    return out

