"""The history stream: every record a Session produces, from backend to checker.

Jepsen's vocabulary. An `Op` is a client process's invoke / ok / fail / info of a function
(a device's `add`, a `reset`, the driver's final `read`); a `Nemesis` record is the fault (the
schema `deploy`, the control plane's `halt` and `resume`); an `Event` is an observation of a
view (what the device's listeners or Atlas's change feed showed); a `Trace` record is the sync
server's own evidence (an integrated changeset, an instruction the merge discarded). A
backend hands them to `Session.history` listeners as they happen; the recorder writes them
(ops and nemesis to history.jsonl, events to events.jsonl, trace to trace.jsonl) and the
checker reads only what was written. An acknowledgement is an `ok` op that arrives or not.

`Notification` is what one change of a view looks like before it becomes events: the one
diff of two view states (`notification`) that the device, Atlas and the live backend share.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "Op", "Nemesis", "Event", "Trace", "Record", "Listener", "Stream", "Notification", "notification",
    "events_of", "baseline_events", "OP_TYPES", "NEMESIS",
]

OP_TYPES = ("invoke", "ok", "fail", "info")
#: The process name of fault records in history.jsonl.
NEMESIS = "nemesis"


@dataclasses.dataclass(frozen=True, slots=True)
class Op:
    """A client process's operation: `process` 0 is the session's device (a fleet: the user)."""

    time: float
    process: int
    type: str
    f: str
    value: Any = None

    def line(self) -> dict[str, Any]:
        return {"time": self.time, "process": self.process, "type": self.type, "f": self.f, "value": self.value}


@dataclasses.dataclass(frozen=True, slots=True)
class Nemesis:
    """The fault and what the control plane did about it: deploy (invoke/ok/fail), halt, resume (info)."""

    time: float
    type: str
    f: str
    value: Any = None

    def line(self) -> dict[str, Any]:
        return {"time": self.time, "process": NEMESIS, "type": self.type, "f": self.f, "value": self.value}


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """An observation of one view: `observer` "device" | "atlas", `kind` enter | leave | doc_insert |
    doc_delete | counts | batch | poll; `fields` holds node_id, root_children, nodes_total, batch, user."""

    time: float
    observer: str
    kind: str
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def line(self) -> dict[str, Any]:
        return {"time": self.time, "observer": self.observer, "kind": self.kind, **self.fields}


@dataclasses.dataclass(frozen=True, slots=True)
class Trace:
    """The sync server's evidence: {"kind": "integrate" | "discarded" | "rewritten", ...}
    (README, "The run directory")."""

    time: float
    fields: Mapping[str, Any]

    def line(self) -> dict[str, Any]:
        return {"time": self.time, **self.fields}


Record = Op | Nemesis | Event | Trace
Listener = Callable[[Record], None]


class Stream:
    """A backend's listeners: `subscribe` returns the unsubscribe function, `emit` hands a record
    to each in subscription order. Safe from any thread; a listener added during an emit hears
    the next record."""

    def __init__(self) -> None:
        self._listeners: tuple[Listener, ...] = ()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        if not callable(listener):
            raise ValueError(f"listener: must be callable, got {type(listener).__name__}")
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                listeners = list(self._listeners)
                if listener in listeners:
                    listeners.remove(listener)
                self._listeners = tuple(listeners)

        return unsubscribe

    def emit(self, record: Record) -> None:
        for listener in self._listeners:
            listener(record)

    def emit_all(self, records: Iterable[Record]) -> None:
        listeners = self._listeners
        for record in records:
            for listener in listeners:
                listener(record)


@dataclasses.dataclass(frozen=True)
class Notification:
    """One change of an observed view (a device's listeners, Atlas's change feed).

    `entered`/`left`: node ids that entered or left the root's visible children;
    `inserted`/`deleted`: node documents that appeared or disappeared; `batch`: for a
    download of a translator re-import, how many documents it carried, else None.
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


ViewState = tuple[Sequence[str], Iterable[str]]  # (the root's visible children in order, the owner's document ids)
#: New children at the end of an otherwise unchanged list that `notification` looks up in the old
#: list one by one (beyond this, in a set of it).
_SHORT_TAIL = 8


def notification(time: float, observer: str, before: ViewState, after: ViewState,
                 batch: int | None = None) -> Notification:
    """The one diff of two view states: what entered and left the root's children (in list
    order), which documents appeared and disappeared (sorted)."""
    old_children, old_docs = before
    new_children, new_docs = after
    if not isinstance(old_docs, (set, frozenset)):
        old_docs = set(old_docs)
    if not isinstance(new_docs, (set, frozenset)):
        new_docs = set(new_docs)
    head = len(old_children)
    tail = new_children[head:]
    if len(tail) <= _SHORT_TAIL and new_children[:head] == old_children:
        # the list only grew at its end (a device's append) or stayed: every old child is still
        # there, and of the few new ones, those the old list lacked (a scan of it, not two sets)
        left: tuple[Any, ...] = ()
        entered = tuple(dict.fromkeys(c for c in tail if c not in old_children))
    else:
        old_set, new_set = set(old_children), set(new_children)
        entered = tuple(dict.fromkeys(c for c in new_children if c not in old_set))
        left = tuple(dict.fromkeys(c for c in old_children if c not in new_set))
    return Notification(
        time=time, observer=observer, root_children=len(new_children), nodes_total=len(new_docs),
        entered=entered, left=left,
        inserted=tuple(sorted(new_docs - old_docs)) if new_docs else (),
        deleted=tuple(sorted(old_docs - new_docs)) if old_docs else (),
        batch=batch,
    )


def events_of(note: Notification) -> list[Event]:
    """A notification as events, in the order a reader replays them: documents in, children
    in and out, documents out, the re-import batch, then the view's counts."""
    t, obs = note.time, note.observer
    out = [Event(t, obs, "doc_insert", {"node_id": str(n)}) for n in note.inserted]
    out += [Event(t, obs, "enter", {"node_id": str(n)}) for n in note.entered]
    out += [Event(t, obs, "leave", {"node_id": str(n)}) for n in note.left]
    out += [Event(t, obs, "doc_delete", {"node_id": str(n)}) for n in note.deleted]
    if note.batch:
        out.append(Event(t, obs, "batch", {"batch": int(note.batch)}))
    out.append(Event(t, obs, "counts", {"root_children": note.root_children, "nodes_total": note.nodes_total}))
    return out


def baseline_events(time: float, observer: str, children: Sequence[Any], documents: Iterable[Any]) -> list[Event]:
    """What a view shows when a listener starts following it: its documents, the root's children, counts."""
    docs = [str(d) for d in documents]
    kids = [str(c) for c in children]
    out = [Event(time, observer, "doc_insert", {"node_id": d}) for d in docs]
    out += [Event(time, observer, "enter", {"node_id": c}) for c in kids]
    out.append(Event(time, observer, "counts", {"root_children": len(kids), "nodes_total": len(docs)}))
    return out


def as_line(record: Record, fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A record as the JSON line the recorder writes (`fields` override, e.g. a run-relative time)."""
    line = record.line()
    if fields:
        line.update(fields)
    return line
