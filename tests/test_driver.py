import threading
import time

import pytest

from repro_kit import driver as writer
from repro_kit import recording
from repro_kit.client import connect


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return writer.run_test(connect(seed=3), out=tmp_path_factory.mktemp("run") / "r")


def test_history_is_jepsen_shaped(run):
    h = run.history
    adds = h[h.f == "add"]
    assert (adds.type == "invoke").sum() == 20 and (adds.type == "ok").sum() == 20
    assert list(h["index"]) == list(range(len(h)))
    inv = adds[adds.type == "invoke"].set_index("value").time
    ok = adds[adds.type == "ok"].set_index("value").time
    assert ((ok - inv.reindex(ok.index)) > 0).all()  # acknowledged after the write
    assert list(inv) == [float(i) for i in range(20)]
    nem = h[h.process.astype(str) == "nemesis"]
    assert list(zip(nem.f, nem.type)) == [("deploy", "invoke"), ("halt", "info"), ("deploy", "ok"), ("resume", "info")]
    assert nem.time.iloc[0] == 5.5 and 185 < nem.time.iloc[-1] < 190


def test_meta_and_events_saved(run):
    assert run.meta["finished"] is True and run.meta["mode"] == "production" and run.meta["writes"] == 20
    assert run.meta["params"]["resync_batch_size"] == 20
    assert set(run.events.observer.astype(str)) == {"device", "atlas"}
    again = recording.load_run(run.path)
    assert len(again.events) == len(run.events)


@pytest.mark.parametrize("kwargs, name", [
    ({"interval_s": -1}, "interval_s"), ({"interval_s": 0}, "interval_s"), ({"writes": 0}, "writes"),
    ({"deploy_at_s": 1000}, "deploy_at_s"), ({"deploy_at_s": -1}, "deploy_at_s"), ({"settle_s": -5}, "settle_s"),
    ({"field": "bad name"}, "field"), ({"bson_type": "array<>"}, "bson_type"), ({"writes": True}, "writes"),
])
def test_bad_schedule_raises_before_anything_is_written(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        writer.run_test(connect(), out=tmp_path / "r", **kwargs)
    assert not (tmp_path / "r").exists()


def test_pausing_writes_during_the_resync_prevents_the_loss(tmp_path):
    s = connect(seed=3, resync_delay_s=5)
    run = writer.run_test(s, writes=10, deploy_at_s=2.5, settle_s=20, out=tmp_path / "r", pause_during_resync=True)
    invokes = run.history[(run.history.f == "add") & (run.history.type == "invoke")]
    assert (invokes.time > 7.5).sum() >= 6  # held until the resync ended
    assert s.info().root_children == 10


def test_add_to_root():
    s = connect()
    node = writer.add_to_root(s, "hello")
    assert s.nodes()[-1]["_id"] == node and s.nodes()[-1]["text"] == "hello"


def test_the_run_ends_with_a_final_read_of_the_device(run):
    reads = run.history[(run.history.f == "read") & (run.history.type == "ok")]
    (value,) = reads.value
    assert value["root_id"] == run.meta["root_id"] and value["nodes_total"] == 21
    assert len(value["children"]) == 6  # the writes before the deploy's snapshot; the rest were orphaned


def test_a_deploy_by_hand_during_a_run_is_recorded_from_the_stream_and_replaces_the_scheduled_one(tmp_path):
    """A deploy made by another thread while the run waits (the menu's, the panel's) lands in the
    run's history from the session's stream, and the run does not deploy a second time."""
    s = connect(seed=4, realtime=True, resync_delay_s=1.0)
    control = writer.RunControl()
    done = threading.Event()
    result = {}

    def run_it():
        result["run"] = writer.run_test(s, writes=6, interval_s=0.2, deploy_at_s=0.9, settle_s=2.5,
                                        out=tmp_path / "r", control=control)
        done.set()

    thread = threading.Thread(target=run_it)
    thread.start()
    while s.info().root_children < 2:  # two writes made: deploy by hand now, before the scheduled time
        time.sleep(0.01)
    s.deploy_schema_change("tags", "array<string>")
    assert done.wait(60)
    thread.join()
    h = result["run"].history
    deploys = h[(h.f == "deploy")]
    assert list(deploys.type) == ["invoke", "ok"] and deploys.value.iloc[0]["manual"] is True  # the hand's
    first_write_after = h[(h.f == "add") & (h.type == "invoke") & (h.time > deploys.time.iloc[0])]
    assert len(first_write_after) >= 1  # it came during the writes, as the user made it


def test_stop_keeps_a_partial_run_that_says_so(tmp_path):
    s = connect(seed=5, realtime=True)
    control = writer.RunControl()
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("run", writer.run_test(
        s, writes=50, interval_s=0.1, deploy_at_s=None, settle_s=0, out=tmp_path / "r", control=control)))
    thread.start()
    while s.info().root_children < 3:
        time.sleep(0.01)
    control.stop()
    thread.join(60)
    run = out["run"]
    assert run.meta["finished"] is False and control.stopped_at_s == run.meta["stopped_at_s"] > 0
    assert (run.history.f == "read").any()  # the read at the stop: what the device showed then
