"""Scheduling helpers the emulator's hot paths share: a light timed call, heap keys, and a relaxed GC.

A run of many devices makes a delivery per device per changeset (a million for 100
devices x 100 writes). `call_later` pushes a small slotted object (`TimedCall`) onto
SimPy's queue through its public `Environment.schedule`, with the same priority and the
same event-id sequence a `Timeout` would take, so the order of events, and every
outcome, is unchanged; it only skips the Timeout's and a closure's construction. The
server's fan-out writes the same keys itself (`heap_parts`), and a device that keeps its
downloads in an inbox compares their keys with the entry fired last (`ModelEnvironment`,
`fired_before`): SimPy's heap entries are (time, priority, event id, event), the one
internal these rely on, checked by `has_heap` (without it they fall back to `schedule`
and one event per download).

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

import contextlib
import gc
import heapq
import threading
from collections.abc import Callable, Iterator
from typing import Any

import simpy
import simpy.rt
from simpy.events import NORMAL, URGENT

__all__ = ["ModelEnvironment", "NORMAL", "TimedCall", "call_later", "heap_parts", "push_at", "fired_before", "has_heap", "relaxed_gc", "run_until"]


class TimedCall:
    """What SimPy's `step` needs of an event: `callbacks` and `_ok`."""

    __slots__ = ("callbacks", "fn", "args")
    _ok = True

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.callbacks = _FIRE


def _fire(event: TimedCall) -> None:
    event.fn(*event.args)


_FIRE = (_fire,)


def call_later(env: Any, delay: float, fn: Callable[..., Any], *args: Any) -> None:
    """Call `fn(*args)` `delay` seconds from now, in the order a Timeout would fire."""
    env.schedule(TimedCall(fn, args), NORMAL, delay)


def has_heap(env: Any) -> bool:
    """Whether `env` has the SimPy internals the direct paths below use (its heap, event ids, clock)."""
    return isinstance(getattr(env, "_queue", None), list) and hasattr(env, "_eid") and hasattr(env, "_now")


def heap_parts(env: Any) -> tuple[list[Any], Iterator[int]] | None:
    """(heap, event-id counter) of `env`, for code that schedules many calls in a row straight
    onto SimPy's heap with the key `Environment.schedule` would give, (`env.now + delay`,
    NORMAL, next id) and a `TimedCall`, so the order is the same; None where the environment
    lacks those internals (use `call_later`)."""
    if not has_heap(env):
        return None
    return env._queue, env._eid


def push_at(env: Any, key: tuple[float, int, int], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Schedule `fn(*args)` at a heap key drawn earlier: it fires exactly where it would have."""
    heapq.heappush(env._queue, (key[0], key[1], key[2], TimedCall(fn, args)))


class ModelEnvironment(simpy.Environment):
    """A virtual-time SimPy environment that remembers the heap entry of the event it fired
    last (`fired_before`), however it is run: `run_until`, `run` or `step`. What lets a
    device take its downloads in bulk yet apply each exactly where its event would have
    fired (`Device._drain`)."""

    _rk_fired: tuple[Any, ...] = (float("-inf"),)

    def step(self) -> None:
        queue = self._queue
        if queue:
            self._rk_fired = queue[0]  # the entry step() pops: the heap's least
        super().step()


def fired_before(env: ModelEnvironment) -> tuple[Any, ...]:
    """A bound on heap keys: every event whose key is below it has fired (the event firing
    now, or the last one fired; nothing before the first)."""
    return env._rk_fired


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
