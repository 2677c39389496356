import random

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
    b.listeners.append(notes.append)
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
