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
    server.connect(2, "u", lambda v, o, cs, note: got[2].append((v, o, cs)))
    server.connect(3, "u", lambda v, o, cs, note: got[3].append((v, o, cs)))
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
    server.connect(2, "u", lambda v, o, cs, note: got.append(cs))
    server.integrate(SERVER_PEER, create("theirs", "v", 1, SERVER_PEER), 0)
    server.integrate(SERVER_PEER, create("mine", "u", 2, SERVER_PEER), 1)
    server.integrate(SERVER_PEER, {"origin": SERVER_PEER, "timestamp": 3, "instructions": [
        {"op": "Update", "table": "Node", "object": "theirs", "field": "text", "value": "x", "is_default": False},
        {"op": "Update", "table": "Node", "object": "mine", "field": "text", "value": "y", "is_default": False}]}, 2)
    env.run(until=1)
    # another owner's changeset is not sent at all; a mixed one arrives filtered to this owner
    assert [{i["object"] for i in cs["instructions"]} for cs in got] == [{"mine"}, {"mine"}]


def test_fan_out_reaches_only_the_touched_owners_devices_and_the_uploader():
    env = simpy.Environment()
    server = SyncServer(env, random.Random(0), 0.05, 0.0)
    got = {peer: [] for peer in (2, 3, 4)}
    for peer, owner in ((2, "u"), (3, "u"), (4, "v")):
        server.connect(peer, owner, lambda v, o, cs, note, peer=peer: got[peer].append(v))
    server.integrate(2, create("mine", "u", 1, 2), 0)
    server.integrate(4, create("theirs", "v", 1, 4), 0)
    env.run(until=1)
    assert got == {2: [1], 3: [1], 4: [2]}


def test_bad_base_version_and_reserved_peer():
    env = simpy.Environment()
    server = SyncServer(env, random.Random(0), 0.05, 0.0)
    with pytest.raises(ValueError, match="base_version"):
        server.integrate(2, create("r", "u", 1, 2), 5)
    with pytest.raises(ValueError, match="peer"):
        server.connect(SERVER_PEER, "u", lambda *a: None)


def test_trace_records_integrations_and_the_discards_of_a_reimport_with_their_versions():
    env = simpy.Environment()
    server = SyncServer(env, random.Random(0), download_latency_s=0.05, jitter=0.0)
    trace = []
    server.trace_listeners.append(trace.append)
    server.integrate(2, create("r", "u", 1, 2), 0)
    snapshot_version = server.version
    server.integrate(2, insert("r", 0, "a", 2, 2, 0), snapshot_version)  # appended "during the halt"
    server.integrate(SERVER_PEER, clear("r", 1), snapshot_version, {"reimport_batch": 1, "reimport_batches": 1})
    integrated = [r for r in trace if r["kind"] == "integrate"]
    assert [r["version"] for r in integrated] == [1, 2, 3]
    assert integrated[2]["base_version"] == 1 and integrated[2]["reimport_batch"] == 1
    (discard,) = [r for r in trace if r["kind"] == "discarded"]
    assert discard["rule"] == "clear-vs-array-insert" and discard["at"] == "server"
    assert discard["instruction"]["value"] == "a"
    assert (discard["version"], discard["instruction_in"], discard["by_in"]) == (3, 2, 3)


def test_a_device_records_its_own_rebase_of_unacknowledged_changes():
    from repro_kit.emulator.device import Device

    env = simpy.Environment()
    server = SyncServer(env, random.Random(0), download_latency_s=0.05, jitter=0.0)
    device = Device(env, server, 2, "u", random.Random(1), upload_latency_s=0.05)
    root = device.create_root()
    env.run(until=1)
    trace = []
    device.trace_listeners.append(trace.append)
    server.integrate(SERVER_PEER, clear(root, 1), server.version, {"reimport_batch": 1, "reimport_docs": 1})
    device.add_to_root("unacknowledged")  # written before the batch's download arrives
    env.run(until=2)
    local = [r for r in trace if r["at"] == "device"]
    assert local and local[0]["rule"] == "clear-vs-array-insert" and local[0]["instruction_in"] == "local"
    assert local[0]["peer"] == 2
