"""The app on a device: a local Realm of `Node` objects that syncs through the server.

Local writes apply at once and queue as changesets (one in flight at a time, the rest
rebased on each download, as in a client/server OT protocol). Downloads from other
peers are transformed against the unacknowledged local changesets with the same merge
rules as the server, applied, and reported to listeners: the original tool's
collection and root-object listeners. On a `ModelEnvironment`, a device nothing listens to
keeps them in an inbox and applies them in order when it is next read or acts (`_drain`):
the same outcome, without an event each (a hundred devices of one owner get a million).
"""

from __future__ import annotations

import collections
import random
import uuid
from typing import Any, Callable

import simpy

from repro_kit._history import Notification, notification
from repro_kit.emulator import ot
from repro_kit.emulator._scheduling import ModelEnvironment, call_later, fired_before, has_heap, push_at
from repro_kit.emulator.server import SERVER_PEER, SyncServer

__all__ = ["Device", "create_node", "TREES"]

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
        self._state: dict[str, Any] = {"Node": {}}
        self._server_version = 0
        self._inflight: dict[str, Any] | None = None
        self._pending: list[dict[str, Any]] = []
        # Other peers' downloads, handed over by the server at once with the heap key each is
        # due at, and applied in that order when the device is next read or acts (`_drain`):
        # exactly as one event per download would have, since nothing else changes a device
        # between downloads but its own writes and acknowledgements, which drain first. Only
        # on a ModelEnvironment (it knows which event fired last), and off (every download its
        # own event) once a listener is added.
        self._inbox: collections.deque[tuple[Any, ...]] = collections.deque()
        self._draining = False
        self._can_defer = isinstance(env, ModelEnvironment) and has_heap(env)
        # Adding a listener that sees downloads first turns deferred downloads back into events.
        self.listeners: list[Callable[[Notification], None]] = _Watchers(self._undefer)
        self.ack_listeners: list[AckListener] = []
        self.trace_listeners: list[Callable[[dict[str, Any]], None]] = _Watchers(self._undefer)
        self.leave_listeners: list[Callable[[list[str], int | None, float], None]] = _Watchers(self._undefer)
        self.acked: set[str] = set()
        self._created_by: dict[int, list[str]] = {}
        self._last_ts = 0
        self._root_cache: tuple[dict[str, Any], str | None] | None = None  # (table, root pk)
        self._link = server.connect(peer, owner_id, self._on_download, *((self._inbox, self._drain) if self._can_defer else ()))

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
    def state(self) -> dict[str, Any]:
        """The local Realm: {table: {pk: object}}, dangling links included."""
        self._drain()
        return self._state

    @property
    def server_version(self) -> int:
        """The last server version this device has integrated."""
        self._drain()
        return self._server_version

    @property
    def inflight(self) -> dict[str, Any] | None:
        """The local changeset uploaded and not yet acknowledged (rebased past what arrived since)."""
        self._drain()
        return self._inflight

    @property
    def pending(self) -> list[dict[str, Any]]:
        """Local changesets waiting behind `inflight`."""
        self._drain()
        return self._pending

    @property
    def table(self) -> dict[str, dict[str, Any]]:
        self._drain()
        return self._state["Node"]

    def root_id(self) -> str | None:
        """The first object (in table order) that is this owner's root."""
        self._drain()
        table = self._state["Node"]
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
            ot.apply_once(self._state, changeset)
            erases, root_pks = effects
        elif validated:
            erases, root_pks = ot.apply_trusted(self._state, changeset)  # one lookup for both
        else:
            ot.apply(self._state, changeset)
            erases, root_pks = ot.root_effects(changeset)  # computed once per changeset, for every device
        cache = self._root_cache
        if cache is None:
            return
        if erases:
            self._root_cache = None
            return
        table = self._state["Node"]
        for pk in root_pks:
            obj = table.get(pk)
            if pk == cache[1] or (obj is not None and obj.get("isRoot") and obj.get("owner_id") == self.owner_id):
                self._root_cache = None
                return

    @property
    def idle(self) -> bool:
        """Every local change acknowledged by the server: nothing in flight or pending.
        (What is still in the inbox cannot change that: acknowledgements are never deferred.)"""
        return self._inflight is None and not self._pending

    def visible_children(self, pk: str | None) -> list[str]:
        self._drain()
        table = self._state["Node"]
        if pk is None or pk not in table:
            return []
        if self.tree == "parent":
            return [c for c, obj in table.items() if obj.get("parent") == pk]
        return [c for c in table[pk].get("children", ()) if c in table]

    def owned_ids(self) -> list[str]:
        self._drain()
        return [pk for pk, obj in self._state["Node"].items() if obj.get("owner_id") == self.owner_id]

    # -- writes ------------------------------------------------------------------------
    def write(self, instructions: list[dict[str, Any]]) -> dict[str, Any]:
        """One local write transaction: apply, notify, queue for upload."""
        self._drain()
        changeset = {"origin": self.peer, "timestamp": self.clock_ms(), "instructions": instructions}
        before = self._observe() if self.listeners else None
        self._apply(changeset)
        created = [i["object"] for i in instructions if i["op"] == "CreateObject"]
        if created:
            self._created_by[id(changeset)] = created
        self._pending.append(changeset)
        if before is not None:
            self._notify(before, batch=None)
        self._send_next()
        return changeset

    def create_root(self, text: str = "root") -> str:
        pk = self.new_id()
        self.write(create_node(pk, text, self.owner_id, is_root=True))
        return pk

    def add_to_root(self, text: str) -> str:
        root = self.root_id()
        if root is None:
            raise RuntimeError("the user has no root node yet")
        pk = self.new_id()
        ins = create_node(pk, text, self.owner_id, is_root=False)
        if self.tree == "parent":
            ins.append({"op": "Update", "table": "Node", "object": pk, "field": "parent", "value": root,
                        "is_default": False})
            self.write(ins)
            return pk
        size = len(self._state["Node"][root]["children"])
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
        if self._inflight is not None or not self._pending:
            return
        self._inflight = self._pending.pop(0)
        changeset, base = self._inflight, self._server_version
        delay = self.server.latency(self.upload_latency_s)
        call_later(self.env, delay, self._upload, changeset, base)

    def _upload(self, changeset: dict[str, Any], base: int) -> None:
        # validated when written (ot.apply with validation), so the server need not check it again
        self.server.integrate(self.peer, changeset, base, trusted=True)

    def _undefer(self) -> None:
        """Before a listener is added: from now on every download is its own event (a listener
        sees each when it happens). What is due is applied; the rest of the inbox is scheduled,
        each at the position it was due at."""
        self._link.inbox = None
        self._drain()
        inbox = self._inbox
        while inbox:
            t, priority, eid, *args = inbox.popleft()
            push_at(self.env, (t, priority, eid), self._on_download, tuple(args))

    def _drain(self) -> None:
        """Apply the inbox's downloads that are due before the event now firing (or the end of
        the last run): those a run with one event per download would have applied by now."""
        inbox = self._inbox
        if not inbox or self._draining:
            return
        bound = fired_before(self.env)
        if not inbox[0] < bound:
            return
        self._draining = True
        try:
            while inbox and inbox[0] < bound:
                _t, _priority, _eid, version, origin, changeset, note = inbox.popleft()
                self._receive(version, origin, changeset, note)
        finally:
            self._draining = False

    def _on_download(self, version: int, origin: int, changeset: dict[str, Any],
                     note: dict[str, Any] | None = None) -> None:
        self._drain()  # what arrived before it, first
        self._receive(version, origin, changeset, note)

    def _receive(self, version: int, origin: int, changeset: dict[str, Any], note: dict[str, Any] | None) -> None:
        self._server_version = version
        if origin == self.peer:
            acked = self._inflight
            self._inflight = None
            created = self._created_by.pop(id(acked), []) if acked is not None else []
            for pk in created:
                self.acked.add(pk)
                for listener in list(self.ack_listeners):
                    listener(pk, self.env.now)
            self._send_next()
            return
        incoming = changeset
        if self._inflight is not None or self._pending:
            unacked = [self._inflight, *self._pending] if self._inflight is not None else self._pending
            trace = self._tracer(version) if self.trace_listeners else None
            incoming, rebased = ot.transform_past(
                changeset, unacked, trace=None if trace is None else (lambda _n, record: trace(record)))
            for old, new in zip(unacked, rebased):
                self._rebase(old, new)  # type: ignore[arg-type]
            if self._inflight is not None:
                self._inflight, *self._pending = rebased  # type: ignore[assignment]
            else:
                self._pending = rebased  # type: ignore[assignment]
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
        note = notification(self.env.now, "device", before, self._observe(), batch)
        for listener in list(self.listeners):
            listener(note)


class _Watchers(list):  # type: ignore[type-arg]
    """A device's listener list that tells the device before a listener is added."""

    __slots__ = ("_before_add",)

    def __init__(self, before_add: Callable[[], None]) -> None:
        super().__init__()
        self._before_add = before_add

    def append(self, item: Any) -> None:
        self._before_add()
        super().append(item)

    def extend(self, items: Any) -> None:
        items = list(items)
        if items:
            self._before_add()
        super().extend(items)

    def insert(self, index: Any, item: Any) -> None:
        self._before_add()
        super().insert(index, item)

    def __iadd__(self, items: Any) -> "_Watchers":
        self.extend(items)
        return self


def create_node(pk: str, text: str, owner_id: str, is_root: bool) -> list[dict[str, Any]]:
    base = {"table": "Node", "object": pk}
    return [
        {"op": "CreateObject", **base},
        {"op": "Update", **base, "field": "text", "value": text, "is_default": False},
        {"op": "Update", **base, "field": "isRoot", "value": is_root, "is_default": False},
        {"op": "Update", **base, "field": "owner_id", "value": owner_id, "is_default": False},
    ]
