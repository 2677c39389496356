"""The app on a device: a local Realm of `Node` objects that syncs through the server.

Local writes apply at once and queue as changesets (one in flight at a time, the rest
rebased on each download, as in a client/server OT protocol). Downloads from other
peers are transformed against the unacknowledged local changesets with the same merge
rules as the server, applied, and reported to listeners: the original tool's
collection and root-object listeners.
"""

from __future__ import annotations

import random
import uuid
from typing import Any, Callable

import simpy

from repro_kit._session import Notification
from repro_kit.emulator import ot
from repro_kit.emulator._scheduling import call_later
from repro_kit.emulator.server import SERVER_PEER, SyncServer

__all__ = ["Device"]

AckListener = Callable[[str, float], None]

#: How the app links a note to its parent: the report's `children` list on the parent,
#: or (a mitigation) a scalar `parent` field on each child.
TREES = ("children", "parent")


class Device:
    def __init__(
        self,
        env: simpy.Environment,
        server: SyncServer,
        peer: int,
        owner_id: str,
        rng: random.Random,
        upload_latency_s: float = 0.05,
        clock_skew_ms: int = 0,
        tree: str = "children",
    ) -> None:
        if tree not in TREES:
            raise ValueError(f"tree: must be one of {', '.join(TREES)}, got {tree!r}")
        self.tree = tree
        self.env = env
        self.server = server
        self.peer = peer
        self.owner_id = owner_id
        self.rng = rng
        self.upload_latency_s = upload_latency_s
        self.clock_skew_ms = clock_skew_ms
        self.state: dict[str, Any] = {"Node": {}}
        self.server_version = 0
        self.inflight: dict[str, Any] | None = None
        self.pending: list[dict[str, Any]] = []
        self.listeners: list[Callable[[Notification], None]] = []
        self.ack_listeners: list[AckListener] = []
        self.trace_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.leave_listeners: list[Callable[[list[str], int | None, float], None]] = []
        self.acked: set[str] = set()
        self._created_by: dict[int, list[str]] = {}
        self._last_ts = 0
        self._root_cache: tuple[dict[str, Any], str | None] | None = None  # (table, root pk)
        server.connect(peer, owner_id, self._on_download)

    # -- clock and ids -----------------------------------------------------------------
    def clock_ms(self) -> int:
        """Device time in ms, strictly increasing so every local changeset has its own stamp."""
        ts = max(int(self.env.now * 1000) + self.clock_skew_ms, self._last_ts + 1)
        self._last_ts = ts
        return ts

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # -- reads -------------------------------------------------------------------------
    @property
    def table(self) -> dict[str, dict[str, Any]]:
        return self.state["Node"]

    def root_id(self) -> str | None:
        """The first object (in table order) that is this owner's root."""
        table = self.table
        cache = self._root_cache
        if cache is not None and cache[0] is table:
            return cache[1]
        found = None
        for pk, obj in table.items():
            if obj.get("isRoot") and obj.get("owner_id") == self.owner_id:
                found = pk
                break
        self._root_cache = (table, found)
        return found

    def _apply(self, changeset: dict[str, Any], validated: bool = False,
               effects: tuple[bool, tuple[str, ...]] | None = None) -> None:
        """ot.apply, keeping the root cache exact: it is dropped whenever the changeset could
        change which object is the first root (an erase reorders or removes; an Update of
        isRoot/owner_id may make or unmake a root). Why: add_to_root looked the root up by
        scanning every node, which made thousands of nodes quadratic.

        `validated`: a download, made of instructions the server already validated and
        applied (then rebased here by the merge rules): its format is not checked again
        on every device. `effects`: root effects known to cover the changeset's (those of the
        download it was rebased from), so a changeset applied once is not indexed for them.
        """
        if effects is not None:
            ot.apply_once(self.state, changeset)
            erases, root_pks = effects
        elif validated:
            erases, root_pks = ot.apply_trusted(self.state, changeset)  # one lookup for both
        else:
            ot.apply(self.state, changeset)
            erases, root_pks = ot.root_effects(changeset)  # computed once per changeset, for every device
        cache = self._root_cache
        if cache is None:
            return
        if erases:
            self._root_cache = None
            return
        table = self.table
        for pk in root_pks:
            obj = table.get(pk)
            if pk == cache[1] or (obj is not None and obj.get("isRoot") and obj.get("owner_id") == self.owner_id):
                self._root_cache = None
                return

    @property
    def idle(self) -> bool:
        """Every local change acknowledged by the server: nothing in flight or pending."""
        return self.inflight is None and not self.pending

    def visible_children(self, pk: str | None) -> list[str]:
        if pk is None or pk not in self.table:
            return []
        table = self.table
        if self.tree == "parent":
            return [c for c, obj in table.items() if obj.get("parent") == pk]
        return [c for c in table[pk].get("children", ()) if c in table]

    def owned_ids(self) -> list[str]:
        return [pk for pk, obj in self.table.items() if obj.get("owner_id") == self.owner_id]

    # -- writes ------------------------------------------------------------------------
    def write(self, instructions: list[dict[str, Any]]) -> dict[str, Any]:
        """One local write transaction: apply, notify, queue for upload."""
        changeset = {"origin": self.peer, "timestamp": self.clock_ms(), "instructions": instructions}
        before = self._observe() if self.listeners else None
        self._apply(changeset)
        created = [i["object"] for i in instructions if i["op"] == "CreateObject"]
        if created:
            self._created_by[id(changeset)] = created
        self.pending.append(changeset)
        if before is not None:
            self._notify(before, batch=None)
        self._send_next()
        return changeset

    def create_root(self, text: str = "root") -> str:
        pk = self.new_id()
        self.write(_create_node(pk, text, self.owner_id, is_root=True))
        return pk

    def add_to_root(self, text: str) -> str:
        root = self.root_id()
        if root is None:
            raise RuntimeError("the user has no root node yet")
        pk = self.new_id()
        ins = _create_node(pk, text, self.owner_id, is_root=False)
        if self.tree == "parent":
            ins.append({"op": "Update", "table": "Node", "object": pk, "field": "parent", "value": root,
                        "is_default": False})
            self.write(ins)
            return pk
        size = len(self.table[root]["children"])
        ins.append({"op": "ArrayInsert", "table": "Node", "object": root, "field": "children",
                    "index": size, "value": pk, "prior_size": size})
        self.write(ins)
        return pk

    def erase_owned(self) -> int:
        """Delete every node of this owner (the original tool's Reset)."""
        ids = self.owned_ids()
        if ids:
            self.write([{"op": "EraseObject", "table": "Node", "object": pk} for pk in ids])
        return len(ids)

    # -- sync --------------------------------------------------------------------------
    def _send_next(self) -> None:
        if self.inflight is not None or not self.pending:
            return
        self.inflight = self.pending.pop(0)
        changeset, base = self.inflight, self.server_version
        delay = self.server.latency(self.upload_latency_s)
        call_later(self.env, delay, self._upload, changeset, base)

    def _upload(self, changeset: dict[str, Any], base: int) -> None:
        # validated when written (ot.apply with validation), so the server need not check it again
        self.server.integrate(self.peer, changeset, base, trusted=True)

    def _on_download(self, version: int, origin: int, changeset: dict[str, Any],
                     note: dict[str, Any] | None = None) -> None:
        self.server_version = version
        if origin == self.peer:
            acked = self.inflight
            self.inflight = None
            created = self._created_by.pop(id(acked), []) if acked is not None else []
            for pk in created:
                self.acked.add(pk)
                for listener in list(self.ack_listeners):
                    listener(pk, self.env.now)
            self._send_next()
            return
        incoming = changeset
        if self.inflight is not None or self.pending:
            unacked = [self.inflight, *self.pending] if self.inflight is not None else self.pending
            trace = self._tracer(version) if self.trace_listeners else None
            incoming, rebased = ot.transform_past(
                changeset, unacked, trace=None if trace is None else (lambda _n, record: trace(record)))
            for old, new in zip(unacked, rebased):
                self._rebase(old, new)  # type: ignore[arg-type]
            if self.inflight is not None:
                self.inflight, *self.pending = rebased  # type: ignore[assignment]
            else:
                self.pending = rebased  # type: ignore[assignment]
        # A re-import batch is reported even when the merge left nothing of it here: the
        # kit counts the batches that reached the device (an unfinished re-import is inconclusive).
        batch = note.get("reimport_docs") if note and origin == SERVER_PEER else None
        if not incoming["instructions"] and batch is None:
            return
        before = self._observe() if self.listeners else None
        light = self._children_before(changeset) if self.leave_listeners else None
        if incoming is changeset:
            self._apply(changeset, validated=True)
        else:  # rebased here, so applied once: the shared download's effects bound its own
            self._apply(incoming, validated=True, effects=ot.root_effects(changeset))
        if before is not None:
            self._notify(before, batch=batch)
        if self.leave_listeners and (light is not None or batch):
            self._tell_leaves(light, batch)

    def _children_before(self, changeset: dict[str, Any]) -> list[str] | None:
        """The root's visible children, when `changeset` (a download, before this device's
        rebase, which only drops or moves its instructions) could make one leave (it touches
        the root or erases an object); None when it cannot, so a large run skips the look."""
        root = self.root_id()
        erases, _pks = ot.root_effects(changeset)
        if root is None or not (erases or ("Node", root) in ot._compiled_entry(changeset)[3]):
            return None
        return self.visible_children(root)

    def _tell_leaves(self, before: list[str] | None, batch: int | None) -> None:
        """`leave_listeners(left, batch, time)`: the cheap observation a fleet run records."""
        left: list[str] = []
        if before is not None:
            now = set(self.visible_children(self.root_id()))
            left = [c for c in before if c not in now]
        if left or batch:
            for listener in list(self.leave_listeners):
                listener(left, batch, self.env.now)

    def _tracer(self, version: int) -> Callable[[dict[str, Any]], None]:
        """The merge's evidence of this device's rebase: the download is side a, local changes side b."""
        def trace(record: dict[str, Any]) -> None:
            local = record["side"] == "b"
            out = {"time": self.env.now, "kind": record["effect"], "at": "device", "peer": self.peer,
                   "version": version, **{k: v for k, v in record.items() if k != "effect"},
                   "instruction_in": "local" if local else version, "by_in": version if local else "local"}
            for listener in list(self.trace_listeners):
                listener(out)
        return trace

    def _rebase(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        created = self._created_by.pop(id(old), None)
        if created is not None:
            self._created_by[id(new)] = created

    # -- listeners ---------------------------------------------------------------------
    def _observe(self) -> tuple[list[str], set[str]]:
        return self.visible_children(self.root_id()), set(self.owned_ids())

    def _notify(self, before: tuple[list[str], set[str]], batch: int | None) -> None:
        old_children, old_docs = before
        new_children, new_docs = self._observe()
        old_set, new_set = set(old_children), set(new_children)
        note = Notification(
            time=self.env.now,
            observer="device",
            root_children=len(new_children),
            nodes_total=len(new_docs),
            entered=tuple(c for c in new_children if c not in old_set),
            left=tuple(c for c in old_children if c not in new_set),
            inserted=tuple(sorted(new_docs - old_docs)),
            deleted=tuple(sorted(old_docs - new_docs)),
            batch=batch,
        )
        for listener in list(self.listeners):
            listener(note)


def _create_node(pk: str, text: str, owner_id: str, is_root: bool) -> list[dict[str, Any]]:
    base = {"table": "Node", "object": pk}
    return [
        {"op": "CreateObject", **base},
        {"op": "Update", **base, "field": "text", "value": text, "is_default": False},
        {"op": "Update", **base, "field": "isRoot", "value": is_root, "is_default": False},
        {"op": "Update", **base, "field": "owner_id", "value": owner_id, "is_default": False},
    ]
