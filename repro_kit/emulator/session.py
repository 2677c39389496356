"""The emulated backend wired together, once: device(s), sync server, translator, Atlas, control plane.

`EmulatedWorld` is the model of one app: its users and their devices, in virtual time (SimPy's
Environment: a 5-minute scenario in a fraction of a second) or real time (SimPy's
RealtimeEnvironment, at wall-clock pace). `EmulatedSession` is one user's connection to it, the
`Session` every front end drives; a fleet is one world with many users. Everything the world
does reaches listeners as history records (`repro_kit._history`), each tagged with the user's
process number, and this module is the one place that knows how the model is scheduled: the
SimPy environment, the run loop and the garbage collector's pause are chosen here.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import gc
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import simpy
import simpy.rt

from repro_kit import _checks, _schema
from repro_kit._history import (
    Event,
    Listener,
    Nemesis,
    Notification,
    Op,
    Record,
    Trace,
    baseline_events,
    events_of,
    notification,
)
from repro_kit._session import DeployResult, Session, View
from repro_kit.emulator._scheduling import ModelDelivery, ModelEnvironment, relaxed_gc
from repro_kit.emulator.appservices import ControlPlane
from repro_kit.emulator.atlas import AtlasCollection
from repro_kit.emulator.device import Device
from repro_kit.emulator.params import EmulatorParams
from repro_kit.emulator.server import SyncServer
from repro_kit.emulator.translator import Translator

__all__ = ["EmulatedWorld", "EmulatedSession", "STARTUP_SETTLE_S"]

#: Virtual seconds the start-up waits so the root reaches Atlas before anything else.
STARTUP_SETTLE_S = 1.0
#: Longest stretch a real-time wait holds the world's lock.
_REALTIME_SLICE_S = 0.05


@dataclasses.dataclass
class _Subscription:
    """One history listener and what it follows: some users (None: all), Atlas's view, the trace."""

    listener: Listener
    processes: frozenset[int] | None
    atlas: bool
    trace: bool
    batch: Callable[[list[Record]], None] | None = None

    def wants(self, process: int) -> bool:
        return self.processes is None or process in self.processes


class _User:
    """One owner of the app: their devices (the first is the one the user looks at), the process
    number their records carry, and the writes not yet acknowledged."""

    def __init__(self, owner_id: str, process: int) -> None:
        self.owner_id = owner_id
        self.process = process
        self.devices: list[Device] = []
        self.pending: set[str] = set()
        self.atlas: tuple[str | None, list[str], set[str]] | None = None  # (root, children, documents) while observed
        self.unobserve: Callable[[], None] | None = None  # stops observing the first device, while followed


class EmulatedWorld:
    """One emulated app: its users, the sync server, the translator, Atlas and the control plane."""

    def __init__(self, mode: str = "production", encoding: str = "replace", *, rng: random.Random,
                 params: EmulatorParams, realtime: bool = False, tree: str = "children", reimport: str = "all") -> None:
        self.mode, self.encoding, self.tree, self.reimport = mode, encoding, tree, reimport
        self.params, self.realtime, self.rng = params, realtime, rng
        self.env: simpy.Environment = (
            simpy.rt.RealtimeEnvironment(factor=1.0, strict=False) if realtime else ModelEnvironment()
        )
        self.lock = threading.RLock()
        p = params
        self.collection = AtlasCollection(_schema.COLLECTION)
        self.collection._clock = lambda: self.env.now
        #: How calls and downloads are scheduled: the world's one door to SimPy's heap (`_scheduling`).
        self.delivery = ModelDelivery(self.env)
        self.server = SyncServer(self.env, rng, p.download_latency_s, p.latency_jitter, self.delivery)
        self.translator = Translator(self.env, self.server, self.collection, encoding, p.translator_lag_s)
        self.control = ControlPlane(self.env, self.translator, mode, p, reimport)
        self.translator.nemesis_listeners.append(self._on_nemesis)
        self.users: dict[str, _User] = {}
        self.tag_users = False  # a fleet's events carry their user's process number
        self.devices: list[Device] = []
        self._next_peer = 2
        self._subs: tuple[_Subscription, ...] = ()
        self._unwatch_atlas: Callable[[], None] | None = None
        self._tracing = False
        self._unmerge: list[Callable[[], None]] = []  # stops the devices' merge observers while tracing

    # -- users and devices ---------------------------------------------------------------------
    def add_user(self, owner_id: str, process: int | None = None) -> _User:
        with self.lock:
            if owner_id in self.users:
                raise ValueError(f"owner_id: {owner_id!r} is already a user of this app")
            user = self.users[owner_id] = _User(owner_id, len(self.users) if process is None else process)
            return user

    def add_device(self, owner_id: str) -> Device:
        """Another device (peer) of `owner_id` (a user of the app: added if new)."""
        with self.lock:
            user = self.users.get(owner_id) or self.add_user(owner_id)
            p = self.params
            device = Device(self.env, self.server, self._next_peer, owner_id, self.rng, p.upload_latency_s,
                            int(p.clock_skew_ms), self.tree)
            self._next_peer += 1
            self.devices.append(device)
            user.devices.append(device)
            device.ack_listeners.append(functools.partial(self._on_ack, user))
            if self._tracing:
                self._unmerge.append(device.observe_merge(self._on_trace))
            return device

    def close(self) -> None:
        """Let the model go now, for a world nobody uses again (a fleet's, after its run): its
        parts refer to each other (a device to the server, the server's ports to the devices, the
        translator and the delivery to them all), so without this only a full collection frees it,
        and that traverses every object the model holds (13% of a 2,000-user fleet's time). With
        the references between the parts dropped, reference counting frees the model as it goes."""
        with self.lock:
            parts: list[Any] = [*self.devices, *self.users.values(), self.server, self.translator, self.control,
                                self.collection, self.delivery, self.env]
            self.devices, self.users, self._subs, self._unmerge = [], {}, (), []
            self._unwatch_atlas = None
            for part in parts:
                names = getattr(type(part), "__mypyc_attrs__", None)  # a mypyc-compiled class's fields
                if names is None:
                    vars(part).clear()
                    continue
                for name in names:  # (no __dict__ but its own: those listed in its `__deletable__` go)
                    if name == "__dict__":
                        vars(part).clear()
                    else:
                        with contextlib.suppress(AttributeError):  # not deletable, or not set
                            delattr(part, name)

    # -- time ----------------------------------------------------------------------------------
    def now(self) -> float:
        """The world's time: the model's in virtual time, the wall clock's in real time (where the
        model catches up on the next wait or operation)."""
        return self.wall_now() if self.realtime else float(self.env.now)

    def wait_until(self, t: float) -> None:
        """Run the model to time `t`. In virtual time the collector is paused meanwhile (the model
        makes no cyclic garbage while it runs, and millions of live dicts would be rescanned for
        nothing). In real time the wait sleeps outside the lock and moves the model in slices, so
        other threads (a menu's Print info, a panel's Deploy) act while a run waits."""
        if not math.isfinite(t):
            raise ValueError(f"t: must be a finite time in seconds, got {t!r}")
        if not self.realtime:
            with self.lock:
                if t > self.env.now:
                    if gc.isenabled():
                        with relaxed_gc(pause=True):
                            self.delivery.run_until(t)
                    else:  # paused already (a fleet, `uninterrupted`): a driver waits once per step
                        self.delivery.run_until(t)
            return
        while True:
            with self.lock:
                now = self.env.now
                if now >= t:
                    return
            target = min(t, now + _REALTIME_SLICE_S)
            delay = target - self.wall_now()
            if delay > 0:
                time.sleep(delay)
            with self.lock:
                if target > self.env.now:
                    self.env.run(until=target)  # due by now: runs without sleeping

    @contextlib.contextmanager
    def uninterrupted(self) -> Iterator[None]:
        """Hold the collector paused across a script that drives a virtual-time world, its
        operations and its waits alike (a benchmark's, a fleet's): between two waits it would
        otherwise rescan everything the waits made. A real-time world is left as it is."""
        if self.realtime:
            yield
            return
        with relaxed_gc(pause=True):
            yield

    def wall_now(self) -> float:
        """Seconds of wall-clock time since the world started (the model's time in real time)."""
        env = self.env
        return time.monotonic() - env.real_start if isinstance(env, simpy.rt.RealtimeEnvironment) else float(env.now)

    def catch_up(self) -> None:
        """In real time, let the model run up to the wall clock (before any operation or read)."""
        if self.realtime:
            self.wait_until(self.wall_now())

    def settled(self) -> bool:
        """Nothing left to sync: every device idle, translation not halted, Atlas caught up."""
        return self.translator.caught_up and all(d.idle for d in self.devices)

    def settle(self, step_s: float = STARTUP_SETTLE_S, bound_s: float = 3600.0) -> None:
        """Run until settled (a round trip per prefilled note takes a while), at most `bound_s`."""
        end = self.env.now + bound_s
        while not self.settled() and self.env.now < end:
            self.wait_until(min(end, self.env.now + step_s))

    # -- the users' operations -------------------------------------------------------------------
    def write(self, user: _User, device: Device, text: str) -> str:
        """`user` appends a note to their root on `device`: an `add` invoked now, acknowledged later."""
        with self.lock:
            self.catch_up()
            if device.root_id() is None:
                device.create_root()
            pk = device.add_to_root(text)
            user.pending.add(pk)
            self._emit(Op(self.env.now, user.process, "invoke", "add", pk), user.process)
            return pk

    def reset(self, user: _User, device: Device) -> int:
        """Delete `user`'s nodes (only theirs) from `device`: the original tool's Reset."""
        with self.lock:
            self.catch_up()
            self._emit(Op(self.env.now, user.process, "invoke", "reset", None), user.process)
            count = device.erase_owned()
            self._emit(Op(self.env.now, user.process, "ok", "reset", count), user.process)
            return count

    # -- the fault -----------------------------------------------------------------------------
    def deploy(self, field: str, bson_type: str) -> DeployResult:
        """Deploy an optional field; the deploy and what the control plane does are nemesis records."""
        with self.lock:
            self.catch_up()
            value = {"field": field, "bson_type": bson_type}
            self._emit(Nemesis(self.env.now, "invoke", "deploy", value))
            try:
                result = self.control.deploy_schema_change(field, bson_type)
            except Exception as exc:
                self._emit(Nemesis(self.env.now, "fail", "deploy",
                                   {**value, "error": _first_line(exc)}))
                raise
            self._emit(Nemesis(self.env.now, "ok" if result.status == "successful" else "fail", "deploy",
                               {**value, "status": result.status}))
            return result

    # -- the history stream ------------------------------------------------------------------------
    def history(self, listener: Listener, *, processes: frozenset[int] | None = None, atlas: bool = True,
                trace: bool = True, baseline: bool = True,
                batch: Callable[[list[Record]], None] | None = None) -> Callable[[], None]:
        """Follow the world: ops, nemesis and device events of the users whose processes are in
        `processes` (None: all), Atlas's events of those users (`atlas`), the merge's trace
        (`trace`). `baseline`: first their current views and any halt under way. `batch`: called
        instead of `listener` with the events of one device notification at once, in order (a
        recorder appends them under one lock: a fleet records millions)."""
        if batch is not None and not callable(batch):
            raise ValueError(f"batch: must be callable, got {type(batch).__name__}")
        sub = _Subscription(listener, processes, atlas, trace, batch)
        with self.lock:
            self.catch_up()
            if baseline:
                for record in self._baseline(sub):
                    listener(record)
            self._subs = (*self._subs, sub)
            self._hook()

        def unsubscribe() -> None:
            with self.lock:
                self._subs = tuple(s for s in self._subs if s is not sub)
                self._hook()

        return unsubscribe

    def _baseline(self, sub: _Subscription) -> list[Record]:
        now = self.env.now
        out: list[Record] = []
        halt = self.translator.halt
        if halt is not None:  # a deploy before this listener came: its halt is still under way
            since, value = halt
            out.append(Nemesis(now, "info", "halt",
                               {**value, "before_run": True, "halted_for_s": round(now - since, 6)}))
        for user in self.users.values():
            if not sub.wants(user.process) or not user.devices:
                continue
            device = user.devices[0]
            out += self._tag(baseline_events(now, "device", device.visible_children(device.root_id()),
                                             device.owned_ids()), user)
            if sub.atlas:
                _root, children, docs = self._atlas_state(user.owner_id)
                # sorted: the same order in every process (a set's follows the string hash's seed)
                out += self._tag(baseline_events(now, "atlas", children, sorted(docs)), user)
        return out

    def _hook(self) -> None:
        """Attach the model's listeners that somebody needs, detach the rest (a device that nobody
        watches takes its downloads in bulk; a server nobody traces builds no trace records)."""
        tracing = any(s.trace for s in self._subs)
        if tracing != self._tracing:
            self._tracing = tracing
            if tracing:
                self.server.trace_listeners.append(self._on_trace)
                self._unmerge = [d.observe_merge(self._on_trace) for d in self.devices]
            else:
                self.server.trace_listeners.remove(self._on_trace)
                for stop in self._unmerge:
                    stop()
                self._unmerge = []
        for user in self.users.values():
            self._observe_device(user, any(s.wants(user.process) for s in self._subs))
        watched = {user.owner_id for user in self.users.values()
                   if any(s.atlas and s.wants(user.process) for s in self._subs)}
        for user in self.users.values():
            if user.owner_id in watched and user.atlas is None:
                user.atlas = self._atlas_state(user.owner_id)
            elif user.owner_id not in watched:
                user.atlas = None
        if watched and self._unwatch_atlas is None:
            self._unwatch_atlas = self.collection.watch(self._on_atlas_change)
        elif not watched and self._unwatch_atlas is not None:
            self._unwatch_atlas()
            self._unwatch_atlas = None

    def _emit(self, record: Record, process: int | None = None, atlas: bool = False, trace: bool = False) -> None:
        for sub in self._subs:  # (`sub.wants(process)` inlined: every record of a fleet comes here)
            if (process is None or sub.processes is None or process in sub.processes) \
                    and (not atlas or sub.atlas) and (not trace or sub.trace):
                sub.listener(record)

    def _observe_device(self, user: _User, wanted: bool) -> None:
        """The user's first device is the one they look at: while someone follows the user, its
        listener notifications become events (a device nobody watches takes downloads in bulk)."""
        if not user.devices:
            return
        device = user.devices[0]
        if wanted and user.unobserve is None:
            user.unobserve = device.observe(lambda note: self._on_device_note(user, note))
        elif not wanted and user.unobserve is not None:
            user.unobserve()
            user.unobserve = None

    def _on_device_note(self, user: _User, note: Notification) -> None:
        events = self._tag(events_of(note), user)
        process = user.process
        subs = self._subs
        if not any(sub.batch is not None for sub in subs):  # each event to every listener in turn (`_emit`)
            for event in events:
                self._emit(event, process)
            return
        for sub in subs:  # a subscription with a batch listener gets the notification's events in one call
            if sub.processes is None or process in sub.processes:
                if sub.batch is not None:
                    sub.batch(list(events))  # (its own list: a listener may keep it)
                else:
                    for event in events:
                        sub.listener(event)

    def _on_ack(self, user: _User, pk: str, t: float) -> None:
        if pk in user.pending:
            user.pending.discard(pk)
            self._emit(Op(t, user.process, "ok", "add", pk), user.process)

    def _on_trace(self, record: dict[str, Any]) -> None:
        fields = {k: v for k, v in record.items() if k != "time"}
        self._emit(Trace(record.get("time", self.env.now), fields), trace=True)

    def _on_nemesis(self, f: str, value: Any) -> None:
        self._emit(Nemesis(self.env.now, "info", f, value))

    def _tag(self, events: list[Event], user: _User) -> list[Event]:
        """`events` (new ones, each with its own fields dict: `events_of`, `baseline_events`) with
        their user's process number, in a fleet."""
        if self.tag_users:
            process = user.process
            for e in events:
                e.fields["user"] = process  # type: ignore[index]
        return events

    def _atlas_state(self, owner_id: str) -> tuple[str | None, list[str], set[str]]:
        docs = list(self.collection.find({"owner_id": owner_id}))
        root = next((d for d in docs if d.get("isRoot")), None)
        return (None if root is None else root["_id"]), self._atlas_children(root, owner_id), {d["_id"] for d in docs}

    def _atlas_children(self, root: dict[str, Any] | None, owner_id: str) -> list[str]:
        """The root's children as Atlas holds them (the array, or the `parent` pointers)."""
        if root is None:
            return []
        if self.tree == "parent":
            return [d["_id"] for d in self.collection.find({"owner_id": owner_id, "parent": root["_id"]})]
        return list(root.get("children", []))

    def _on_atlas_change(self, change: dict[str, Any]) -> None:
        _id, doc = change["documentKey"]["_id"], change["fullDocument"]
        owner = doc.get("owner_id") if doc is not None else next(
            (u.owner_id for u in self.users.values() if u.atlas is not None and _id in u.atlas[2]), None)
        user = self.users.get(owner) if owner is not None else None
        if user is None or user.atlas is None:
            return  # another owner's document, or a user nobody watches in Atlas
        root_id, children, docs = user.atlas
        new_docs = set(docs)
        if doc is None:
            new_docs.discard(_id)
        else:
            new_docs.add(_id)
        if doc is not None and doc.get("isRoot"):
            root_id = _id
        if self.tree == "parent":
            new_children = self._atlas_children(self.collection.get(root_id) if root_id else None, user.owner_id)
        elif _id == root_id:
            new_children = list(doc.get("children", [])) if doc is not None else []
        else:
            new_children = children
        user.atlas = (root_id, new_children, new_docs)
        note = notification(self.env.now, "atlas", (children, docs), (new_children, new_docs))
        for event in self._tag(events_of(note), user):
            self._emit(event, user.process, atlas=True)


def _first_line(exc: Exception) -> str:
    """What a failed deploy's record says of its error: the first line, at most 200 characters."""
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


#: What an `EmulatedSession` shows of its world, by the same names.
WORLD_PARTS = frozenset({"mode", "encoding", "realtime", "tree", "reimport", "params", "env", "rng", "server",
                         "translator", "collection", "control", "devices", "delivery"})


class EmulatedSession(Session):
    """One user of an emulated app, connected through one device (more can be added).

    `EmulatedSession(...)` makes a new app for its user and starts up as the original tool
    does (a root, any prefill, synced); `EmulatedSession.join(world, owner_id, process)` adds a
    user to an app that exists (a fleet's)."""

    backend = "emulator"
    server_trace = True

    def __init__(self, mode: str = "production", encoding: str = "replace", seed: int = 0, realtime: bool = False,
                 user_id: str | None = None, tree: str = "children", reimport: str = "all", **params: Any) -> None:
        _checks.session_choices(mode=mode, encoding=encoding, tree=tree, reimport=reimport, seed=seed,
                                realtime=realtime)
        rng = random.Random(seed)
        user_id = user_id or uuid.UUID(int=rng.getrandbits(128)).hex[:24]
        world = EmulatedWorld(mode, encoding, rng=rng, params=EmulatorParams.from_kwargs(**params),
                              realtime=realtime, tree=tree, reimport=reimport)
        self._attach(world, user_id, 0, seed)
        self.device.create_root()
        for i in range(int(self.params.prefill)):
            self.device.add_to_root(f"prefill {i + 1}")
        world.wait_until(STARTUP_SETTLE_S)
        world.settle()

    @classmethod
    def join(cls, world: EmulatedWorld, owner_id: str, process: int) -> EmulatedSession:
        """A new user of `world`, with one device and nothing written yet."""
        session = cls.__new__(cls)
        session._attach(world, owner_id, process, None)
        return session

    def _attach(self, world: EmulatedWorld, owner_id: str, process: int, seed: int | None) -> None:
        self.world = world
        self.seed = seed
        self.user_id = owner_id
        self.user = world.add_user(owner_id, process)
        self.device = world.add_device(owner_id)

    # -- the model's parts, for tests, notebooks and benchmarks that look inside -------------------
    def __getattr__(self, name: str) -> Any:
        """The world's parts and settings (`WORLD_PARTS`), read through the session."""
        world = self.__dict__.get("world")
        if world is None or name not in WORLD_PARTS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(world, name)

    def add_device(self, owner_id: str | None = None) -> Device:
        """Another device of this user, or of `owner_id`: for multi-device scenarios."""
        return self.world.add_device(owner_id or self.user_id)

    def settled(self) -> bool:
        return self.world.settled()

    def schema_fields(self) -> set[str]:
        """The field names of the app's current `Node` schema."""
        with self.world.lock:
            return set(self.world.control.schema.get("properties", {}))

    def pending_halt(self) -> tuple[float, float | None] | None:
        """(halted since, re-import due at) of a production deploy still under way, else None."""
        with self.world.lock:
            return self.world.translator.pending()

    # -- Session -------------------------------------------------------------------------------
    def now(self) -> float:
        return self.world.now()

    def wait_until(self, t: float) -> None:
        self.world.wait_until(t)

    def root(self) -> dict[str, Any]:
        with self.world.lock:
            self.world.catch_up()
            root_id = self.device.root_id()
            if root_id is None:
                root_id = self.device.create_root()
            return self._node(root_id)

    def add_to_root(self, text: str) -> str:
        if not isinstance(text, str):
            raise ValueError(f"text: must be a string, got {text!r}")
        return self.world.write(self.user, self.device, text)

    def reset(self) -> int:
        return self.world.reset(self.user, self.device)

    def deploy_schema_change(self, field: str, bson_type: str) -> DeployResult:
        return self.world.deploy(field, bson_type)

    def view(self, observer: str = "device") -> View:
        with self.world.lock:
            self.world.catch_up()
            if observer == "device":
                root_id = self.device.root_id()
                root = None if root_id is None else self._node(root_id)
                children = [self._node(c) for c in self.device.visible_children(root_id)] if root_id else []
                return View("device", self.user_id, root, children, [self._node(pk) for pk in self.device.owned_ids()])
            if observer == "atlas":
                docs = list(self.world.collection.find({"owner_id": self.user_id}))
                root = next((d for d in docs if d.get("isRoot")), None)
                by_id = {d["_id"]: d for d in docs}
                ids = self.world._atlas_children(root, self.user_id)
                return View("atlas", self.user_id, root, [by_id[c] for c in ids if c in by_id], docs, links=len(ids))
        raise ValueError(f"observer: must be 'device' or 'atlas', got {observer!r}")

    def _node(self, pk: str) -> dict[str, Any]:
        obj = copy.deepcopy(self.device.table[pk])
        obj["children"] = self.device.visible_children(pk)
        return obj

    def history(self, listener: Listener) -> Callable[[], None]:
        return self.world.history(listener, processes=frozenset({self.user.process}))

    def describe(self) -> dict[str, Any]:
        """The session's part of a run's metadata, with every model parameter."""
        return {**super().describe(), "reimport": self.reimport, "tree": self.tree, "seed": self.seed,
                "params": self.params.as_dict()}


