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
    device.observe_merge(trace.append)
    server.integrate(SERVER_PEER, clear(root, 1), server.version, {"reimport_batch": 1, "reimport_docs": 1})
    device.add_to_root("unacknowledged")  # written before the batch's download arrives
    env.run(until=2)
    local = [r for r in trace if r["at"] == "device"]
    assert local and local[0]["rule"] == "clear-vs-array-insert" and local[0]["instruction_in"] == "local"
    assert local[0]["peer"] == 2


# -- per-link FIFO: every device receives its downloads in server-version order ----------------------


class _Scripted(random.Random):
    """A generator whose `random()` returns the given values first (then 0.5): replays one schedule."""

    def __init__(self, values):
        super().__init__(0)
        self._values = list(values)

    def random(self):
        return self._values.pop(0) if self._values else 0.5


def _append(root, index, value, size=None):
    return [{"op": "CreateObject", "table": "Node", "object": root},
            {"op": "ArrayInsert", "table": "Node", "object": root, "field": "children", "index": index,
             "value": value, "prior_size": index if size is None else size}]


def _received(devices):
    """Record the server versions each device integrates, in the order it integrates them."""
    got = {d.peer: [] for d in devices}
    for device in devices:
        receive = device._link.receive

        def spy(version, origin, changeset, note, _peer=device.peer, _receive=receive):
            got[_peer].append(version)
            _receive(version, origin, changeset, note)

        device._link.receive = spy
    return got


@pytest.mark.parametrize("heap", [True, False], ids=["heap keys", "timed calls"])
def test_a_download_raised_behind_an_ack_is_not_scheduled_before_it(heap):
    """The case differential fuzzing found: B's ack is due at 0.4755128106499162; A's later
    change is raised to that time for B, and `now + (at - now)` put it one ulp earlier, so B
    rebased it past its own in-flight changeset, which it already held, and the run stopped.
    Both ways a delivery schedules: the model's heap keys, and timed calls through SimPy's
    public API (the default `Delivery`), where a per-port queue keeps FIFO."""
    from repro_kit.emulator._scheduling import ModelDelivery
    from repro_kit.emulator.device import Device

    env = simpy.Environment()
    server = SyncServer(env, _Scripted([0.5, 0.9742149945292516, 0.5, 0.0]), 0.25, 0.5,
                        ModelDelivery(env) if heap else None)
    a = Device(env, server, 2, "u", random.Random(1), upload_latency_s=0.0)
    b = Device(env, server, 3, "u", random.Random(2), upload_latency_s=0.0)
    got = _received([a, b])
    env.run(until=0.10695906201760326)
    b.write(_append("root", 0, "x"))
    env.run(until=0.12868065962249733)
    a.write(_append("root", 0, "y"))
    env.run(until=2)
    assert got == {2: [1, 2], 3: [1, 2]}  # B: its own ack (v1) before A's change (v2)
    assert a.state["Node"]["root"]["children"] == b.state["Node"]["root"]["children"] == ["x", "y"]


def _random_schedule(rng):
    """A random multi-device schedule: latencies (long upload delays standing for a device that
    was offline), jitter, clock skew, ties, several owners, appends, erases and clears."""
    owners = rng.choice((1, 1, 2))
    devices = rng.randint(2, 4)
    return {
        "download": rng.choice((0.0, 0.001, 0.05, 0.25, 1.0)),
        "jitter": rng.choice((0.0, 0.2, 0.5, 0.99)),
        "uploads": [rng.choice((0.0, 0.0, 0.01, 0.05, 0.3, 2.0, 30.0)) for _ in range(devices)],
        "skews": [rng.choice((0, 0, 5, -5, 1000, -1000)) for _ in range(devices)],
        "owners": [f"u{rng.randrange(owners)}" for _ in range(devices)],
        "writes": sorted((rng.choice((0.0, 0.1, 0.25, 0.5)) if rng.random() < 0.2 else rng.uniform(0, 3),
                          rng.randrange(devices), rng.random()) for _ in range(rng.randint(1, 14))),
        "seed": rng.randrange(2**32),
    }


def _play(schedule, model_env):
    """Run `schedule` on a plain SimPy Environment (one event per download) or a ModelEnvironment
    (other peers' downloads taken into the device's inbox); what each device received and holds."""
    from repro_kit.emulator._scheduling import ModelDelivery, ModelEnvironment, run_until
    from repro_kit.emulator.device import Device

    env = ModelEnvironment() if model_env else simpy.Environment()
    server = SyncServer(env, random.Random(schedule["seed"]), schedule["download"], schedule["jitter"],
                        ModelDelivery(env))
    devices = [Device(env, server, 2 + i, owner, random.Random(i), upload_latency_s=up, clock_skew_ms=skew)
               for i, (owner, up, skew) in enumerate(zip(schedule["owners"], schedule["uploads"], schedule["skews"]))]
    got = _received(devices)
    for n, (at, who, choice) in enumerate(schedule["writes"]):
        if at > env.now:
            run_until(env, at) if model_env else env.run(until=at)
        device = devices[who]
        root = f"root-{device.owner_id}"
        size = len(device.state["Node"].get(root, {}).get("children", ()))
        if choice < 0.1 and size:
            device.write([{"op": "Clear", "table": "Node", "object": root, "field": "children"}])
        elif choice < 0.25 and size:
            device.write([{"op": "ArrayErase", "table": "Node", "object": root, "field": "children",
                           "index": int(choice * 1000) % size, "prior_size": size}])
        else:
            device.write([{"op": "CreateObject", "table": "Node", "object": root},
                          {"op": "Update", "table": "Node", "object": root, "field": "owner_id",
                           "value": device.owner_id, "is_default": False},
                          *_append(root, int(choice * 1000) % (size + 1), f"n{n}", size)[1:]])
    # each device has one changeset in flight: a slow uploader needs a round trip per write
    end = env.now + 10 + (len(schedule["writes"]) + 1) * 2 * (max(schedule["uploads"]) + schedule["download"])
    run_until(env, end) if model_env else env.run(until=end)
    return got, [(d.peer, d.state, d.server_version, d.idle) for d in devices], server


def test_every_device_receives_its_downloads_in_server_version_order_whatever_the_timing():
    """Thousands of random schedules: each device integrates server versions in increasing order
    (its own acknowledgement before any later version), deferred (inbox) and event-driven delivery
    agree exactly, and every device converges on the server's state."""
    rng = random.Random(20261206)
    for case in range(2500):
        schedule = _random_schedule(rng)
        got, held, server = _play(schedule, model_env=False)
        for peer, versions in got.items():
            assert versions == sorted(set(versions)), (case, schedule, peer, versions)
        assert _play(schedule, model_env=True)[:2] == (got, held), (case, schedule)
        for (peer, state, _version, idle), owner in zip(held, schedule["owners"]):
            assert idle, (case, schedule, peer)
            root = f"root-{owner}"
            assert state["Node"].get(root) == server.state["Node"].get(root), (case, schedule, peer)


def test_packed_instructions_read_back_equal_to_the_dicts_packed():
    from repro_kit.emulator.server import Packed

    instructions = [{"op": "CreateObject", "table": "Node", "object": "a"},
                    {"op": "Update", "table": "Node", "object": "a", "field": "tags", "value": ["x"],
                     "is_default": False},
                    {"op": "ArrayInsert", "table": "Node", "object": "r", "field": "children", "index": 0, "value": "a",
                     "prior_size": 0}]
    packed = Packed.of(instructions)
    assert packed == instructions and list(packed) == instructions and len(packed) == 3
    assert [list(ins) for ins in packed] == [list(ins) for ins in instructions]  # keys in order
    assert packed[1] == instructions[1] and packed[-1] == instructions[-1] and packed[1:] == instructions[1:]
    first = packed[0]
    assert packed[0] is first and list(Packed.of(instructions[:1])) and packed[0] is not first  # the last read's kept
    assert Packed.of(packed) is packed and not Packed.of([])
