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
from heapq import heappush
from typing import Any, Callable

import simpy

from repro_kit.emulator import ot
from repro_kit.emulator._scheduling import NORMAL, TimedCall, call_later, heap_parts

__all__ = ["SyncServer", "SERVER_PEER"]

#: Peer id of changesets the server itself creates (the translator's imports from Atlas).
SERVER_PEER = 1

Download = Callable[[int, int, dict[str, Any], dict[str, Any] | None], None]  # (version, origin, changeset, note)
TraceListener = Callable[[dict[str, Any]], None]


class _Link:
    """A connected device. `inbox`, while set, takes other peers' downloads at once as
    (time, priority, event id, version, origin, changeset, note): the heap key each would
    have been scheduled with, then `deliver`'s arguments. The device applies them in that
    order when next read or acting (`drain`, also called here when a device that neither
    writes nor is read lets its inbox grow past INBOX_LIMIT); acknowledgements always go
    through `deliver` at their time, since they make the device upload."""

    __slots__ = ("peer", "owner_id", "deliver", "inbox", "drain", "last_at", "outbox")

    def __init__(self, peer: int, owner_id: str, deliver: Download, inbox: collections.deque[Any] | None,
                 drain: Callable[[], None] | None) -> None:
        self.peer = peer
        self.owner_id = owner_id
        self.deliver = deliver
        self.inbox = inbox
        self.drain = drain
        self.last_at = 0.0  # the heap time of the link's latest download: the next is never earlier
        self.outbox: collections.deque[tuple[Any, ...]] = collections.deque()  # `deliver_next`'s queue

    def deliver_next(self) -> None:
        """Deliver the oldest queued download: per-link FIFO whatever order the events fire in
        (the path for an environment whose heap keys the server cannot write itself)."""
        self.deliver(*self.outbox.popleft())


#: Inbox length past which the server has the device apply what is already due.
INBOX_LIMIT = 1024


class SyncServer:
    def __init__(self, env: simpy.Environment, rng: random.Random, download_latency_s: float, jitter: float) -> None:
        self.env = env
        self.rng = rng
        self.download_latency_s = download_latency_s
        self.jitter = jitter
        self.history: list[tuple[int, dict[str, Any]]] = []
        self.state: dict[str, Any] = {"Node": {}}
        self.owner_of: dict[str, str] = {}
        self._links: dict[int, _Link] = {}
        self._versions_of: dict[tuple[str, str], list[int]] = {}  # object -> versions touching it
        self._by_owner: dict[str, list[int]] = {}
        self._owner_targets: dict[str, list[tuple[int, _Link]]] = {}  # owner -> its links by peer, until one (dis)connects
        self._on_integrated: list[Callable[[int, int, dict[str, Any]], None]] = []
        self.trace_listeners: list[TraceListener] = []
        self.notes: dict[int, dict[str, Any]] = {}  # version -> what the server knows of it (re-import batch)

    @property
    def version(self) -> int:
        """Server version = number of integrated changesets."""
        return len(self.history)

    def connect(self, peer: int, owner_id: str, deliver: Download,
                inbox: collections.deque[Any] | None = None, drain: Callable[[], None] | None = None) -> _Link:
        """Subscribe a device: it downloads the history so far, then every later changeset,
        each filtered to `owner_id`'s objects (its flexible-sync subscription). `deliver` is
        called at each download's time; with an `inbox` (and the `drain` that empties it of
        what is due), other peers' downloads are put there instead, with their heap keys (see
        `_Link`). Returns the link (its `inbox` may be set to None later, to have every
        download delivered as its own event)."""
        if peer == SERVER_PEER or peer in self._links:
            raise ValueError(f"peer: {peer} is already connected or reserved")
        if (inbox is None) != (drain is None):
            raise ValueError("inbox and drain: give both or neither")
        link = self._links[peer] = _Link(peer, owner_id, deliver, inbox, drain)
        self._by_owner.setdefault(owner_id, []).append(peer)
        self._owner_targets.pop(owner_id, None)
        for version, (origin, entry) in enumerate(self.history, 1):  # bootstrap: the history so far
            self._send([(peer, link)], version, origin, entry, self.notes.get(version))
        return link

    def disconnect(self, peer: int) -> None:
        link = self._links.pop(peer, None)
        if link is not None:
            self._by_owner[link.owner_id].remove(peer)
            self._owner_targets.pop(link.owner_id, None)

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
        version = self.version + 1
        met = self._concurrent(changeset, base_version, peer)
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
        versions_of = self._versions_of
        for key in {(ins["table"], ins["object"]) for ins in merged["instructions"]}:
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
        self._send(self._targets(peer, merged), version, peer, merged, note, ack_peer=peer)
        return version

    def _concurrent(self, changeset: dict[str, Any], base_version: int, peer: int) -> list[tuple[int, dict[str, Any]]]:
        """The history entries after `base_version`, not from `peer`, that touch an object of
        `changeset`, in version order: the only ones its rebase can change (a merge only ever
        pairs instructions on the same object), found through an index instead of a scan."""
        versions_of = self._versions_of
        found: set[int] = set()
        for key in {(ins["table"], ins["object"]) for ins in changeset["instructions"]}:
            listed = versions_of.get(key)
            if listed and listed[-1] > base_version:
                found.update(listed[bisect.bisect_right(listed, base_version):])
        history = self.history
        return [(v, history[v - 1][1]) for v in sorted(found) if history[v - 1][0] != peer]

    def _targets(self, uploader: int, changeset: dict[str, Any]) -> list[tuple[int, _Link]]:
        """The devices a changeset goes to, in connection order: the uploader (its acknowledgement)
        and the devices subscribed to an owner whose objects it touches (flexible sync scopes
        each device to its `owner_id`). Other owners' devices get nothing, so the cost of a
        write does not grow with the number of users. An object of unknown owner goes to all."""
        owner_of = self.owner_of
        owners: set[str] = set()
        for ins in changeset["instructions"]:
            owner = owner_of.get(ins["object"])
            if owner is None:
                return list(self._links.items())
            owners.add(owner)
        uploader_link = self._links.get(uploader)
        if len(owners) == 1:  # the usual case: one owner's devices, the uploader among them
            (owner,) = owners
            listed = self._owner_targets.get(owner)
            if listed is None:
                listed = self._owner_targets[owner] = sorted((p, self._links[p]) for p in self._by_owner.get(owner, ()))
            if uploader_link is None or uploader_link.owner_id == owner:
                return listed
        targets = {}
        if uploader_link is not None:
            targets[uploader] = uploader_link
        for owner in owners:
            for link_peer in self._by_owner.get(owner, ()):
                targets[link_peer] = self._links[link_peer]
        return sorted(targets.items())  # connection order: the latency draws stay deterministic

    def _trace(self, record: dict[str, Any]) -> None:
        """One record of the merge's evidence, stamped with the server's time."""
        if "kind" not in record:
            record = {"kind": record.pop("effect"), **record}
        record = {"time": self.env.now, **record}
        for listener in list(self.trace_listeners):
            listener(record)

    def _note_owners(self, changeset: dict[str, Any]) -> None:
        table = self.state["Node"]
        for ins in changeset["instructions"]:
            if ins.get("field") == "owner_id" or ins["op"] == "CreateObject":
                obj = table.get(ins["object"])
                if obj is not None and "owner_id" in obj:
                    self.owner_of[ins["object"]] = obj["owner_id"]

    def _filter(self, changeset: dict[str, Any], owner_id: str) -> dict[str, Any]:
        """Keep what the peer's subscription (owner_id == its user) can see."""
        owner_of = self.owner_of
        instructions = changeset["instructions"]
        if all(owner_of.get(ins["object"], owner_id) == owner_id for ins in instructions):
            return changeset
        kept = [ins for ins in instructions if owner_of.get(ins["object"], owner_id) == owner_id]
        return {**changeset, "instructions": kept}

    def _send(self, targets: list[tuple[int, _Link]], version: int, origin: int, changeset: dict[str, Any],
              note: dict[str, Any] | None = None, ack_peer: int | None = None) -> None:
        """Deliver `changeset` to each (peer, link) in turn, filtered to the link's owner (once
        per owner), but unfiltered to `ack_peer` (the uploader's acknowledgement), each after
        a latency drawn in that order; a download never overtakes an earlier one to the same
        peer. One loop for all of a changeset's downloads: a write of an owner with 100
        devices is 100 of them, and each is only a heap entry or an inbox entry (`_Link`)."""
        env = self.env
        now = env.now
        base, jitter, random = self.download_latency_s, self.jitter, self.rng.random
        parts = heap_parts(env)  # Environment.schedule's key: its time arithmetic, NORMAL, the next id
        queue, eids = parts if parts is not None else (None, None)
        views: dict[str, dict[str, Any]] = {}
        for link_peer, link in targets:
            if link_peer == ack_peer:
                view = changeset
            else:
                view = views.get(link.owner_id)  # type: ignore[assignment]
                if view is None:
                    view = views[link.owner_id] = self._filter(changeset, link.owner_id)
            delay = base * (1 - jitter + 2 * jitter * random()) if jitter and base else base  # latency()
            # The heap time Environment.schedule gives, raised to the link's last one so a download
            # never overtakes an earlier one to the same peer, and used as it is: scheduling at
            # `now + (at - now)` instead can land one unit in the last place before `at`, ahead of
            # the download it was raised behind (a device then rebased a download past its own
            # in-flight changeset, which the download already held).
            at = now + delay
            if at < link.last_at:
                at = link.last_at
            link.last_at = at
            if parts is None:
                link.outbox.append((version, origin, view, note))
                call_later(env, at - now, link.deliver_next)
                continue
            inbox = link.inbox
            if inbox is not None and link_peer != origin:
                # keys rise along a link (time never earlier, ids increasing): the inbox is in key order
                inbox.append((at, NORMAL, next(eids), version, origin, view, note))
                if len(inbox) > INBOX_LIMIT:  # a device no one reads or writes: apply what is due
                    link.drain()  # type: ignore[misc]
            else:
                heappush(queue, (at, NORMAL, next(eids), TimedCall(link.deliver, (version, origin, view, note))))  # type: ignore[arg-type]
