"""The sync server: an ordered history of changesets and the merge of uploads into it.

An upload based on server version B is transformed against every history entry after
B that did not come from the same peer, appended, then fanned out to the devices
subscribed to the owners it touches (flexible sync scopes each device to its
`owner_id`), to the uploader as its acknowledgement, and to the translator.
"""

from __future__ import annotations

import bisect
import collections
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

import simpy

from repro_kit._mypyc import mypyc_attr
from repro_kit.emulator import ot
from repro_kit.emulator.delivery import Delivery, Port, Receive

__all__ = ["SyncServer", "SERVER_PEER"]

#: Peer id of changesets the server itself creates (the translator's imports from Atlas).
SERVER_PEER = 1
#: History entries whose compiled form is kept (`ot.Changeset`): the latest, which the devices and
#: the translator are still applying; an older one is compiled again if it is used again.
COMPILED_KEPT = 4096

TraceListener = Callable[[dict[str, Any]], None]


@mypyc_attr(native_class=False)  # a compiled dict subclass has no attributes: `changeset`, `server` need their slots
class _Views(dict):
    """One changeset as each owner's devices see it (filtered to the owner's objects), made on
    first need: what `Delivery.send` looks up for each port."""

    __slots__ = ("changeset", "server")

    def __init__(self, server: SyncServer, changeset: dict[str, Any]) -> None:
        super().__init__()
        self.server = server
        self.changeset = changeset

    def __missing__(self, owner: str) -> dict[str, Any]:
        view = self[owner] = self.server._filter(self.changeset, owner)
        return view


_SHAPES: dict[tuple[str, ...], tuple[str, ...]] = {}  # an instruction's keys, in order: one tuple per shape


class Packed(Sequence[dict[str, Any]]):
    """The instructions of a history entry older than the latest COMPILED_KEPT, kept compactly: each
    instruction's keys (a tuple shared by every instruction of its shape) and all their values in
    one tuple, ~60 bytes an instruction where its dict took 184 to 272 (the history's instructions
    were ~55% of a fleet's memory). Read back, they are equal to the ones packed (keys in order, the
    same values), new dicts: the history's instructions are never changed once integrated (a merge
    copies what it changes), so what reads them (an old base's rebase, the translator catching up,
    a late device's bootstrap) meets the same instructions. The last one read keeps its list (one list
    at a time) for the next read, by index or whole."""

    __slots__ = ("_shapes", "_values")

    def __init__(self, shapes: tuple[tuple[str, ...], ...], values: tuple[Any, ...]) -> None:
        self._shapes, self._values = shapes, values

    @classmethod
    def of(cls, instructions: Sequence[dict[str, Any]]) -> Packed:
        if type(instructions) is Packed:
            return instructions
        shapes = _SHAPES
        return cls(tuple([shapes.setdefault(keys, keys) for keys in map(tuple, instructions)]),
                     tuple([value for ins in instructions for value in ins.values()]))

    def __len__(self) -> int:
        return len(self._shapes)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._read()[i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._read())

    def _read(self) -> list[dict[str, Any]]:
        """The instructions, made again unless this Packed was the last one read (a merge reads an
        entry twice in a row: to find what it meets, then to meet it); as the list was, read twice
        they are the same dicts."""
        last = _LAST_READ[0]
        if last[0] is not self:
            values = iter(self._values)
            made = [dict(zip(keys, values)) for keys in self._shapes]  # zip takes len(keys) values, no more
            last = _LAST_READ[0] = (self, made)
        return last[1]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (list, tuple, Packed)) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # equal to a list: unhashable as one

    def __repr__(self) -> str:
        return repr(list(self))


def _objects_of(changeset: dict[str, Any]) -> set[tuple[str, str]]:
    """The (table, pk) of `changeset`'s instructions, read from them (no compiled form made for this)."""
    return {(ins["table"], ins["object"]) for ins in changeset["instructions"]}


#: The Packed last read by index and its instructions (one tuple: replaced whole, so a thread reads a pair).
_LAST_READ: list[tuple[Any, list[dict[str, Any]]]] = [(None, [])]


class SyncServer:
    # mypyc: fields `EmulatedWorld.close` deletes (a compiled class has no __dict__ to clear)
    __deletable__ = ("env", "delivery", "rng", "download_latency_s", "jitter", "history", "state", "owner_of",
                     "_ports", "_versions_of", "_by_owner", "_owner_targets", "_on_integrated", "trace_listeners",
                     "notes", "_packs")

    def __init__(self, env: simpy.Environment, rng: random.Random, download_latency_s: float, jitter: float,
                 delivery: Delivery | None = None) -> None:
        """`delivery`: how calls and downloads are scheduled (the world's; by default one event
        each, through SimPy's public API)."""
        self.env = env
        self.delivery = delivery if delivery is not None else Delivery(env)
        self.rng = rng
        self.download_latency_s = download_latency_s
        self.jitter = jitter
        self.history: list[tuple[int, dict[str, Any]]] = []
        self.state: dict[str, Any] = {"Node": {}}
        self.owner_of: dict[str, str] = {}
        self._ports: dict[int, Port] = {}
        self._versions_of: dict[tuple[str, str], list[int]] = {}  # object -> versions touching it
        self._by_owner: dict[str, list[int]] = {}
        self._owner_targets: dict[str, list[Port]] = {}  # owner -> its ports by peer, until one connects
        self._on_integrated: list[Callable[[int, int, dict[str, Any]], None]] = []
        self.trace_listeners: list[TraceListener] = []
        self.notes: dict[int, dict[str, Any]] = {}  # version -> what the server knows of it (re-import batch)
        # (version, its instructions packed as it was integrated), from version COMPILED_KEPT + 1 on, until
        # its compiled form is released: reading them back 4,096 versions later found them cold in memory
        self._packs: collections.deque[tuple[int, Packed]] = collections.deque()

    @property
    def version(self) -> int:
        """Server version = number of integrated changesets."""
        return len(self.history)

    def connect(self, peer: int, owner_id: str, receive: Receive) -> Port:
        """Subscribe a device: it downloads the history so far, then every later changeset,
        each filtered to `owner_id`'s objects (its flexible-sync subscription), `receive` called
        with each at its time. Returns the device's port at the delivery."""
        if peer == SERVER_PEER or peer in self._ports:
            raise ValueError(f"peer: {peer} is already connected or reserved")
        port = self._ports[peer] = self.delivery.port(receive, peer, owner_id)
        self._by_owner.setdefault(owner_id, []).append(peer)
        self._owner_targets.pop(owner_id, None)
        for version, (origin, entry) in enumerate(self.history, 1):  # bootstrap: the history so far
            self._send([port], version, origin, entry, self.notes.get(version))
        return port

    def on_integrated(self, listener: Callable[[int, int, dict[str, Any]], None]) -> None:
        """The translator's feed: (version, origin peer, integrated changeset), synchronously."""
        self._on_integrated.append(listener)

    def latency(self, base: float) -> float:
        """`base` scaled by a factor drawn uniformly in [1 - jitter, 1 + jitter]."""
        if not self.jitter or not base:
            return base
        return base * (1 - self.jitter + 2 * self.jitter * self.rng.random())  # random.uniform, inlined

    def integrate(self, peer: int, changeset: dict[str, Any], base_version: int,
                  note: dict[str, Any] | None = None, *, trusted: bool = False) -> int:
        """Merge an upload into the history; returns its server version.

        `note`: what the server knows about the changeset beyond its instructions (a
        re-import batch's number), passed to trace listeners and with the downloads.
        `trusted`: the changeset was checked where it was made (a device validates its own
        writes, the translator builds its own), so its format is not checked again here.
        """
        if not 0 <= base_version <= self.version:
            raise ValueError(f"base_version: {base_version} is outside 0..{self.version}")
        if not trusted:
            ot.validate(changeset, "upload")  # once; the history it meets was validated on its way in
        if type(changeset) is not ot.Changeset:
            changeset = ot.Changeset(changeset)  # compiled once for every peer that applies it
        version = self.version + 1
        keys = ot.kept_objects(changeset)
        if keys is None:
            keys = _objects_of(changeset)
        met = self._concurrent(keys, base_version, peer)
        trace = None
        if self.trace_listeners:
            def trace(n: int, record: dict[str, Any]) -> None:
                theirs = met[n][0]
                self._trace({**record, "at": "server", "version": version,
                             "instruction_in": version if record["side"] == "a" else theirs,
                             "by_in": theirs if record["side"] == "a" else version})
        merged = ot.rebase(changeset, [entry for _, entry in met], validate=False, trace=trace)
        ot.apply(self.state, merged, validate=False)
        self._note_owners(merged)
        self.history.append((peer, merged))
        if version > COMPILED_KEPT:
            packs = self._packs  # a long history: this entry packed now, while its instructions are in the cache
            packs.append((version, Packed.of(merged["instructions"])))
            older_version = version - COMPILED_KEPT
            older = self.history[older_version - 1][1]
            ot.release(older)
            older["instructions"] = (packs.popleft()[1] if packs[0][0] == older_version
                                     else Packed.of(older["instructions"]))
        versions_of = self._versions_of
        if merged is not changeset:  # (what nothing met comes back as it was: its objects are known)
            keys = _objects_of(merged)
        for key in keys:
            listed = versions_of.get(key)
            if listed is None:
                versions_of[key] = [version]
            else:
                listed.append(version)
        if note:
            self.notes[version] = note
        if self.trace_listeners:
            self._trace({"kind": "integrate", "version": version, "origin": peer, "base_version": base_version,
                         "timestamp": merged["timestamp"], **(note or {}), "instructions": merged["instructions"]})
        for listener in self._on_integrated:
            listener(version, peer, merged)
        self._send(self._targets(peer, merged), version, peer, merged, note)
        return version

    def _concurrent(self, keys: set[tuple[str, str]], base_version: int, peer: int) -> list[tuple[int, dict[str, Any]]]:
        """The history entries after `base_version`, not from `peer`, that touch an object of
        `keys` (an upload's (table, pk)), in version order: the only ones its rebase can change (a
        merge only ever pairs instructions on the same object), found through an index, not a scan."""
        versions_of = self._versions_of
        found: set[int] = set()
        for key in keys:
            listed = versions_of.get(key)
            if listed and listed[-1] > base_version:
                found.update(listed[bisect.bisect_right(listed, base_version):])
        history = self.history
        return [(v, history[v - 1][1]) for v in sorted(found) if history[v - 1][0] != peer]

    def _targets(self, uploader: int, changeset: dict[str, Any]) -> list[Port]:
        """The devices a changeset goes to, in connection order: the uploader (its acknowledgement)
        and the devices subscribed to an owner whose objects it touches (flexible sync scopes
        each device to its `owner_id`). Other owners' devices get nothing, so the cost of a
        write does not grow with the number of users. An object of unknown owner goes to all."""
        owner_of = self.owner_of
        owners: set[str] = set()
        for ins in changeset["instructions"]:
            owner = owner_of.get(ins["object"])
            if owner is None:
                return list(self._ports.values())
            owners.add(owner)
        uploader_port = self._ports.get(uploader)
        if len(owners) == 1:  # the usual case: one owner's devices, the uploader among them
            (owner,) = owners
            listed = self._owner_targets.get(owner)
            if listed is None:
                listed = self._owner_targets[owner] = [self._ports[p] for p in sorted(self._by_owner.get(owner, ()))]
            if uploader_port is None or uploader_port.owner == owner:
                return listed
        targets = {}
        if uploader_port is not None:
            targets[uploader] = uploader_port
        for owner in owners:
            for peer in self._by_owner.get(owner, ()):
                targets[peer] = self._ports[peer]
        # connection order: the latency draws stay deterministic
        return [port for _peer, port in sorted(targets.items())]

    def _trace(self, record: dict[str, Any]) -> None:
        """One record of the merge's evidence, stamped with the server's time."""
        if "kind" not in record:
            record = {"kind": record.pop("effect"), **record}
        record = {"time": self.env.now, **record}
        for listener in list(self.trace_listeners):
            listener(record)

    def _note_owners(self, changeset: dict[str, Any]) -> None:
        """Follow the owner of each object `changeset` created or gave an owner_id (as applied)."""
        table, owner_of = self.state["Node"], self.owner_of
        for pk in ot.owner_candidates(changeset):
            obj = table.get(pk)
            if obj is not None and "owner_id" in obj:
                owner_of[pk] = obj["owner_id"]

    def _filter(self, changeset: dict[str, Any], owner_id: str) -> dict[str, Any]:
        """Keep what the peer's subscription (owner_id == its user) can see."""
        owner_of = self.owner_of
        instructions = changeset["instructions"]
        if all(owner_of.get(ins["object"], owner_id) == owner_id for ins in instructions):
            return changeset
        return ot.subset(changeset, lambda pk: owner_of.get(pk, owner_id) == owner_id)

    def _send(self, targets: list[Port], version: int, origin: int, changeset: dict[str, Any],
              note: dict[str, Any] | None = None) -> None:
        """Deliver `changeset` to each port in turn, filtered to the port's owner (once per owner)
        but unfiltered to its origin (the uploader's acknowledgement), each after a latency
        drawn in that order (`Delivery.send`)."""
        latency = (self.download_latency_s, self.jitter, self.rng.random)
        self.delivery.send(targets, version, origin, _Views(self, changeset), changeset, note, latency)
