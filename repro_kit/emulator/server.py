"""The sync server: an ordered history of changesets and the merge of uploads into it.

An upload based on server version B is transformed against every history entry after
B that did not come from the same peer, appended, then fanned out to the other peers
(filtered by their flexible-sync subscription, `owner_id`) and to the translator.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import simpy

from repro_kit.emulator import ot

__all__ = ["SyncServer", "SERVER_PEER"]

#: Peer id of changesets the server itself creates (the translator's imports from Atlas).
SERVER_PEER = 1

Download = Callable[[int, int, dict[str, Any]], None]  # (version, origin peer, changeset)


class _Link:
    __slots__ = ("owner_id", "deliver", "last_at")

    def __init__(self, owner_id: str, deliver: Download) -> None:
        self.owner_id = owner_id
        self.deliver = deliver
        self.last_at = 0.0


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
        self._on_integrated: list[Callable[[int, int, dict[str, Any]], None]] = []

    @property
    def version(self) -> int:
        """Server version = number of integrated changesets."""
        return len(self.history)

    def connect(self, peer: int, owner_id: str, deliver: Download) -> None:
        """Subscribe a device: it downloads the history so far, then every later changeset,
        each filtered to `owner_id`'s objects (its flexible-sync subscription)."""
        if peer == SERVER_PEER or peer in self._links:
            raise ValueError(f"peer: {peer} is already connected or reserved")
        link = self._links[peer] = _Link(owner_id, deliver)
        for version, (origin, entry) in enumerate(self.history, 1):  # bootstrap: the history so far
            self._send(link, version, origin, self._filter(entry, owner_id, ack=False))

    def disconnect(self, peer: int) -> None:
        self._links.pop(peer, None)

    def on_integrated(self, listener: Callable[[int, int, dict[str, Any]], None]) -> None:
        """The translator's feed: (version, origin peer, integrated changeset), synchronously."""
        self._on_integrated.append(listener)

    def latency(self, base: float) -> float:
        """`base` scaled by a factor drawn uniformly in [1 - jitter, 1 + jitter]."""
        if not self.jitter or not base:
            return base
        return base * (1 - self.jitter + 2 * self.jitter * self.rng.random())  # random.uniform, inlined

    def integrate(self, peer: int, changeset: dict[str, Any], base_version: int) -> int:
        """Merge an upload into the history; returns its server version."""
        if not 0 <= base_version <= self.version:
            raise ValueError(f"base_version: {base_version} is outside 0..{self.version}")
        ot.validate(changeset, "upload")  # once; the history it meets was validated on its way in
        merged = ot.rebase(changeset, [entry for origin, entry in self.history[base_version:] if origin != peer],
                           validate=False)
        ot.apply(self.state, merged, validate=False)
        self._note_owners(merged)
        self.history.append((peer, merged))
        version = self.version
        for listener in self._on_integrated:
            listener(version, peer, merged)
        filtered: dict[str, dict[str, Any]] = {}  # one filtering per owner, not per device
        for link_peer, link in self._links.items():
            if link_peer == peer:
                self._send(link, version, peer, self._filter(merged, link.owner_id, ack=True))
                continue
            view = filtered.get(link.owner_id)
            if view is None:
                view = filtered[link.owner_id] = self._filter(merged, link.owner_id, ack=False)
            self._send(link, version, peer, view)
        return version

    def _note_owners(self, changeset: dict[str, Any]) -> None:
        table = self.state["Node"]
        for ins in changeset["instructions"]:
            if ins.get("field") == "owner_id" or ins["op"] == "CreateObject":
                obj = table.get(ins["object"])
                if obj is not None and "owner_id" in obj:
                    self.owner_of[ins["object"]] = obj["owner_id"]

    def _filter(self, changeset: dict[str, Any], owner_id: str, ack: bool) -> dict[str, Any]:
        """Keep what the peer's subscription (owner_id == its user) can see."""
        if ack:
            return changeset
        owner_of = self.owner_of
        instructions = changeset["instructions"]
        if all(owner_of.get(ins["object"], owner_id) == owner_id for ins in instructions):
            return changeset
        kept = [ins for ins in instructions if owner_of.get(ins["object"], owner_id) == owner_id]
        return {**changeset, "instructions": kept}

    def _send(self, link: _Link, version: int, origin: int, changeset: dict[str, Any]) -> None:
        """Deliver in order: a download never overtakes an earlier one to the same peer."""
        now = self.env.now
        at = max(now + self.latency(self.download_latency_s), link.last_at)
        link.last_at = at
        deliver = link.deliver
        self.env.timeout(at - now).callbacks.append(lambda _e: deliver(version, origin, changeset))
