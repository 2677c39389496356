import random

import pytest
import simpy

from repro_kit.emulator.device import Device
from repro_kit.emulator.server import SyncServer


def pair(tree="children"):
    env = simpy.Environment()
    server = SyncServer(env, random.Random(0), 0.05, 0.0)
    a = Device(env, server, 2, "u", random.Random(1), tree=tree)
    b = Device(env, server, 3, "u", random.Random(2), tree=tree)
    return env, server, a, b


def test_local_write_is_visible_at_once_and_acknowledged_later():
    env, server, a, _ = pair()
    acks = []
    a.ack_listeners.append(lambda pk, t: acks.append((pk, t)))
    root = a.create_root()
    node = a.add_to_root("x")
    assert a.visible_children(a.root_id()) == [node]
    assert node not in a.acked
    env.run(until=1)
    assert node in a.acked and [pk for pk, _ in acks] == [root, node]
    assert 0.09 <= acks[0][1] <= 0.2  # one upload + one download later
    assert acks[1][1] > acks[0][1]  # one changeset in flight at a time


def test_concurrent_appends_converge_on_both_devices_and_the_server():
    env, server, a, b = pair()
    a.create_root()
    env.run(until=1)
    for i in range(5):
        a.add_to_root(f"a{i}")
        b.add_to_root(f"b{i}")
        env.run(until=env.now + 0.03)  # faster than a round trip: uploads overlap
    env.run(until=env.now + 2)
    root = a.root_id()
    assert a.visible_children(root) == b.visible_children(root)
    assert a.visible_children(root) == [c for c in server.state["Node"][root]["children"]]
    assert len(a.visible_children(root)) == 10


def test_listeners_report_what_entered_and_left():
    env, server, a, b = pair()
    notes = []
    a.create_root()
    env.run(until=1)
    b.observe(notes.append)
    node = a.add_to_root("x")
    env.run(until=2)
    assert notes[-1].entered == (node,) and notes[-1].inserted == (node,)
    assert notes[-1].root_children == 1 and notes[-1].nodes_total == 2
    root = a.root_id()
    a.erase_owned()
    env.run(until=3)
    assert set(notes[-1].deleted) == {node, root}
    assert notes[-1].nodes_total == 0


def test_parent_pointer_tree():
    env, server, a, b = pair(tree="parent")
    root = a.create_root()
    n = a.add_to_root("x")
    env.run(until=1)
    assert b.visible_children(root) == [n]
    assert "children" not in {i.get("field") for _, cs in server.history for i in cs["instructions"] if i["op"] != "CreateObject"}


@pytest.mark.parametrize("tree", ["children", "parent"])
def test_a_tree_made_in_one_write_is_the_one_its_instructions_make(tree):
    """`create_tree` (a fleet's bootstrap) is one transaction, checked or not: the same state,
    changeset and ids as the same instructions given to `write`, and on the other device after sync."""
    from repro_kit.emulator.device import create_node

    env, server, a, b = pair(tree)
    root = a.create_tree(["one", "two", "three"])
    env.run(until=1)
    env2, server2, c, _ = pair(tree)
    pk = c.new_id()
    ins = create_node(pk, "root", "u", is_root=True)
    for k, text in enumerate(["one", "two", "three"]):
        child = c.new_id()
        ins += create_node(child, text, "u", is_root=False)
        ins.append({"op": "Update", "table": "Node", "object": child, "field": "parent", "value": pk, "is_default": False}
                   if tree == "parent" else
                   {"op": "ArrayInsert", "table": "Node", "object": pk, "field": "children", "index": k, "value": child,
                    "prior_size": k})
    c.write(ins)
    env2.run(until=1)
    assert root == pk and a.root_id() == b.root_id() == root and len(server.history) == 1
    assert server.history[0][1]["instructions"] == server2.history[0][1]["instructions"]
    assert a.state == b.state == c.state
    assert [a.state["Node"][n]["text"] for n in b.visible_children(root)] == ["one", "two", "three"]
    with pytest.raises(ValueError, match="must be a string"):
        a.create_tree(["four", 5])
    assert len(a.pending) == 0 and a.state == b.state  # nothing written


# -- downloads taken in bulk (ModelEnvironment) apply exactly where their events would have ----------


def _fleet_run(env_kind: str, drive: str, *, jitter: float, seed: int, listen_at: float | None = None):
    """Three devices of one owner and one of another, writing at random times (ties included
    when jitter is 0: every latency equal); returns everything a device or the server holds."""
    from repro_kit.emulator._scheduling import ModelDelivery, ModelEnvironment, run_until

    env = ModelEnvironment() if env_kind == "model" else simpy.Environment()
    server = SyncServer(env, random.Random(seed), 0.05, jitter, ModelDelivery(env))
    devices = [Device(env, server, 2 + k, "u" if k < 3 else "v", random.Random(seed + k), upload_latency_s=0.05)
               for k in range(4)]
    rng = random.Random(seed)
    notes: list[tuple[float, object]] = []
    devices[0].create_root()
    devices[3].create_root()
    times = sorted({round(rng.uniform(0.5, 3.0), 2 if jitter == 0 else 4) for _ in range(40)})

    def advance(t: float) -> None:
        if t > env.now:
            run_until(env, t) if drive == "run_until" else env.run(until=t)

    for t in times:
        advance(t)
        if listen_at is not None and t >= listen_at and not devices[1].listeners:
            devices[1].observe(lambda note: notes.append((env.now, note)))
        device = devices[rng.randrange(4)]
        if rng.random() < 0.1 and device.root_id() is not None:
            device.write([{"op": "Clear", "table": "Node", "object": device.root_id(), "field": "children"}])
        elif device.root_id() is not None:
            device.add_to_root(f"{device.peer} at {t}")
    advance(env.now + 5)
    return {
        "devices": [(d.state, d.server_version, d.inflight, d.pending, sorted(d.acked)) for d in devices],
        "history": server.history, "server": server.state, "rng": server.rng.getstate(),
        "notes": [(t, n.entered, n.left, n.inserted, n.deleted) for t, n in notes],
    }


@pytest.mark.parametrize("jitter", [0.0, 0.3])
@pytest.mark.parametrize("drive", ["run_until", "env.run"])
@pytest.mark.parametrize("seed", range(4))
def test_deferred_downloads_leave_every_outcome_as_one_event_per_download_does(jitter, drive, seed):
    eager = _fleet_run("plain", drive, jitter=jitter, seed=seed)
    assert _fleet_run("model", drive, jitter=jitter, seed=seed) == eager
    assert eager["history"] and any(d[0]["Node"] for d in eager["devices"])


@pytest.mark.parametrize("drive", ["run_until", "env.run"])
def test_a_listener_added_mid_run_sees_each_later_download_when_it_happens(drive):
    eager = _fleet_run("plain", drive, jitter=0.0, seed=7, listen_at=1.5)
    deferred = _fleet_run("model", drive, jitter=0.0, seed=7, listen_at=1.5)
    assert deferred == eager
    assert len(eager["notes"]) > 5  # the listener saw downloads, each at its own time


def test_a_device_that_neither_writes_nor_is_read_keeps_a_bounded_inbox():
    """A long run in which three devices only receive: their ports hold at most INBOX_LIMIT
    downloads (then apply what is due), and every run's end leaves them current."""
    from repro_kit.emulator._scheduling import INBOX_LIMIT, ModelDelivery, ModelEnvironment, run_until

    env = ModelEnvironment()
    delivery = ModelDelivery(env)
    server = SyncServer(env, random.Random(0), 0.05, 0.0, delivery)
    writer = Device(env, server, 2, "u", random.Random(1))
    readers = [Device(env, server, 3 + k, "u", random.Random(2 + k)) for k in range(3)]
    writer.create_root()
    longest = [0]

    def write(k: int) -> None:
        writer.add_to_root(f"n{k}")
        longest[0] = max(longest[0], *(len(r._link.inbox) for r in readers))

    for k in range(3 * INBOX_LIMIT):
        delivery.call_later(0.2 * (k + 1), write, k)  # acknowledged before the next write
    run_until(env, 0.2 * (3 * INBOX_LIMIT + 2))
    assert 0 < longest[0] <= INBOX_LIMIT + 1
    assert all(len(r._link.inbox) == 0 for r in readers)  # the run's end applied what was due
    assert all(r.visible_children(r.root_id()) == writer.visible_children(writer.root_id()) for r in readers)


def _roots_agree(*devices):
    """Each device's kept root is the one a scan of its table finds (the first of its owner's roots)."""
    for d in devices:
        assert d.root_id() == d._find_root()


def test_the_root_follows_every_change_that_can_make_or_unmake_one():
    """Local writes and downloads that set isRoot or owner_id (on a new object, on an existing one,
    on the root itself) or erase objects: each device's root is always the first of its owner's
    roots, as a scan of its table finds it."""
    env, server, a, b = pair()

    def update(pk, field, value):
        return {"op": "Update", "table": "Node", "object": pk, "field": field, "value": value, "is_default": False}

    first = a.create_root()
    env.run(until=1)
    _roots_agree(a, b)
    other = a.new_id()
    a.write([{"op": "CreateObject", "table": "Node", "object": other}, update(other, "isRoot", True),
             update(other, "owner_id", "someone else")])
    _roots_agree(a)
    a.write([update(other, "owner_id", "u")])  # a root of u's now, but after the first in table order
    _roots_agree(a)
    assert a.root_id() == first
    a.write([update(first, "isRoot", False)])  # the root unmade: the other one takes over
    _roots_agree(a)
    assert a.root_id() == other
    env.run(until=2)
    _roots_agree(a, b)
    assert b.root_id() is None  # b's subscription never had the other object (it was someone else's)
    a.write([update(first, "isRoot", True)])
    env.run(until=3)
    _roots_agree(a, b)
    assert a.root_id() == b.root_id() == first
    b.write([{"op": "EraseObject", "table": "Node", "object": first}])
    env.run(until=4)
    _roots_agree(a, b)
    assert a.root_id() == other and b.root_id() is None


def test_ids_are_the_version_4_uuids_of_the_devices_generator():
    """`new_id` (made by hand for speed) is what `uuid` makes of the same random bits."""
    import uuid

    env = simpy.Environment()
    device = Device(env, SyncServer(env, random.Random(0), 0.05, 0.0), 2, "u", random.Random(7))
    same = random.Random(7)
    for _ in range(2000):
        pk = device.new_id()
        assert pk == str(uuid.UUID(int=same.getrandbits(128), version=4))
        assert uuid.UUID(pk).version == 4 and uuid.UUID(pk).variant == uuid.RFC_4122


def test_an_observed_append_notifies_what_the_diff_of_the_two_views_gives():
    """`add_to_root` on an observed device tells its listeners exactly what `notification` finds
    between the view before and after the append (made without the diff), with other devices'
    downloads and removals of notes in between."""
    from repro_kit._history import notification

    env, server, a, b = pair()
    a.create_root()
    env.run(until=1)
    notes = []
    a.observe(notes.append)

    def view():
        return list(a.visible_children(a.root_id())), set(a.owned_ids())

    for i in range(6):
        before = view()
        a.add_to_root(f"a{i}")
        assert notes[-1] == notification(env.now, "device", before, view())
        b.add_to_root(f"b{i}")
        if i == 3:  # a removal downloaded: the view the next append starts from shrank
            b.write([{"op": "ArrayErase", "table": "Node", "object": b.root_id(), "field": "children", "index": 0,
                      "prior_size": len(b.state["Node"][b.root_id()]["children"])}])
        env.run(until=env.now + 0.3)
        assert a._view() == view()  # the view the device keeps while observed is its view
    assert len(notes) > 6 and any(n.left for n in notes)  # the downloads were notified too, the removal among them
