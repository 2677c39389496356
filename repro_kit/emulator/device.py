"""The app on a device: a local Realm of `Node` objects that syncs through the server.

Local writes apply at once and queue as changesets (one in flight at a time, the rest
rebased on each download, as in a client/server OT protocol). Downloads from other
peers are transformed against the unacknowledged local changesets with the same merge
rules as the server, applied, and reported to observers (`observe`): the original tool's
collection and root-object listeners. When downloads arrive is the world's delivery's
business (`delivery.Port`): the device only receives them, and its reads change nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, cast

import simpy

from repro_kit._history import Notification, notification
from repro_kit.emulator import ot
from repro_kit.emulator.server import SERVER_PEER, SyncServer

__all__ = ["Device", "create_node", "TREES"]

AckListener = Callable[[str, float], None]
TraceListener = Callable[[dict[str, Any]], None]

#: How the app links a note to its parent: the report's `children` list on the parent,
#: or (a mitigation) a scalar `parent` field on each child.
TREES = ("children", "parent")


#: What `uuid.UUID(..., version=4)` clears and sets: the variant (RFC 4122) and the version (4).
_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_V4 = (0x8000 << 48) | (4 << 76)


class Device:
    # mypyc: fields `EmulatedWorld.close` deletes (a compiled class has no __dict__ to clear)
    __deletable__ = ("tree", "env", "server", "peer", "owner_id", "rng", "upload_latency_s", "clock_skew_ms",
                     "state", "server_version", "inflight", "pending", "listeners", "trace_listeners",
                     "ack_listeners", "acked", "_created_by", "_last_ts", "_root", "_seen", "_link")

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
        self.tree, self.env, self.server, self.peer, self.owner_id, self.rng = tree, env, server, peer, owner_id, rng
        self.upload_latency_s, self.clock_skew_ms = upload_latency_s, clock_skew_ms
        #: The local Realm: {table: {pk: object}}, dangling links included.
        self.state: dict[str, Any] = {"Node": {}}
        #: The last server version this device has integrated.
        self.server_version = 0
        #: The local changeset uploaded and not yet acknowledged (rebased past what arrived since).
        self.inflight: dict[str, Any] | None = None
        #: Local changesets waiting behind `inflight`.
        self.pending: list[dict[str, Any]] = []
        self.listeners: tuple[Callable[[Notification], None], ...] = ()  # see `observe`
        self.trace_listeners: tuple[TraceListener, ...] = ()  # see `observe_merge`
        self.ack_listeners: list[AckListener] = []
        self.acked: set[str] = set()
        self._created_by: dict[int, list[str]] = {}
        self._last_ts = 0
        self._root: str | None = None  # the first object (in table order) that is this owner's root
        self._seen: tuple[list[str], set[str]] | None = None  # the view after the last change, while observed
        self._link = server.connect(peer, owner_id, self._receive)

    # -- clock and ids -----------------------------------------------------------------
    def clock_ms(self) -> int:
        """Device time in ms, strictly increasing so every local changeset has its own stamp."""
        ts = max(int(self.env.now * 1000) + self.clock_skew_ms, self._last_ts + 1)
        self._last_ts = ts
        return ts

    def new_id(self) -> str:
        """A random version-4 UUID from the device's generator, as text: `str(uuid.UUID(int=bits,
        version=4))`, its bits set and its text made here (half the time: a fleet makes 400,000)."""
        bits = (self.rng.getrandbits(128) & _UUID_CLEAR) | _UUID_V4
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    # -- observers -----------------------------------------------------------------------
    def observe(self, listener: Callable[[Notification], None]) -> Callable[[], None]:
        """Tell `listener` what each change (local write or download) did to the device's view,
        when it happens; returns what stops that. An observed device gets every download as its
        own event from now on (`Port.undefer`)."""
        self._link.undefer()
        self.listeners = (*self.listeners, listener)
        self._seen = None

        def stop() -> None:
            self.listeners = tuple(x for x in self.listeners if x is not listener)
            self._seen = None

        return stop

    def observe_merge(self, listener: TraceListener) -> Callable[[], None]:
        """Tell `listener` the merge's evidence of each rebase here (see `ot.transform`'s `trace`);
        returns what stops that."""
        self._link.undefer()
        self.trace_listeners = (*self.trace_listeners, listener)

        def stop() -> None:
            self.trace_listeners = tuple(x for x in self.trace_listeners if x is not listener)

        return stop

    # -- reads -------------------------------------------------------------------------
    @property
    def table(self) -> dict[str, dict[str, Any]]:
        return self.state["Node"]

    def root_id(self) -> str | None:
        """The first object (in table order) that is this owner's root."""
        return self._root

    def _find_root(self) -> str | None:
        for pk, obj in self.state["Node"].items():
            if obj.get("isRoot") and obj.get("owner_id") == self.owner_id:
                return pk
        return None

    def _apply(self, changeset: dict[str, Any], validate: bool) -> None:
        """ot.apply, keeping the root exact (`_track_root`).

        `validate=False` for a download, made of instructions the server already validated
        and applied (then rebased here by the merge rules): its format is not checked again
        on every device; and for the device's own operations (`add_to_root`, ...)."""
        if validate:
            ot.apply(self.state, changeset)
            self._track_root(ot.root_effects(changeset))
        else:
            self._track_root(ot.apply_trusted(self.state, changeset))

    def _track_root(self, effects: ot.Effects) -> None:
        """Look for the root again when a changeset could have changed which object is the first
        root (an erase reorders or removes; an Update of isRoot/owner_id may make or unmake one).
        Why: add_to_root looked the root up by scanning every node, which made thousands of nodes
        quadratic."""
        erases, rooting, unrooting = effects
        if erases or (unrooting and self._root in unrooting):
            self._root = self._find_root()
            return
        if not rooting:
            return
        # The root stays the first root in table order unless it stopped being one or another
        # object became one (objects are only added at the end, and an erase was handled above).
        table = self.state["Node"]
        root, owner = self._root, self.owner_id
        for pk in rooting:
            obj = table.get(pk)
            is_root = obj is not None and bool(obj.get("isRoot")) and obj.get("owner_id") == owner
            if is_root != (pk == root):
                self._root = self._find_root()
                return

    @property
    def idle(self) -> bool:
        """Every local change acknowledged by the server: nothing in flight or pending.
        (What the delivery holds cannot change that: acknowledgements are never held.)"""
        return self.inflight is None and not self.pending

    def visible_children(self, pk: str | None) -> list[str]:
        table = self.state["Node"]
        if pk is None or pk not in table:
            return []
        if self.tree == "parent":
            return [c for c, obj in table.items() if obj.get("parent") == pk]
        return [c for c in table[pk].get("children", ()) if c in table]

    def owned_ids(self) -> list[str]:
        return [pk for pk, obj in self.state["Node"].items() if obj.get("owner_id") == self.owner_id]

    # -- writes ------------------------------------------------------------------------
    def write(self, instructions: list[dict[str, Any]]) -> dict[str, Any]:
        """One local write transaction: apply, notify, queue for upload. The instructions are
        checked against the device's state first (ValueError, and nothing changes, if one would fail)."""
        self._link.drain()  # acting: what is due reaches the device first
        return self._write(instructions, validate=True)

    def _write(self, instructions: list[dict[str, Any]], validate: bool, appended: str | None = None) -> dict[str, Any]:
        """`write`; `validate=False` for the device's own operations, whose instructions are right by
        construction (made from the state they apply to, after what was due reached it). `appended`:
        the write only made this note of the owner's and put it last under the root (`add_to_root`),
        so the view after it is the view before it and the note (no scan of the root's children)."""
        changeset = ot.Changeset(origin=self.peer, timestamp=self.clock_ms(), instructions=instructions)
        before = self._view() if self.listeners else None
        self._apply(changeset, validate=validate)
        created = [i["object"] for i in instructions if i["op"] == "CreateObject"]
        if created:
            self._created_by[id(changeset)] = created
        self.pending.append(changeset)
        if before is not None:
            if appended is not None:
                self._notify_append(before, appended)
            else:
                self._notify(before, batch=None, touched=[i["object"] for i in instructions])
        self._send_next()
        return changeset

    def create_root(self, text: str = "root") -> str:
        self._link.drain()
        pk = self.new_id()
        self._write(create_node(pk, text, self.owner_id, is_root=True), validate=False)
        return pk

    def create_tree(self, texts: Sequence[str], text: str = "root") -> str:
        """A root and one child note per text (in order), in one transaction; returns the root's id.
        (A fleet's users hold theirs before its run starts: a user's notes as one write.) The texts
        are the only input: checked here, the rest is made right."""
        # (read as objects: a mypyc-compiled build checks a str-typed value as it is read, with a TypeError)
        if not isinstance(text, str) or not all(isinstance(t, str) for t in cast(Sequence[object], texts)):
            raise ValueError("texts: the root's and every note's text must be a string")
        self._link.drain()
        root = self.new_id()
        instructions = create_node(root, text, self.owner_id, is_root=True)
        for k, note in enumerate(texts):
            pk = self.new_id()
            instructions += create_node(pk, note, self.owner_id, is_root=False)
            instructions.append(self._under(root, pk, k))
        self._write(instructions, validate=False)
        return root

    def add_to_root(self, text: str) -> str:
        self._link.drain()  # acting: the list's size is read after what was due reached the device
        root = self.root_id()
        if root is None:
            raise RuntimeError("the user has no root node yet")
        pk = self.new_id()
        ins = create_node(pk, text, self.owner_id, is_root=False)
        size = 0 if self.tree == "parent" else len(self.state["Node"][root]["children"])
        ins.append(self._under(root, pk, size))
        self._write(ins, validate=False, appended=pk)
        return pk

    def _under(self, root: str, pk: str, size: int) -> dict[str, Any]:
        """The instruction that puts note `pk` under `root` as this device's tree links them: its
        parent pointer, or an append to the root's children (`size` long before it)."""
        if self.tree == "parent":
            return {"op": "Update", "table": "Node", "object": pk, "field": "parent", "value": root,
                    "is_default": False}
        return {"op": "ArrayInsert", "table": "Node", "object": root, "field": "children",
                "index": size, "value": pk, "prior_size": size}

    def erase_owned(self) -> int:
        """Delete every node of this owner (the original tool's Reset)."""
        self._link.drain()
        ids = self.owned_ids()
        if ids:
            self._write([{"op": "EraseObject", "table": "Node", "object": pk} for pk in ids], validate=False)
        return len(ids)

    # -- sync --------------------------------------------------------------------------
    def _send_next(self) -> None:
        if self.inflight is not None or not self.pending:
            return
        self.inflight = changeset = self.pending.pop(0)
        delay = self.server.latency(self.upload_latency_s)
        self.server.delivery.call_later(delay, self._upload, changeset, self.server_version)

    def _upload(self, changeset: dict[str, Any], base: int) -> None:
        # validated when written (ot.apply with validation), so the server need not check it again
        self.server.integrate(self.peer, changeset, base, trusted=True)

    def _receive(self, version: int, origin: int, changeset: dict[str, Any], note: dict[str, Any] | None) -> None:
        """A download (what the port calls at its time): an acknowledgement of the changeset in
        flight, or another peer's changeset, rebased past the local ones and applied."""
        self.server_version = version
        if origin == self.peer:
            self._acknowledged()
            return
        incoming = changeset
        if self.inflight is not None or self.pending:
            incoming = self._rebase_past_local(changeset, version)
        # A re-import batch is reported even when the merge left nothing of it here: the
        # kit counts the batches that reached the device (an unfinished re-import is inconclusive).
        batch = note.get("reimport_docs") if note and origin == SERVER_PEER else None
        if self.listeners:
            if incoming["instructions"] or batch is not None:
                before = self._view()
                self._track_root(ot.apply_trusted(self.state, incoming))
                self._notify(before, batch=batch, touched=[pk for table, pk in ot.objects(incoming) if table == "Node"])
            return
        # the commonest call of a run (every download to every device): `_track_root`'s test inlined
        erases, rooting, unrooting = ot.apply_trusted(self.state, incoming)
        if erases or rooting or (unrooting and self._root in unrooting):
            self._track_root((erases, rooting, unrooting))

    def _acknowledged(self) -> None:
        acked = self.inflight
        self.inflight = None
        created = self._created_by.pop(id(acked), []) if acked is not None else []
        for pk in created:
            self.acked.add(pk)
            for listener in list(self.ack_listeners):
                listener(pk, self.env.now)
        self._send_next()

    def _rebase_past_local(self, changeset: dict[str, Any], version: int) -> dict[str, Any]:
        """`changeset` past the unacknowledged local changesets, and they past it (kept)."""
        unacked = [self.inflight, *self.pending] if self.inflight is not None else self.pending
        incoming, rebased = ot.transform_past(changeset, unacked,
                                              trace=self._tracer(version) if self.trace_listeners else None)
        created_by = self._created_by
        for old, new in zip(unacked, rebased):
            created = created_by.pop(id(old), None)
            if created is not None:
                created_by[id(new)] = created
        if self.inflight is not None:
            self.inflight, *self.pending = rebased  # type: ignore[assignment]
        else:
            self.pending = rebased  # type: ignore[assignment]
        return incoming

    def _tracer(self, version: int) -> Callable[[int, dict[str, Any]], None]:
        """The merge's evidence of this device's rebase: the download is side a, local changes side b."""
        def trace(_n: int, record: dict[str, Any]) -> None:
            local = record["side"] == "b"
            out = {"time": self.env.now, "kind": record["effect"], "at": "device", "peer": self.peer,
                   "version": version, **{k: v for k, v in record.items() if k != "effect"},
                   "instruction_in": "local" if local else version, "by_in": version if local else "local"}
            for listener in self.trace_listeners:
                listener(out)
        return trace

    # -- observers' notifications -----------------------------------------------------------
    def _view(self) -> tuple[list[str], set[str]]:
        """What observers see: the root's visible children and the owner's ids. While observed, every
        change is between a `_view` and a `_notify`, so the view `_notify` made last is still the
        view (it was a scan of the user's whole table, twice per notification)."""
        seen = self._seen
        if seen is not None:
            return seen
        owner = self.owner_id
        return self.visible_children(self.root_id()), {pk for pk, obj in self.state["Node"].items()
                                                       if obj.get("owner_id") == owner}

    def _notify_append(self, before: tuple[list[str], set[str]], pk: str) -> None:
        """`_notify` of an append (`add_to_root`): the view after it is the view before it with `pk` last
        under the root and among the owner's documents, so the notification is what `notification` finds
        between the two, made without the diff, and the view grows in place (a view is this device's own:
        `_view` makes new lists and sets, and a notification keeps tuples)."""
        children, docs = before
        entered = () if pk in children else (pk,)
        inserted = () if pk in docs else (pk,)
        children.append(pk)
        docs.add(pk)
        self._seen = before
        note = Notification(time=self.env.now, observer="device", root_children=len(children), nodes_total=len(docs),
                            entered=entered, inserted=inserted)
        for listener in self.listeners:
            listener(note)

    def _notify(self, before: tuple[list[str], set[str]], batch: int | None, touched: list[str] | None = None,
                after: tuple[list[str], set[str]] | None = None) -> None:
        """Tell the listeners what the change did to the view. `touched`: every object the change
        could have changed (a local write's, a download's), whose owner alone is looked at again;
        `after`: the view after the change, known (an append's)."""
        self._seen = None
        if after is None and touched is None:
            after = self._view()
        elif after is None:
            table, owner, owned = self.state["Node"], self.owner_id, set(before[1])
            for pk in touched or ():
                obj = table.get(pk)
                if obj is not None and obj.get("owner_id") == owner:
                    owned.add(pk)
                else:
                    owned.discard(pk)
            after = self.visible_children(self.root_id()), owned
        self._seen = after
        note = notification(self.env.now, "device", before, after, batch)
        for listener in self.listeners:
            listener(note)


def create_node(pk: str, text: str, owner_id: str, is_root: bool) -> list[dict[str, Any]]:
    base = {"table": "Node", "object": pk}
    return [
        {"op": "CreateObject", **base},
        {"op": "Update", **base, "field": "text", "value": text, "is_default": False},
        {"op": "Update", **base, "field": "isRoot", "value": is_root, "is_default": False},
        {"op": "Update", **base, "field": "owner_id", "value": owner_id, "is_default": False},
    ]
