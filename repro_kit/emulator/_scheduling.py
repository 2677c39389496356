"""The model's delivery: SimPy's heap written directly, downloads taken in bulk, and a relaxed GC.

Only the world's wiring (`session.py`) uses this module; the server, the devices and the
translator see a `delivery.Delivery` and nothing of SimPy's internals.

A run of many devices makes a download per device per changeset (a million for 100
devices x 100 writes). `ModelDelivery` pushes a small slotted object (`TimedCall`) onto
SimPy's heap, with the key `Environment.schedule` would give (time, NORMAL, next event id),
so the order of events, and every outcome, is unchanged; it only skips a Timeout's and a
closure's construction. On a `ModelEnvironment` a device's port keeps other peers'
downloads in an inbox with the key each event would have had, and the device applies them
in that order before it next acts (its own acknowledgements are still events, which apply
what is due first) and whenever a run returns (`ModelDelivery.flush`), so nobody ever reads
a device behind its time: the same outcome as one event per download, without the events.
SimPy's heap entries are (time, priority, event id, event), the one internal this relies on,
checked by `has_heap`.

The model keeps millions of small dicts alive and frees almost none of them while it
runs, so CPython's cyclic collector would rescan them again and again for nothing:
`relaxed_gc` raises the first generation's threshold while the model runs, and restores
the caller's setting afterwards (nested and threaded uses share one refcount). Where the
body is a virtual-time run (computation that never sleeps or waits on a person),
`relaxed_gc(pause=True)` turns automatic collection off for it: the model makes no cyclic
garbage while it runs (a 50-device run leaves a few hundred collectable objects, the
session's own structure aside), and the scans are a fifth of a 100-device run's time.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import heapq
import threading
from collections.abc import Callable, Iterator
from typing import Any

import simpy
import simpy.rt
from simpy.events import NORMAL, URGENT

from repro_kit.emulator.delivery import Delivery, Port, Receive

__all__ = ["ModelDelivery", "ModelEnvironment", "NORMAL", "TimedCall", "INBOX_LIMIT", "heap_parts", "fired_before",
           "has_heap", "relaxed_gc", "run_until"]

#: Inbox length past which a port applies what is already due (a device that neither writes nor is read).
INBOX_LIMIT = 1024


class TimedCall:
    """What SimPy's `step` needs of an event: `callbacks` and `_ok`."""

    __slots__ = ("args", "callbacks", "fn")
    _ok = True

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.callbacks: tuple[Callable[[TimedCall], None], ...] | None = _FIRE  # SimPy's `step` sets it None


def _fire(event: TimedCall) -> None:
    event.fn(*event.args)


_FIRE = (_fire,)


def has_heap(env: Any) -> bool:
    """Whether `env` has the SimPy internals the direct paths below use (its heap, event ids, clock)."""
    return isinstance(getattr(env, "_queue", None), list) and hasattr(env, "_eid") and hasattr(env, "_now")


def heap_parts(env: Any) -> tuple[list[Any], Iterator[int]]:
    """(heap, event-id counter) of `env`: a call pushed as (`env.now + delay`, NORMAL, next id,
    `TimedCall`) fires where `Environment.schedule` would have put it."""
    if not has_heap(env):
        raise TypeError(f"{type(env).__name__}: not a SimPy environment with a heap")
    return env._queue, env._eid


class ModelEnvironment(simpy.Environment):
    """A virtual-time SimPy environment that remembers the heap entry of the event it fired
    last (`fired_before`), however it is run (`run_until`, `run` or `step`), and has its
    delivery apply what is due whenever a run or step returns."""

    # mypyc: fields `EmulatedWorld.close` deletes (a compiled class has no __dict__ to clear)
    __deletable__ = ("_rk_fired", "_rk_flush")

    _rk_fired: tuple[Any, ...] = (float("-inf"),)
    _rk_flush: Callable[[], None] | None = None

    def step(self) -> None:
        queue = self._queue
        if queue:
            self._rk_fired = queue[0]  # the entry step() pops: the heap's least
        try:
            super().step()
        finally:
            if self._rk_flush is not None:
                self._rk_flush()


def fired_before(env: ModelEnvironment) -> tuple[Any, ...]:
    """A bound on heap keys: every event whose key is below it has fired (the event firing
    now, or the last one fired; nothing before the first)."""
    return env._rk_fired


class _ModelPort(Port):
    """A port of the model's delivery. On a `ModelEnvironment` other peers' downloads wait in
    `inbox` with their heap keys until the device acts, a run returns, or the inbox grows past
    INBOX_LIMIT; the device's acknowledgements are events, which apply what is due first.
    Elsewhere (`inbox` None) every download is an event on the heap at its exact time."""

    __slots__ = ("inbox",)

    def __init__(self, delivery: ModelDelivery, receive: Receive, peer: int, owner: str, hold: bool) -> None:
        super().__init__(delivery, receive, peer, owner)
        self.inbox: collections.deque[tuple[Any, ...]] | None = collections.deque() if hold else None

    def deliver(self, *args: Any) -> None:
        """An acknowledgement's event: what arrived before it first, then it."""
        if self.inbox:
            self.drain()
        self.receive(*args)

    def drain(self) -> None:
        """Apply the downloads due before the event now firing (or the end of the last run):
        those a run with one event per download would have applied by now. (Receiving never
        drains a port again: its device's reads change nothing and it has no observers.)"""
        inbox = self.inbox
        if inbox:
            bound = self.delivery.env._rk_fired  # type: ignore[attr-defined]
            receive = self.receive
            while inbox and inbox[0] < bound:
                _at, _priority, _eid, version, origin, changeset, note = inbox.popleft()
                receive(version, origin, changeset, note)

    def undefer(self) -> None:
        """What is due is applied; the rest of the inbox is scheduled, each at the position it
        was due at; from now on every download is its own event."""
        inbox = self.inbox
        if inbox is None:
            return
        self.drain()
        self.inbox = None
        delivery: ModelDelivery = self.delivery  # type: ignore[assignment]
        delivery.release(self)
        for t, priority, eid, *args in inbox:
            heapq.heappush(delivery.queue, (t, priority, eid, TimedCall(self.receive, tuple(args))))


class ModelDelivery(Delivery):
    """The world's delivery on an environment with SimPy's heap: calls and downloads pushed
    with `Environment.schedule`'s keys; on a `ModelEnvironment`, downloads held in ports."""

    # mypyc: fields `EmulatedWorld.close` deletes (a compiled class has no __dict__ to clear)
    __deletable__ = ("queue", "eids", "hold", "held", "_held_most")

    def __init__(self, env: simpy.Environment) -> None:
        super().__init__(env)
        self.queue, self.eids = heap_parts(env)
        self.hold = isinstance(env, ModelEnvironment)
        self.held: dict[_ModelPort, None] = {}  # the ports holding downloads, in connection order
        self._held_most = 0  # the most ports `held` has had since it was last made afresh
        if isinstance(env, ModelEnvironment):
            env._rk_flush = self.flush

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self.env.schedule(TimedCall(fn, args), NORMAL, delay)  # type: ignore[arg-type]

    def port(self, receive: Receive, peer: int, owner: str) -> _ModelPort:
        port = _ModelPort(self, receive, peer, owner, self.hold)
        if self.hold:
            self.held[port] = None
            self._held_most = max(self._held_most, len(self.held))
        return port

    def send(self, targets: list[_ModelPort], version: int, origin: int,  # type: ignore[override]
             views: dict[str, dict[str, Any]], changeset: dict[str, Any], note: dict[str, Any] | None,
             latency: tuple[float, float, Any]) -> None:
        """`Delivery.send`, each port's `post` inlined: one loop for the downloads of a changeset
        (a write of an owner with 100 devices is 100 of them), each a heap or an inbox entry."""
        queue, eids, push = self.queue, self.eids, heapq.heappush
        for port, (at, _delay) in zip(targets, self.times(targets, latency)):
            if port.peer == origin:  # the acknowledgement: always an event, which applies what is due first
                args = (version, origin, changeset, note)
                push(queue, (at, NORMAL, next(eids), TimedCall(port.deliver, args)))
                continue
            inbox = port.inbox
            if inbox is None:
                call = TimedCall(port.receive, (version, origin, views[port.owner], note))
                push(queue, (at, NORMAL, next(eids), call))
                continue
            # keys rise along a port (time never earlier, ids increasing): the inbox is in key order
            inbox.append((at, NORMAL, next(eids), version, origin, views[port.owner], note))
            if len(inbox) > INBOX_LIMIT:
                port.drain()

    def release(self, port: _ModelPort) -> None:
        """`port` holds nothing from now on. `held` is made afresh once it has lost half its ports:
        a dict keeps the slots of what it lost, and `flush` iterates it after every run (10,000
        observed devices left 10,000 empty slots to walk on each of a fleet's 200,000 waits)."""
        held = self.held
        del held[port]
        if len(held) <= self._held_most // 2:
            self.held = dict(held)
            self._held_most = len(self.held)

    def flush(self) -> None:
        """Apply every held download that is due: what a read after the run must see."""
        bound = self.env._rk_fired  # type: ignore[attr-defined]
        for port in self.held:  # each port's `drain`, inlined: a run's end may find a download in each
            inbox = port.inbox
            if inbox and inbox[0] < bound:
                receive = port.receive
                while inbox and inbox[0] < bound:
                    _at, _priority, _eid, version, origin, changeset, note = inbox.popleft()
                    receive(version, origin, changeset, note)

    def run_until(self, t: float) -> None:
        if not self.hold:
            run_until(self.env, t)
            return
        try:  # a ModelEnvironment: `run_until`'s checks hold (made when this delivery was), its flush is ours
            _run_inlined(self.env, t)
        finally:
            self.flush()


_GC_LOCK = threading.Lock()
_GC_DEPTH = 0
_GC_SAVED: tuple[int, int, int] | None = None
#: First-generation threshold while the model runs (CPython's default is 700).
RELAXED_THRESHOLD = 200_000


_PAUSE_DEPTH = 0
_PAUSED_WAS_ENABLED = True


@contextlib.contextmanager
def relaxed_gc(threshold: int = RELAXED_THRESHOLD, *, pause: bool = False) -> Iterator[None]:
    """Run the body with a high first-generation GC threshold; restore the previous one after.

    `pause=True`: no automatic collection at all during the body (for a virtual-time run;
    a collector the caller had disabled stays disabled after)."""
    global _GC_DEPTH, _GC_SAVED, _PAUSE_DEPTH, _PAUSED_WAS_ENABLED
    with _GC_LOCK:
        if _GC_DEPTH == 0:
            _GC_SAVED = gc.get_threshold()
            gc.set_threshold(max(threshold, _GC_SAVED[0]), *_GC_SAVED[1:])
        _GC_DEPTH += 1
        if pause:
            if _PAUSE_DEPTH == 0:
                _PAUSED_WAS_ENABLED = gc.isenabled()
                gc.disable()
            _PAUSE_DEPTH += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_DEPTH -= 1
            if _GC_DEPTH == 0 and _GC_SAVED is not None:
                gc.set_threshold(*_GC_SAVED)
            if pause:
                _PAUSE_DEPTH -= 1
                if _PAUSE_DEPTH == 0 and _PAUSED_WAS_ENABLED:
                    gc.enable()


def run_until(env: Any, at: float) -> None:
    """`env.run(until=at)` for a virtual-time environment, with SimPy's step inlined.

    The same heap, the same `until` event (URGENT, scheduled at `at`), the same order and
    the same failure handling as `Environment.run`; it only saves a method call and a
    try block per event, which a million deliveries notice. A real-time environment (it
    sleeps between events) and any SimPy without the expected internals use `env.run`.
    """
    if isinstance(env, simpy.rt.RealtimeEnvironment) or not has_heap(env):
        env.run(until=at)
        return
    try:
        _run_inlined(env, at)
    finally:
        flush = getattr(env, "_rk_flush", None)
        if flush is not None:
            flush()


def _run_inlined(env: Any, at: float) -> None:
    queue = env._queue
    if at <= env.now:
        raise ValueError(f"until (={at}) must be greater than the current simulation time")
    until = simpy.Event(env)
    until._ok = True
    until._value = None
    env.schedule(until, URGENT, at - env.now)
    pop = heapq.heappop
    while True:
        try:
            item = pop(queue)
        except IndexError:
            raise RuntimeError(f'No scheduled events left but "until" event was not triggered: {until}') from None
        now, _, _, event = item
        env._now = now
        env._rk_fired = item  # what `fired_before` reads (a plain Environment just gets the attribute)
        if type(event) is TimedCall:  # a timed call: no one else holds it, so no callbacks to swap or failure to check
            event.fn(*event.args)
            continue
        if event is until:
            return
        callbacks, event.callbacks = event.callbacks, None
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc
