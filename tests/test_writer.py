import pytest

from repro_kit import recording, writer
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
