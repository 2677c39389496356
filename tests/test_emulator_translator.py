import random

import pytest
import simpy

from repro_kit.emulator.atlas import AtlasCollection
from repro_kit.emulator.device import Device
from repro_kit.emulator.server import SyncServer
from repro_kit.emulator.translator import Translator, _list_diff
from repro_kit.emulator import ot


def stack(encoding="replace"):
    env = simpy.Environment()
    server = SyncServer(env, random.Random(0), 0.05, 0.0)
    atlas = AtlasCollection()
    atlas._clock = lambda: env.now
    tr = Translator(env, server, atlas, encoding, lag_s=0.1)
    dev = Device(env, server, 2, "u", random.Random(1))
    return env, server, atlas, tr, dev


def test_sync_to_atlas_after_the_lag():
    env, server, atlas, tr, dev = stack()
    root = dev.create_root()
    n = dev.add_to_root("x")
    env.run(until=0.12)
    assert atlas.find_one({"_id": n}) is None  # upload 50 ms + lag 100 ms not yet elapsed
    env.run(until=1)
    assert atlas.find_one({"_id": root})["children"] == [n]
    assert atlas.find_one({"_id": n})["text"] == "x"


def test_atlas_edit_becomes_a_server_origin_changeset_reaching_the_device():
    env, server, atlas, tr, dev = stack()
    root = dev.create_root()
    env.run(until=1)
    atlas.update_one({"_id": root}, {"$set": {"text": "renamed in Atlas"}})
    env.run(until=2)
    assert dev.table[root]["text"] == "renamed in Atlas"


def test_replace_encoding_writes_clear_then_inserts():
    env, server, atlas, tr, dev = stack("replace")
    ins = tr.encode({"_id": "r", "text": "t", "children": ["a", "b"]}, {"Node": {"r": {"_id": "r", "children": ["a"]}}})
    assert [i["op"] for i in ins] == ["CreateObject", "Update", "Clear", "ArrayInsert", "ArrayInsert"]


def test_replace_encoding_of_an_empty_base_list_emits_no_clear():
    """realm-core's Lst::clear replicates only a non-empty list: List::assign on [] is inserts only."""
    env, server, atlas, tr, dev = stack("replace")
    ins = tr.encode({"_id": "r", "text": "t", "children": ["a"]}, {"Node": {"r": {"_id": "r", "children": []}}})
    assert [i["op"] for i in ins] == ["CreateObject", "Update", "ArrayInsert"]
    ins = tr.encode({"_id": "n", "text": "t", "children": []}, {"Node": {}})
    assert [i["op"] for i in ins] == ["CreateObject", "Update"]


def test_diff_encoding_writes_only_the_difference():
    env, server, atlas, tr, dev = stack("diff")
    ins = tr.encode({"_id": "r", "text": "t", "children": ["a", "c", "b"]},
                    {"Node": {"r": {"_id": "r", "children": ["a", "b"]}}})
    assert [(i["op"], i.get("index"), i.get("value")) for i in ins if i["op"].startswith("Array")] == [("ArrayInsert", 1, "c")]


@pytest.mark.parametrize("old, new", [([], ["a"]), (["a", "b", "c"], ["c", "a"]), (["a", "b"], []), (["x"] * 3, ["x", "y"])])
def test_list_diff_turns_old_into_new(old, new):
    state = {"Node": {"r": {"_id": "r", "children": list(old)}}}
    ot.apply(state, {"origin": 1, "timestamp": 1, "instructions": _list_diff({"table": "Node", "object": "r"}, old, new)})
    assert state["Node"]["r"]["children"] == new


def test_resync_halts_snapshots_and_reimports_in_batches():
    env, server, atlas, tr, dev = stack()
    dev.create_root()
    for i in range(4):
        dev.add_to_root(str(i))
    env.run(until=1)
    told = []
    tr.nemesis_listeners.append(lambda f, value: told.append((env.now, f, value)))
    tr.resync(delay_s=10, batch_size=2, batch_interval_s=0.5)
    late = dev.add_to_root("during halt")
    env.run(until=5)
    assert atlas.find_one({"_id": late}) is None  # halted
    assert told[0][1] == "halt" and told[0][2]["snapshot_docs"] == 5
    assert tr.pending() == (1, 11)  # halted since, re-import due
    env.run(until=20)
    assert [f for _, f, _ in told] == ["halt", "resume"]
    assert told[1][2]["batches"] == 3 and told[1][0] == pytest.approx(12.0) and tr.pending() is None
    assert atlas.find_one({"_id": late}) is not None  # flushed after the halt lifted
    assert late not in dev.visible_children(dev.root_id())  # ... but orphaned by the re-import


def test_unknown_encoding():
    env = simpy.Environment()
    with pytest.raises(ValueError, match="encoding"):
        Translator(env, SyncServer(env, random.Random(0), 0, 0), AtlasCollection(), "xml")
