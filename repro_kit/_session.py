"""The one interface both backends implement (the emulator and the live services).

Like an httpx transport, a backend answers a small set of calls and the kit builds the rest on
them: the driver, the checker, the menu, the panel and the notebooks talk to a `Session` and
never to a backend directly. A Session is the original tool's operations (root, add to root,
reset, deploy), a clock (`now`, `wait_until`), snapshots of the two views (`view`), and one
stream of everything that happens (`history`): ops, nemesis, events and the server's trace
(`repro_kit._history`). Nothing in it returns None for "this backend cannot": a backend that
cannot see something simply never emits it.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

from repro_kit import _checks
from repro_kit._history import Listener

__all__ = ["Info", "View", "Session", "AtlasView", "DeployResult", "OBSERVERS"]

#: The views a session shows: the user's device, and Atlas (a person refreshing the collection).
OBSERVERS = ("device", "atlas")


@dataclasses.dataclass(frozen=True)
class Info:
    """What the original tool's "Print info" shows."""

    user_id: str
    root_id: str | None
    nodes_total: int
    root_children: int


@dataclasses.dataclass(frozen=True)
class DeployResult:
    """Outcome of a schema deploy as the control plane reports it."""

    field: str
    bson_type: str
    status: str  # "successful" | "failed"
    deployment_id: str | None = None
    schema: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class View:
    """A snapshot of one view of the user's nodes: the root (None before it exists), its visible
    children in order, and every document of the user (reachable or not). Ids are strings."""

    observer: str
    user_id: str
    root: dict[str, Any] | None
    children: list[dict[str, Any]]
    documents: list[dict[str, Any]]
    links: int | None = None
    """How many entries the root's list holds, links to missing documents included, where the view
    keeps those (Atlas's array does; a device's list hides them): what "Print info" counts."""

    @property
    def nodes(self) -> list[dict[str, Any]]:
        """The original "Print nodes": the root first, then its children."""
        return [self.root, *self.children] if self.root is not None else []

    @property
    def info(self) -> Info:
        return Info(user_id=self.user_id, root_id=None if self.root is None else str(self.root["_id"]),
                    nodes_total=len(self.documents),
                    root_children=len(self.children) if self.links is None else self.links)


class AtlasView:
    """The Atlas side of a session, as the original tool's users checked it in the Atlas UI."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def nodes(self) -> list[dict[str, Any]]:
        """Every document of the session's owner."""
        return self._session.view("atlas").documents

    def root(self) -> dict[str, Any] | None:
        return self._session.view("atlas").root

    def info(self) -> Info:
        return self._session.view("atlas").info


class Session(abc.ABC):
    """A user's connection. Time is in seconds since the session started: virtual on the emulator
    unless `realtime`; `wait_until` is how every timed script lets time pass, so the same script
    runs in virtual time, in real time and against live services.

    `observers`: the views this backend can show, the user's own first (the live backend sees
    Atlas only). `server_trace`: whether `history` carries the sync server's trace (the live
    backend cannot see App Services' merge)."""

    backend: str
    mode: str
    encoding: str
    realtime: bool
    user_id: str
    observers: tuple[str, ...] = OBSERVERS
    server_trace: bool = False

    # -- the clock --------------------------------------------------------------------------
    @abc.abstractmethod
    def now(self) -> float: ...

    @abc.abstractmethod
    def wait_until(self, t: float) -> None:
        """Let time pass (and the system run) until session time `t`."""

    # -- the original tool's operations ----------------------------------------------------------
    @abc.abstractmethod
    def root(self) -> dict[str, Any]:
        """The user's root node (created on first use where the backend writes, as the original tool does)."""

    @abc.abstractmethod
    def add_to_root(self, text: str) -> str:
        """Create a node and append it to the root's children; returns its id."""

    @abc.abstractmethod
    def reset(self) -> int:
        """Delete this owner's nodes (only this owner's); returns how many."""

    @abc.abstractmethod
    def deploy_schema_change(self, field: str, bson_type: str) -> DeployResult: ...

    # -- what the views show, and what happens -------------------------------------------------------
    @abc.abstractmethod
    def view(self, observer: str = "device") -> View:
        """A snapshot of one of `observers`: "device" or "atlas"."""

    @abc.abstractmethod
    def history(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(record)` with every record from now on (`repro_kit._history`), after the
        views' current state as baseline events; returns the unsubscribe function."""

    def close(self) -> None:  # noqa: B027 - optional: a backend with nothing to release keeps this one
        """Release resources; the session is unusable afterwards."""

    # -- built on the above, once --------------------------------------------------------------------
    def wait(self, seconds: float) -> None:
        self.wait_until(self.now() + _checks.number("seconds", seconds, 0))

    def nodes(self) -> list[dict[str, Any]]:
        """The root first, then the root's visible children in order (the original "Print nodes")."""
        return self.view(self.observers[0]).nodes

    def all_nodes(self) -> list[dict[str, Any]]:
        """Every node document of the user, reachable from the root or not."""
        return self.view(self.observers[0]).documents

    def info(self) -> Info:
        return self.view(self.observers[0]).info

    @property
    def atlas(self) -> AtlasView:
        return AtlasView(self)

    def describe(self) -> dict[str, Any]:
        """What a run's metadata records about this session (never a secret)."""
        return {"backend": self.backend, "mode": self.mode, "encoding": self.encoding,
                "realtime": self.realtime, "user_id": self.user_id, "server_trace": self.server_trace,
                "observers": list(self.observers)}

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
