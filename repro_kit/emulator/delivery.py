"""How the emulator's parts reach each other in time: one delivery object per world.

The server, the devices and the translator never schedule anything themselves: they ask
the world's `Delivery` to call something later (`call_later`) and to hand a changeset to
devices (`send`, through each device's `Port`). This module's `Delivery` does it with
SimPy's public API, one event per call and per download, for any environment (the one a
test builds by hand gets). The world's wiring (`session.py`) gives its parts the model's
faster delivery instead (`ModelDelivery`, beside the model's run loop): the same order of
events and the same outcomes, with fewer objects per download.

A port keeps its device's downloads in order: a download is never due before the one sent
before it to the same port, whatever the latencies drawn.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any

import simpy

__all__ = ["Delivery", "Port", "Receive"]

#: What a port calls with each download: (server version, origin peer, changeset, note).
Receive = Callable[[int, int, dict[str, Any], "dict[str, Any] | None"], None]


class _Call:
    """The callback of a timed call: `fn(*args)` when its event fires."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args

    def __call__(self, _event: Any) -> None:
        self.fn(*self.args)


class Port:
    """One device's mailbox: its downloads, each delivered at its time, in the order sent."""

    __slots__ = ("delivery", "last_at", "outbox", "owner", "peer", "receive")

    #: Downloads held for a device to take in bulk (the model's ports only; None: none held).
    inbox: collections.deque[tuple[Any, ...]] | None = None

    def __init__(self, delivery: Delivery, receive: Receive, peer: int, owner: str) -> None:
        self.delivery = delivery
        self.receive = receive
        self.peer = peer
        self.owner = owner  # whose objects the device sees: what `send`'s views are keyed by
        self.last_at = 0.0  # the time of the port's latest download: the next is never earlier
        self.outbox: collections.deque[tuple[Any, ...]] = collections.deque()

    def post(self, at: float, delay: float, args: tuple[Any, ...]) -> None:
        """Deliver `receive(*args)` at time `at`, `delay` from now (in order with what was posted earlier)."""
        self.outbox.append(args)
        self.delivery.call_later(delay, self._next)

    def _next(self) -> None:
        self.receive(*self.outbox.popleft())

    def drain(self) -> None:
        """Apply what is due of the held downloads (a plain port holds none)."""

    def undefer(self) -> None:
        """From now on every download is its own event (a plain port's always are)."""


class Delivery:
    """Timed calls and downloads on a SimPy environment, through its public API."""

    # mypyc: fields `EmulatedWorld.close` deletes (a compiled class has no __dict__ to clear)
    __deletable__ = ("env",)

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env

    @property
    def now(self) -> float:
        return float(self.env.now)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Call `fn(*args)` `delay` seconds from now, in the order a Timeout made now would fire."""
        self.env.timeout(delay).callbacks.append(_Call(fn, args))

    def port(self, receive: Receive, peer: int, owner: str) -> Port:
        """A new device's port: `receive` is called with each of its downloads."""
        return Port(self, receive, peer, owner)

    def send(self, targets: list[Port], version: int, origin: int, views: dict[str, dict[str, Any]],
             changeset: dict[str, Any], note: dict[str, Any] | None, latency: tuple[float, float, Any]) -> None:
        """`changeset` (server version `version`, from peer `origin`) to each port of `targets` in
        turn: to its origin unfiltered (the acknowledgement), to the others as `views[port.owner]`
        shows it, each at its time from `times`."""
        for port, (at, delay) in zip(targets, self.times(targets, latency)):
            port.post(at, delay, (version, origin, changeset if port.peer == origin else views[port.owner], note))

    def times(self, targets: Sequence[Port], latency: tuple[float, float, Any]) -> list[tuple[float, float]]:
        """(time, delay from now) of a download to each port of `targets`, with a latency drawn
        in that order, `base * (1 - jitter + 2 * jitter * random())` from `latency` = (base,
        jitter, random), and never before the port's last download (each port's `last_at` moves)."""
        now = self.env.now
        base, jitter, random = latency
        out = []
        for port in targets:
            delay = base * (1 - jitter + 2 * jitter * random()) if jitter and base else base
            # The time the delay gives, raised to the port's last one so a download never
            # overtakes an earlier one to the same device (a device would then rebase a download
            # past its own in-flight changeset, which the download already held).
            at = now + delay
            if at < port.last_at:
                at = port.last_at
                delay = at - now
            port.last_at = at
            out.append((at, delay))
        return out

    def flush(self) -> None:
        """Apply every held download that is due (nothing is held here)."""

    def run_until(self, t: float) -> None:
        """Run the model to time `t`."""
        self.env.run(until=t)
