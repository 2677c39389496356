from repro_kit.client import connect
from repro_kit.watcher import Watcher


def test_baseline_then_notifications_from_both_views():
    s = connect(seed=1, prefill=2)
    events = []
    t0 = s.now()
    w = Watcher(s, events.append, t0)
    w.start()
    base = [e for e in events if e["time"] == 0]
    root = s.info().root_id
    for obs in ("device", "atlas"):
        kinds = [e["kind"] for e in base if e["observer"] == obs]
        assert kinds.count("doc_insert") == 3 and kinds.count("enter") == 2 and kinds[-1] == "counts"
        assert all(e.get("node_id") != root for e in base if e["kind"] == "enter")
    node = s.add_to_root("x")
    s.wait(1)
    mine = [e for e in events if e.get("node_id") == node]
    assert [(e["observer"], e["kind"]) for e in mine] == [
        ("device", "doc_insert"), ("device", "enter"), ("atlas", "doc_insert"), ("atlas", "enter")]
    assert mine[2]["time"] > mine[0]["time"]  # Atlas sees it after upload + translation
    info = w.poll()
    assert events[-1] == {"time": events[-1]["time"], "observer": "atlas", "kind": "poll",
                          "root_children": 3, "nodes_total": 4} and info.root_children == 3
    w.stop()
    count = len(events)
    s.add_to_root("y")
    s.wait(1)
    assert len(events) == count  # stopped: nothing more recorded


def test_reimport_batch_is_recorded_with_its_size():
    s = connect(seed=1, resync_delay_s=10)
    events = []
    w = Watcher(s, events.append, s.now())
    w.start()
    s.add_to_root("a")
    s.wait(1)
    s.deploy_schema_change("tags", "array<string>")
    s.add_to_root("b")
    s.wait(20)
    batches = [e for e in events if e["kind"] == "batch"]
    assert [e["batch"] for e in batches] == [2] and batches[0]["observer"] == "device"
    leaves = [e for e in events if e["kind"] == "leave"]
    assert [e["observer"] for e in leaves] == ["device"] and leaves[0]["time"] == batches[0]["time"]
