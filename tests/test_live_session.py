"""LiveSession: live deploy and Atlas view; device writes refused plainly unless writes='atlas'."""

from __future__ import annotations

import threading
import uuid

import pytest

from repro_kit._history import Event, Nemesis, Op
from repro_kit.live.appservices_api import ENV_PRIVATE_KEY, ENV_PUBLIC_KEY, LiveError, RetryPolicy
from repro_kit.live.session import LiveSession, connect_live

from live_fakes.appservices_server import CLIENT_APP_ID, FakeAppServices
from live_fakes.collections import FakeCollection

OWNER = "user-1"


def live(coll: FakeCollection, **kw) -> LiveSession:
    kw.setdefault("owner_id", OWNER)
    kw.setdefault("poll_interval", 0.02)
    return connect_live(mongo_collection=coll, env={}, **kw)


def test_default_session_refuses_device_writes_with_the_reason():
    with live(FakeCollection()) as session:
        for call in (lambda: session.add_to_root("x"), session.reset):
            with pytest.raises(LiveError) as info:
                call()
            assert "Realm SDK, which has no Python version" in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(LiveError, match="no root node in Atlas yet"):
            session.root()
        assert session.backend == "live" and session.realtime


def test_reads_follow_what_the_app_wrote_to_atlas():
    coll = FakeCollection()
    root, a, gone = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    coll.insert_one({"_id": root, "text": "root", "children": [a, gone], "isRoot": True, "owner_id": OWNER})
    coll.insert_one({"_id": a, "text": "a", "children": [], "isRoot": False, "owner_id": OWNER})
    coll.insert_one({"_id": uuid.uuid4(), "text": "orphan", "children": [], "isRoot": False, "owner_id": OWNER})
    with live(coll) as session:
        assert session.root()["_id"] == str(root)
        assert [n["_id"] for n in session.nodes()] == [str(root), str(a)]  # the dangling link is hidden
        assert len(session.all_nodes()) == 3
        info = session.info()
        assert (info.nodes_total, info.root_children) == (3, 2)


def test_server_side_variant_writes_through_atlas_for_this_owner_only():
    coll = FakeCollection()
    other = live(coll, owner_id="someone-else", writes="atlas")
    other.add_to_root("theirs")
    with live(coll, writes="atlas") as session:
        ids = [session.add_to_root(f"n{i}") for i in range(3)]
        assert [n["_id"] for n in session.nodes()[1:]] == ids
        assert session.reset() == 4
        assert session.all_nodes() == []
    assert len(other.all_nodes()) == 2
    other.close()


def test_the_history_carries_atlas_events_in_session_time_and_its_own_acknowledged_adds():
    coll = FakeCollection()
    got = threading.Event()
    records = []

    def hear(record):
        records.append(record)
        if isinstance(record, Event) and record.kind == "enter":
            got.set()

    with live(coll, writes="atlas") as session:
        session.root()
        unsubscribe = session.history(hear)
        assert [r.kind for r in records] == ["doc_insert", "counts"]  # the baseline: the root, no children
        t_before = session.now()
        node_id = session.add_to_root("a")
        assert got.wait(10)
        unsubscribe()
    ops = [r for r in records if isinstance(r, Op)]
    assert [(o.type, o.value) for o in ops] == [("invoke", node_id), ("ok", node_id)]  # MongoDB acknowledged it
    enter = next(r for r in records if isinstance(r, Event) and r.kind == "enter")
    assert enter.observer == "atlas" and enter.fields["node_id"] == node_id and enter.time >= t_before


def test_the_live_backend_shows_atlas_only_and_says_why_for_the_device():
    with live(FakeCollection()) as session:
        assert session.observers == ("atlas",)
        with pytest.raises(ValueError, match="sees Atlas only"):
            session.view("device")


def test_deploy_is_live_and_logged_for_the_recording():
    with FakeAppServices() as server:
        env = {ENV_PUBLIC_KEY: server.public_key, ENV_PRIVATE_KEY: server.private_key}
        session = connect_live(app_id=CLIENT_APP_ID, owner_id=OWNER, base_url=server.url, mongo_collection=FakeCollection(),
                               env=env, admin_kwargs={"poll_interval": 0.01}, retry=RetryPolicy(attempts=2, backoff=0.0))
        records = []
        with session:
            session.history(records.append)
            result = session.deploy_schema_change("tags", "array<string>")
        assert result.status == "successful"
        assert "tags" in server.schema_doc["schema"]["properties"]
        invoke, ok = [r for r in records if isinstance(r, Nemesis)]
        assert (invoke.type, invoke.f, ok.type, ok.value["status"]) == ("invoke", "deploy", "ok", "successful")


def test_deploy_needs_an_app_id_and_keys():
    with live(FakeCollection()) as session:
        with pytest.raises(LiveError, match="no App ID"):
            session.deploy_schema_change("tags", "string")
        with pytest.raises(ValueError, match="bson_type"):
            session.deploy_schema_change("tags", "nope")
    with live(FakeCollection(), app_id="some-app") as session:
        with pytest.raises(LiveError, match=ENV_PUBLIC_KEY):
            session.deploy_schema_change("tags", "string")


def test_owner_defaults_to_a_new_anonymous_user():
    with FakeAppServices() as server:
        session = connect_live(app_id=CLIENT_APP_ID, base_url=server.url, mongo_collection=FakeCollection(), env={},
                               writes="atlas")
        assert session.user_id == "65" + "1".zfill(22)
        session.close()
    with pytest.raises(ValueError, match="owner_id"):
        connect_live(mongo_collection=FakeCollection(), env={})


def test_missing_uri_names_the_variable_and_bad_writes_is_rejected():
    with pytest.raises(LiveError, match="MONGODB_URI"):
        connect_live(owner_id=OWNER, env={})
    with pytest.raises(ValueError, match="writes"):
        connect_live(owner_id=OWNER, mongo_collection=FakeCollection(), writes="device")


def test_clock_is_wall_clock_since_start():
    with live(FakeCollection()) as session:
        t = session.now() + 0.02
        session.wait_until(t)
        assert session.now() >= t


def test_connect_live_through_the_public_entry_point():
    client = pytest.importorskip("repro_kit.client")
    session = client.connect("live", owner_id=OWNER, mongo_collection=FakeCollection(), env={})
    assert isinstance(session, LiveSession)
    session.close()
