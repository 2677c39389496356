import random

import pytest
import simpy

from repro_kit.emulator.server import SERVER_PEER, SyncServer


def create(pk, owner, ts, origin):
    return {"origin": origin, "timestamp": ts, "instructions": [
        {"op": "CreateObject", "table": "Node", "object": pk},
        {"op": "Update", "table": "Node", "object": pk, "field": "owner_id", "value": owner, "is_default": False},
    ]}


def insert(root, index, value, ts, origin, prior):
    return {"origin": origin, "timestamp": ts, "instructions": [
        {"op": "ArrayInsert", "table": "Node", "object": root, "field": "children", "index": index,
         "value": value, "prior_size": prior}]}


def clear(root, ts):
    return {"origin": SERVER_PEER, "timestamp": ts, "instructions": [
        {"op": "Clear", "table": "Node", "object": root, "field": "children"}]}


def test_upload_is_transformed_against_concurrent_history_and_fanned_out_in_order():
    env = simpy.Environment()
    server = SyncServer(env, random.Random(0), download_latency_s=0.05, jitter=0.0)
    got = {2: [], 3: []}
    server.connect(2, "u", lambda v, o, cs: got[2].append((v, o, cs)))
    server.connect(3, "u", lambda v, o, cs: got[3].append((v, o, cs)))
    server.integrate(2, create("r", "u", 1, 2), 0)
    server.integrate(2, insert("r", 0, "a", 2, 2, 0), 1)
    # A concurrent insert from peer 3 at the same index, based on version 1, lands after "a".
    server.integrate(3, insert("r", 0, "b", 3, 3, 0), 1)
    assert server.state["Node"]["r"]["children"] == ["a", "b"]
    env.run(until=1)
    assert [v for v, _, _ in got[2]] == [1, 2, 3]
    assert got[3][-1][2]["instructions"][0]["index"] == 1  # the ack carries the transformed changeset


def test_concurrent_clear_discards_inserts_whatever_the_timestamps():
    env = simpy.Environment()
    server = SyncServer(env, random.Random(0), 0.05, 0.0)
    server.integrate(2, create("r", "u", 1, 2), 0)
    server.integrate(2, insert("r", 0, "a", 2, 2, 0), 1)
    snapshot_version = server.version
    server.integrate(2, insert("r", 1, "b", 3, 2, 1), snapshot_version)  # appended "during the halt"
    server.integrate(SERVER_PEER, clear("r", 1), snapshot_version)  # older timestamp, still wins
    assert server.state["Node"]["r"]["children"] == []


def test_downloads_are_filtered_by_owner_subscription():
    env = simpy.Environment()
    server = SyncServer(env, random.Random(0), 0.05, 0.0)
    got = []
    server.connect(2, "u", lambda v, o, cs: got.append(cs))
    server.integrate(SERVER_PEER, create("theirs", "v", 1, SERVER_PEER), 0)
    server.integrate(SERVER_PEER, create("mine", "u", 2, SERVER_PEER), 1)
    env.run(until=1)
    assert got[0]["instructions"] == []
    assert {i["object"] for i in got[1]["instructions"]} == {"mine"}


def test_bad_base_version_and_reserved_peer():
    env = simpy.Environment()
    server = SyncServer(env, random.Random(0), 0.05, 0.0)
    with pytest.raises(ValueError, match="base_version"):
        server.integrate(2, create("r", "u", 1, 2), 5)
    with pytest.raises(ValueError, match="peer"):
        server.connect(SERVER_PEER, "u", lambda *a: None)
