"""The emulated backend wired together: device, sync server, translator, Atlas, control plane.

Virtual time (SimPy's Environment) runs a 5-minute scenario in a fraction of a second;
real time (SimPy's RealtimeEnvironment) runs it at wall-clock pace for live demos.
"""

from __future__ import annotations

import copy
import math
import random
import threading
import time
import uuid
from typing import Any, Callable

import simpy
import simpy.rt

from repro_kit import _schema
from repro_kit._session import AtlasView, DeployResult, Info, Listener, Notification, Session
from repro_kit.emulator._scheduling import ModelEnvironment, relaxed_gc, run_until
from repro_kit.emulator.appservices import ControlPlane
from repro_kit.emulator.atlas import AtlasCollection
from repro_kit.emulator.device import TREES, Device
from repro_kit.emulator.params import ENCODINGS, MODES, REIMPORTS, EmulatorParams
from repro_kit.emulator.server import SyncServer
from repro_kit.emulator.translator import Translator

__all__ = ["EmulatedSession", "EmulatedAtlasView"]

#: Virtual seconds the start-up waits so the root reaches Atlas before anything else.
STARTUP_SETTLE_S = 1.0
#: Longest stretch a real-time wait holds the session's lock.
_REALTIME_SLICE_S = 0.05


class EmulatedAtlasView(AtlasView):
    """The owner's documents in the emulated Atlas collection."""

    def __init__(self, collection: AtlasCollection, owner_id: str, env: simpy.Environment, lock: threading.RLock,
                 tree: str = "children") -> None:
        self.tree = tree
        self.collection = collection
        self.owner_id = owner_id
        self._env = env
        self._lock = lock

    def nodes(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.collection.find({"owner_id": self.owner_id}))

    def root(self) -> dict[str, Any] | None:
        with self._lock:
            return self.collection.find_one({"owner_id": self.owner_id, "isRoot": True})

    def children(self, root: dict[str, Any] | None) -> list[str]:
        """The root's children as Atlas holds them (the array, or the `parent` pointers)."""
        if root is None:
            return []
        if self.tree == "parent":
            return [d["_id"] for d in self.collection.find({"owner_id": self.owner_id, "parent": root["_id"]})]
        return list(root.get("children", []))

    def info(self) -> Info:
        with self._lock:
            root = self.root()
            return Info(
                user_id=self.owner_id,
                root_id=root["_id"] if root else None,
                nodes_total=self.collection.count_documents({"owner_id": self.owner_id}),
                root_children=len(self.children(root)),
            )

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        root = self.root()
        root_id = root["_id"] if root else None
        children = self.children(root)
        docs = {d["_id"] for d in self.collection.find({"owner_id": self.owner_id})}

        def on_change(change: dict[str, Any]) -> None:
            nonlocal root_id, children
            _id, doc = change["documentKey"]["_id"], change["fullDocument"]
            if not ((doc is not None and doc.get("owner_id") == self.owner_id) or _id in docs):
                return  # another owner's document
            inserted = (_id,) if doc is not None and _id not in docs else ()
            deleted = (_id,) if doc is None else ()
            docs.difference_update(deleted)
            docs.update(inserted)
            old = children
            if doc is not None and doc.get("isRoot"):
                root_id = _id
            if self.tree == "parent":
                children = self.children(self.root())
            elif _id == root_id:
                children = list(doc.get("children", [])) if doc is not None else []
            old_set, new_set = set(old), set(children)
            listener(Notification(
                time=self._env.now,
                observer="atlas",
                root_children=len(children),
                nodes_total=len(docs),
                entered=tuple(c for c in children if c not in old_set),
                left=tuple(c for c in old if c not in new_set),
                inserted=inserted,
                deleted=deleted,
            ))

        return self.collection.watch(on_change)


class EmulatedSession(Session):
    """One user of the emulated app, connected through one device (more can be added)."""

    backend = "emulator"

    def __init__(
        self,
        mode: str = "production",
        encoding: str = "replace",
        seed: int = 0,
        realtime: bool = False,
        user_id: str | None = None,
        tree: str = "children",
        reimport: str = "all",
        **params: Any,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding: must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: must be an integer, got {seed!r}")
        if not isinstance(realtime, bool):
            raise ValueError(f"realtime: must be True or False, got {realtime!r}")
        if tree not in TREES:
            raise ValueError(f"tree: must be one of {', '.join(TREES)}, got {tree!r}")
        if reimport not in REIMPORTS:
            raise ValueError(f"reimport: must be one of {', '.join(REIMPORTS)}, got {reimport!r}")
        self.reimport = reimport
        self.params = EmulatorParams.from_kwargs(**params)
        self.tree = tree
        self.mode = mode
        self.encoding = encoding
        self.seed = seed
        self.realtime = realtime
        self.rng = random.Random(seed)
        self.user_id = user_id or uuid.UUID(int=self.rng.getrandbits(128)).hex[:24]
        self.env: simpy.Environment = (
            simpy.rt.RealtimeEnvironment(factor=1.0, strict=False) if realtime else ModelEnvironment()
        )
        self._lock = threading.RLock()
        p = self.params
        self.collection = AtlasCollection(_schema.COLLECTION)
        self.collection._clock = lambda: self.env.now
        self.server = SyncServer(self.env, self.rng, p.download_latency_s, p.latency_jitter)
        self.translator = Translator(self.env, self.server, self.collection, encoding, p.translator_lag_s)
        self.control = ControlPlane(self.env, self.translator, mode, p, reimport)
        self._next_peer = 2
        self._trace_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.devices: list[Device] = []
        self.device = self.add_device()
        self.atlas = EmulatedAtlasView(self.collection, self.user_id, self.env, self._lock, tree)
        # Start-up, as the original tool: make sure the user has a root (then any prefill).
        self.device.create_root()
        for i in range(int(p.prefill)):
            self.device.add_to_root(f"prefill {i + 1}")
        self.wait_until(STARTUP_SETTLE_S)
        self._settle()

    def _settle(self) -> None:
        """Let start-up writes reach the server and Atlas: a run starts from a synced app
        (prefilled notes upload one by one, a round trip each, so many take seconds)."""
        while not self.settled():
            self.wait_until(self.env.now + STARTUP_SETTLE_S)

    def settled(self) -> bool:
        """Nothing left to sync: every device idle, translation not halted, Atlas caught up."""
        return self.translator.caught_up and all(d.idle for d in self.devices)

    # -- devices and time ---------------------------------------------------------------
    def add_device(self, owner_id: str | None = None) -> Device:
        """Another device (peer) of this user, or of `owner_id`: for multi-device scenarios."""
        with self._lock:
            p = self.params
            device = Device(self.env, self.server, self._next_peer, owner_id or self.user_id, self.rng,
                            p.upload_latency_s, int(p.clock_skew_ms), self.tree)
            device.trace_listeners.extend(self._trace_listeners)
            self._next_peer += 1
            self.devices.append(device)
            return device

    def now(self) -> float:
        return float(self.env.now)

    def wait_until(self, t: float) -> None:
        """Run the model to session time `t`. In real time the wait sleeps outside the
        session's lock and moves the model in slices, so other threads (a menu's Print info,
        a panel's Deploy) act while a run waits, at most a slice later."""
        if not math.isfinite(t):
            raise ValueError(f"t: must be a finite time in seconds, got {t!r}")
        if not self.realtime:
            with self._lock:
                if t > self.env.now:
                    with relaxed_gc():
                        run_until(self.env, t)
            return
        while True:
            with self._lock:
                now = self.env.now
                if now >= t:
                    return
            target = min(t, now + _REALTIME_SLICE_S)
            delay = target - self.wall_now()
            if delay > 0:
                time.sleep(delay)
            with self._lock:
                if target > self.env.now:
                    self.env.run(until=target)  # due by now: runs without sleeping

    def wall_now(self) -> float:
        """Seconds of wall-clock time since the session started (the model's time in real time)."""
        env = self.env
        return time.monotonic() - env.real_start if isinstance(env, simpy.rt.RealtimeEnvironment) else float(env.now)

    def catch_up(self) -> None:
        """In real time, let the model run up to the wall clock (what a clock thread calls)."""
        if self.realtime:
            self.wait_until(self.wall_now())

    def schema_fields(self) -> set[str]:
        """The field names of the app's current `Node` schema."""
        with self._lock:
            return set(self.control.schema.get("properties", {}))

    # -- the original tool's operations --------------------------------------------------
    def root(self) -> dict[str, Any]:
        with self._lock:
            self.catch_up()
            root_id = self.device.root_id()
            if root_id is None:
                root_id = self.device.create_root()
            return self._node(root_id)

    def add_to_root(self, text: str) -> str:
        if not isinstance(text, str):
            raise ValueError(f"text: must be a string, got {text!r}")
        with self._lock:
            self.catch_up()
            if self.device.root_id() is None:
                self.device.create_root()
            return self.device.add_to_root(text)

    def nodes(self) -> list[dict[str, Any]]:
        with self._lock:
            self.catch_up()
            root_id = self.device.root_id()
            if root_id is None:
                return []
            return [self._node(root_id)] + [self._node(c) for c in self.device.visible_children(root_id)]

    def all_nodes(self) -> list[dict[str, Any]]:
        """Every node document of the user on the device, reachable or not."""
        with self._lock:
            return [self._node(pk) for pk in self.device.owned_ids()]

    def _node(self, pk: str) -> dict[str, Any]:
        obj = copy.deepcopy(self.device.table[pk])
        obj["children"] = self.device.visible_children(pk)
        return obj

    def info(self) -> Info:
        with self._lock:
            self.catch_up()
            root_id = self.device.root_id()
            return Info(
                user_id=self.user_id,
                root_id=root_id,
                nodes_total=len(self.device.owned_ids()),
                root_children=len(self.device.visible_children(root_id)),
            )

    def reset(self) -> int:
        with self._lock:
            self.catch_up()
            return self.device.erase_owned()

    def deploy_schema_change(self, field: str, bson_type: str) -> DeployResult:
        with self._lock:
            self.catch_up()
            return self.control.deploy_schema_change(field, bson_type)

    # -- observation -----------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self.device.listeners.append(listener)
        return lambda: self.device.listeners.remove(listener) if listener in self.device.listeners else None

    def subscribe_acks(self, listener: Callable[[str, float], None]) -> Callable[[], None]:
        with self._lock:
            self.device.ack_listeners.append(listener)
        return lambda: self.device.ack_listeners.remove(listener) if listener in self.device.ack_listeners else None

    def subscribe_trace(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """The server's merge evidence and every device's own rebase of its local changes."""
        with self._lock:
            self._trace_listeners.append(listener)
            self.server.trace_listeners.append(listener)
            for device in self.devices:
                device.trace_listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                for listeners in (self._trace_listeners, self.server.trace_listeners,
                                  *(d.trace_listeners for d in self.devices)):
                    if listener in listeners:
                        listeners.remove(listener)

        return unsubscribe

    def is_acknowledged(self, node_id: str) -> bool:
        return node_id in self.device.acked

    def nemesis_log(self) -> list[dict[str, Any]]:
        return list(self.translator.log)

    def describe(self) -> dict[str, Any]:
        """The session's part of a run's metadata, with every model parameter."""
        return {**super().describe(), "reimport": self.reimport, "tree": self.tree, "seed": self.seed,
                "params": self.params.as_dict()}
