"""Observers of both views, the device and Atlas, turned into recorded events.

Every change notification becomes `enter`/`leave` (root's children), `doc_insert`/
`doc_delete` (documents) and `counts` events; a server-origin download also a `batch`
event (the re-import batches the report saw). A periodic Atlas `poll` stands in for a
person refreshing the Atlas page.
"""

from __future__ import annotations

from typing import Any, Callable

from repro_kit._session import Info, Notification, Session

__all__ = ["Watcher"]


class Watcher:
    """Records what the device and Atlas show, relative to run start `t0`."""

    def __init__(self, session: Session, record: Callable[[dict[str, Any]], None], t0: float) -> None:
        self.session = session
        self._record = record
        self.t0 = t0
        self._unsubscribe: list[Callable[[], None]] = []
        self.notifications = 0

    def start(self) -> None:
        """Record each view's baseline at time 0, then follow both."""
        self._baseline("device", self.session.nodes(), self.session.all_nodes())
        atlas_nodes = self.session.atlas.nodes()
        atlas_root = self.session.atlas.root()
        self._baseline("atlas", [atlas_root] if atlas_root else [], atlas_nodes)
        self._unsubscribe.append(self.session.subscribe(self._on_notification))
        self._unsubscribe.append(self.session.atlas.subscribe(self._on_notification))

    def stop(self) -> None:
        while self._unsubscribe:
            self._unsubscribe.pop()()

    def poll(self) -> Info:
        """A person refreshing the Atlas page."""
        info = self.session.atlas.info()
        self._record({"time": self._time(), "observer": "atlas", "kind": "poll",
                    "root_children": info.root_children, "nodes_total": info.nodes_total})
        return info

    def _time(self, t: float | None = None) -> float:
        return round((self.session.now() if t is None else t) - self.t0, 6)

    def _baseline(self, observer: str, tree: list[dict[str, Any]], docs: list[dict[str, Any]]) -> None:
        t = self._time()
        root = tree[0] if tree else None
        children = [str(c) for c in (root.get("children", []) if root else [])]
        for doc in docs:
            self._record({"time": t, "observer": observer, "kind": "doc_insert", "node_id": str(doc["_id"])})
        for child in children:
            self._record({"time": t, "observer": observer, "kind": "enter", "node_id": child})
        self._record({"time": t, "observer": observer, "kind": "counts",
                    "root_children": len(children), "nodes_total": len(docs)})

    def _on_notification(self, note: Notification) -> None:
        self.notifications += 1
        t = self._time(note.time)
        obs = note.observer
        for node_id in note.inserted:
            self._record({"time": t, "observer": obs, "kind": "doc_insert", "node_id": str(node_id)})
        for node_id in note.entered:
            self._record({"time": t, "observer": obs, "kind": "enter", "node_id": str(node_id)})
        for node_id in note.left:
            self._record({"time": t, "observer": obs, "kind": "leave", "node_id": str(node_id)})
        for node_id in note.deleted:
            self._record({"time": t, "observer": obs, "kind": "doc_delete", "node_id": str(node_id)})
        if note.batch:
            self._record({"time": t, "observer": obs, "kind": "batch", "batch": int(note.batch)})
        self._record({"time": t, "observer": obs, "kind": "counts",
                    "root_children": note.root_children, "nodes_total": note.nodes_total})
