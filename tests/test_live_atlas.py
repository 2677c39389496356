"""The Atlas view: mirror of one owner's documents, change stream with resume, poll fallback."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from repro_kit._history import Notification
from repro_kit.live.appservices_api import LiveError
from repro_kit.live.atlas import (
    AtlasCollectionView,
    apply_update_description,
    mask_uri,
    open_collection,
    uri_secrets,
)

from live_fakes.collections import FakeCollection

OWNER, OTHER = "owner-a", "owner-b"


class Collected:
    """Collects notifications; `wait_for(pred)` blocks (bounded) until pred(all) holds."""

    def __init__(self) -> None:
        self.notes: list[Notification] = []
        self.cond = threading.Condition()

    def __call__(self, note: Notification) -> None:
        with self.cond:
            self.notes.append(note)
            self.cond.notify_all()

    def entered(self) -> list[str]:
        return [i for n in self.notes for i in n.entered]

    def wait_for(self, pred, timeout: float = 10.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self), timeout), f"not reached; got {self.notes}"


def view_of(coll: FakeCollection, owner: str = OWNER, **kw) -> AtlasCollectionView:
    kw.setdefault("retry_delay", 0.01)
    kw.setdefault("poll_interval", 0.02)
    return AtlasCollectionView(coll, owner, **kw)


def test_nodes_root_info_are_scoped_to_the_owner_with_string_ids():
    coll = FakeCollection()
    mine, theirs = view_of(coll), view_of(coll, OTHER)
    root = mine.ensure_root()
    a = mine.add_to_root("a")
    theirs.add_to_root("x")
    assert isinstance(next(iter(coll.docs)), uuid.UUID)  # stored as UUIDs, shown as strings
    assert mine.root()["children"] == [a] and mine.root()["_id"] == root["_id"]
    assert {d["_id"] for d in mine.nodes()} == {root["_id"], a}
    info = mine.info()
    assert (info.user_id, info.root_id, info.nodes_total, info.root_children) == (OWNER, root["_id"], 2, 1)
    assert mine.reset() == 2
    assert mine.nodes() == [] and len(theirs.nodes()) == 2


def test_change_stream_reports_entered_inserted_and_counts():
    coll = FakeCollection()
    view = view_of(coll)
    view.ensure_root()
    seen = Collected()
    unsubscribe = view.subscribe(seen)
    try:
        a = view.add_to_root("a")
        view_of(coll, OTHER).add_to_root("not mine")
        seen.wait_for(lambda s: a in s.entered())
    finally:
        unsubscribe()
    assert all(n.observer == "atlas" for n in seen.notes)
    assert seen.notes[0].inserted == (a,) and seen.notes[0].entered == ()  # the document, then the link
    assert seen.notes[-1].entered == (a,) and seen.notes[-1].root_children == 1 and seen.notes[-1].nodes_total == 2
    assert coll.watch_calls[0]["full_document"] == "updateLookup"


def test_dropped_connection_resumes_from_the_token_without_losing_events():
    coll = FakeCollection()
    view = view_of(coll)
    view.ensure_root()
    seen = Collected()
    unsubscribe = view.subscribe(seen)
    try:
        first = view.add_to_root("before the drop")
        seen.wait_for(lambda s: first in s.entered())
        token_before_drop = {"_data": len(coll.events)}
        coll.drop_next = True
        later = [view.add_to_root(f"during outage {i}") for i in range(3)]
        seen.wait_for(lambda s: set(later) <= set(s.entered()))
    finally:
        unsubscribe()
    assert len(coll.watch_calls) == 2
    assert coll.watch_calls[1]["resume_after"] == token_before_drop
    assert seen.entered() == [first, *later]  # each exactly once, in order


def test_lost_history_resynchronises_from_a_snapshot():
    coll = FakeCollection()
    view = view_of(coll)
    view.ensure_root()
    seen = Collected()
    unsubscribe = view.subscribe(seen)
    try:
        coll.drop_next, coll.lose_history = True, True
        a = view.add_to_root("a")
        seen.wait_for(lambda s: a in s.entered())
    finally:
        unsubscribe()
    assert [c["resume_after"] is None for c in coll.watch_calls] == [True, False, True]
    assert seen.entered() == [a]


def test_standalone_server_falls_back_to_polling():
    coll = FakeCollection()
    coll.unsupported = True
    view = view_of(coll)
    view.ensure_root()
    seen = Collected()
    unsubscribe = view.subscribe(seen)
    try:
        a, b = view.add_to_root("a"), view.add_to_root("b")
        seen.wait_for(lambda s: {a, b} <= set(s.entered()))
        view.reset()
        seen.wait_for(lambda s: s.notes[-1].nodes_total == 0)
    finally:
        unsubscribe()
    assert set(seen.notes[-1].deleted) >= {a, b} and set(seen.notes[-1].left) >= {a, b}


def test_watch_only_mode_says_change_streams_are_unavailable():
    coll = FakeCollection()
    coll.unsupported = True
    with pytest.raises(LiveError, match="change streams are unavailable .*40573"):
        view_of(coll, mode="watch").subscribe(lambda n: None)


def test_unsubscribe_stops_notifications():
    coll = FakeCollection()
    view = view_of(coll)
    view.ensure_root()
    seen = Collected()
    view.subscribe(seen)()
    view.add_to_root("after")
    time.sleep(0.1)
    assert seen.notes == []


def test_update_description_with_dotted_paths_and_truncation():
    doc = {"_id": 1, "children": ["a", "b", "c"], "text": "t"}
    out = apply_update_description(doc, {"updatedFields": {"children.1": "x", "children.2": "d"},
                                         "truncatedArrays": [{"field": "children", "newSize": 2}],
                                         "removedFields": ["text"]})
    assert out == {"_id": 1, "children": ["a", "x", "d"]}
    assert doc["children"] == ["a", "b", "c"]


def test_uri_password_is_masked():
    uri = "mongodb+srv://alice:p%40ss-w0rd@cluster0.example.net/?retryWrites=true"
    assert mask_uri(uri) == "mongodb+srv://alice:****@cluster0.example.net/?retryWrites=true"
    assert set(uri_secrets(uri)) == {"p%40ss-w0rd", "p@ss-w0rd"}
    assert mask_uri("mongodb://localhost:27017") == "mongodb://localhost:27017"
    with pytest.raises(ValueError, match="mongodb_uri"):
        open_collection("http://nope")


requires_mongodb = pytest.mark.skipif(not os.environ.get("MONGODB_URI"), reason="MONGODB_URI is not set: no real MongoDB to test against")


@pytest.mark.mongodb
@requires_mongodb
def test_real_server_watch_or_poll_sees_writes():
    client, _ = open_collection(os.environ["MONGODB_URI"], server_selection_timeout_ms=5000)
    db_name = f"repro_kit_test_{uuid.uuid4().hex[:12]}"
    try:
        coll = client[db_name]["Node"]
        view = view_of(coll)
        view.ensure_root()
        seen = Collected()
        unsubscribe = view.subscribe(seen)
        try:
            ids = [view.add_to_root(f"n{i}") for i in range(3)]
            seen.wait_for(lambda s: set(ids) <= set(s.entered()), timeout=30)
        finally:
            unsubscribe()
        assert view.info().root_children == 3
    finally:
        client.drop_database(db_name)
        client.close()
