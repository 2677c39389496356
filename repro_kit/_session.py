"""The one interface both backends implement (the emulator and the live services).

Like httpx's transports: writer, watcher, CLI, widgets and notebooks talk to a
`Session` and never to a backend directly, so a backend is swappable.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, Callable

__all__ = ["Info", "Session", "AtlasView", "Notification", "DeployResult"]


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
class Notification:
    """One change notification from an observed view (device listeners or Atlas change feed).

    `entered`/`left`: node ids that entered or left the root's visible children;
    `inserted`/`deleted`: node documents that appeared or disappeared;
    `batch`: for a download of server-origin changes (a translator re-import), how many
    documents it touched, else None.
    """

    time: float
    observer: str  # "device" | "atlas"
    root_children: int
    nodes_total: int
    entered: tuple[str, ...] = ()
    left: tuple[str, ...] = ()
    inserted: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    batch: int | None = None


Listener = Callable[[Notification], None]


class AtlasView(abc.ABC):
    """The Atlas side of the same data: what a person refreshing the Node collection sees."""

    @abc.abstractmethod
    def nodes(self) -> list[dict[str, Any]]:
        """Every document of the session's owner (ids as strings)."""

    @abc.abstractmethod
    def info(self) -> Info: ...

    @abc.abstractmethod
    def root(self) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every change of the owner's documents; returns an unsubscribe function."""


class Session(abc.ABC):
    """A user's connection: the original CLI tool's operations plus a clock.

    Time is in seconds since the session started. On the emulator it is virtual unless
    `realtime=True`; `wait_until` is how every timed script lets time pass, so the same
    script runs in virtual time, in real time, and against live services.
    """

    backend: str
    mode: str
    encoding: str
    realtime: bool
    atlas: AtlasView

    @abc.abstractmethod
    def now(self) -> float: ...

    @abc.abstractmethod
    def wait_until(self, t: float) -> None:
        """Let time pass (and the system run) until session time `t`."""

    def wait(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds < 0:
            raise ValueError(f"seconds: must be a finite number >= 0, got {seconds!r}")
        self.wait_until(self.now() + seconds)

    def catch_up(self) -> None:
        """Let the backend's clock reach the wall clock (real-time emulator); a no-op elsewhere."""

    def schema_fields(self) -> set[str] | None:
        """The field names of the app's current schema, where the backend knows them."""
        return None

    @abc.abstractmethod
    def root(self) -> dict[str, Any]:
        """The user's root node (created on first use, as the original tool does on start-up)."""

    @abc.abstractmethod
    def add_to_root(self, text: str) -> str:
        """Create a node and append it to the root's children; returns its id."""

    @abc.abstractmethod
    def nodes(self) -> list[dict[str, Any]]:
        """The root first, then the root's visible children in order (the original "Print nodes")."""

    def all_nodes(self) -> list[dict[str, Any]]:
        """Every node document of the user, reachable from the root or not."""
        return self.nodes()

    @abc.abstractmethod
    def info(self) -> Info: ...

    @abc.abstractmethod
    def reset(self) -> int:
        """Delete this owner's nodes (only this owner's); returns how many."""

    @abc.abstractmethod
    def deploy_schema_change(self, field: str, bson_type: str) -> DeployResult: ...

    @abc.abstractmethod
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Device-side change notifications (the original tool's collection and root listeners)."""

    def subscribe_acks(self, listener: Callable[[str, float], None]) -> Callable[[], None] | None:
        """Call `listener(node_id, time)` when the server acknowledges a node's creation.

        Returns an unsubscribe function, or None where the backend cannot see acks
        (then callers fall back to `is_acknowledged`)."""
        return None

    def subscribe_trace(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None] | None:
        """Call `listener(record)` with the sync server's evidence as it happens: every
        integrated changeset and every instruction the merge discarded or rewrote, with the
        rule's name (the format is in the README, "The run directory").

        Returns an unsubscribe function, or None where the backend cannot see the server
        (the live backend: App Services does not expose its merge)."""
        return None

    def is_acknowledged(self, node_id: str) -> bool:
        """Has the server integrated the write that created `node_id`? Backends that cannot tell return True."""
        return True

    def nemesis_log(self) -> list[dict[str, Any]]:
        """Control-plane happenings the backend can see (e.g. resync halt/resume), as
        {"time", "f", "value"} dicts; the writer records them as nemesis `info` ops."""
        return []

    def describe(self) -> dict[str, Any]:
        """What a run's metadata records about this session (never a secret)."""
        return {"backend": self.backend, "mode": self.mode, "encoding": self.encoding,
                "realtime": self.realtime, "user_id": self.info().user_id,
                "server_trace": type(self).subscribe_trace is not Session.subscribe_trace}

    def close(self) -> None:
        """Release resources; the session is unusable afterwards."""

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
