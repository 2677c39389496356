"""The report's observations, on the emulator with defaults (issue: the emulated stack reproduces the loss)."""

import pytest

from repro_kit._history import Event

from repro_kit.client import connect
from repro_kit.emulator.session import EmulatedSession
from tests.scenario import WRITES, report_scenario


@pytest.fixture(scope="module")
def production():
    return report_scenario(seed=7)


def test_while_resync_pending_atlas_holds_only_pre_deploy_nodes_device_shows_all(production):
    pending = production["pending"]
    root_id = production["device"].root_id
    assert pending["atlas_ids"] == {root_id, *production["before"]}
    assert pending["atlas"].root_children == len(production["before"])
    assert pending["device"].nodes_total == WRITES + 1
    assert pending["device_children"] == production["ids"]  # every node, in order, in the root's children


def test_minutes_later_changes_reach_the_device_as_a_server_batch(production):
    batches = production["batches"]
    assert batches, "the device saw no re-import"
    first_at = batches[0][0]
    assert 180 <= first_at - 5.5 <= 190  # ~3 minutes after the deploy (the report's video)
    # Every document of the snapshot (root + pre-deploy nodes) comes back, at most 20 per batch.
    assert sum(size for _, size in batches) == 1 + len(production["before"])
    assert all(size <= 20 for _, size in batches)


def test_batches_of_about_twenty_with_a_production_sized_tree():
    result = report_scenario(seed=3, prefill=45)
    sizes = [size for _, size in result["batches"]]
    assert sizes[:2] == [20, 20]  # "batches of around 20 or so documents"
    assert sum(sizes) == 1 + 45 + len(result["before"])


def test_afterwards_total_right_but_root_lacks_exactly_post_deploy_nodes(production):
    device = production["device"]
    assert device.nodes_total == WRITES + 1
    assert production["device_children"] == production["before"]
    assert set(production["after"]).isdisjoint(production["device_children"])
    assert len(production["after"]) == 14


def test_atlas_agrees_once_translation_resumes(production):
    atlas = production["atlas"]
    assert atlas.nodes_total == WRITES + 1  # the orphans' documents reached Atlas
    assert production["atlas_root"]["children"] == production["before"]


@pytest.mark.parametrize("kwargs", [{"mode": "development"}, {"encoding": "diff"}, {"tree": "parent"}],
                         ids=["development", "diff", "parent-pointer"])
def test_no_loss(kwargs):
    result = report_scenario(seed=7, **kwargs)
    assert result["device_children"] == result["ids"]
    assert result["device"].nodes_total == WRITES + 1
    assert result["atlas"].root_children == WRITES
    assert result["atlas"].nodes_total == WRITES + 1


def test_a_deploy_while_the_root_has_no_children_loses_nothing_even_with_replace():
    """The re-import writes the root's empty list as inserts only (no Clear), so the
    appends made during the halt survive: production mode, replace encoding, deploy at 0."""
    result = report_scenario(seed=7, deploy_at=0.0)
    assert result["pending"]["atlas"].root_children == 0  # the snapshot held an empty root
    assert result["batches"], "the re-import still happened"
    assert result["device_children"] == result["ids"]
    assert result["atlas"].root_children == WRITES


def test_reimport_new_values_reinserts_nothing_in_the_reports_scenario():
    """No document holds the new field, so nothing is re-inserted: no batch, no loss.
    The report's own observation (batches minutes later) does not occur: why "all" is the default."""
    result = report_scenario(seed=7, reimport="new-values")
    assert result["batches"] == []
    assert result["device_children"] == result["ids"]
    assert result["atlas"].root_children == WRITES
    assert result["pending"]["atlas"].nodes_total < WRITES + 1  # translation still halts for the delay


def test_reimport_new_values_reinserts_only_documents_holding_the_field():
    s = connect(seed=3, reimport="new-values")
    s.add_to_root("a")
    s.wait(1)
    tagged = s.add_to_root("b")
    s.wait(1)
    s.collection.update_one({"_id": tagged}, {"$set": {"tags": ["x"]}})  # written in Atlas
    s.wait(1)
    records = []
    s.history(records.append)
    s.deploy_schema_change("tags", "array<string>")
    s.wait(200)
    assert [e.fields["batch"] for e in records if isinstance(e, Event) and e.kind == "batch"] == [1]


def test_development_mode_has_no_halt_so_atlas_keeps_up():
    result = report_scenario(seed=7, mode="development")
    assert result["pending"]["atlas"].nodes_total == WRITES + 1
    assert result["batches"] == []


def test_same_seed_same_outcome_event_for_event():
    a = report_scenario(seed=11)
    b = report_scenario(seed=11)
    assert a["ids"] == b["ids"]
    assert a["records"] == b["records"]
    c = report_scenario(seed=12)
    assert c["ids"] != a["ids"]


def test_without_a_deploy_nothing_is_lost():
    result = report_scenario(seed=1, deploy_at=None, settle=60)
    assert result["device_children"] == result["ids"]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"backend": "nope"}, "backend"),
        ({"mode": "staging"}, "mode"),
        ({"encoding": "zip"}, "encoding"),
        ({"resync_delay_s": -1}, "resync_delay_s"),
        ({"resync_batch_size": 0}, "resync_batch_size"),
        ({"bogus": 1}, "bogus"),
        ({"seed": "x"}, "seed"),
        ({"tree": "graph"}, "tree"),
        ({"reimport": "some"}, "reimport"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        connect(**kwargs)


@pytest.mark.parametrize("field, bson_type, name", [
    ("9lives", "string", "field"), ("tags", "array<nothing>", "bson_type"), ("tags", "", "bson_type"),
    ("text", "string", "field"),
])
def test_bad_deploy_input_names_the_parameter(field, bson_type, name):
    session = connect()
    with pytest.raises(ValueError, match=name):
        session.deploy_schema_change(field, bson_type)
    assert session.control.deployments == []


def test_session_reuse_like_a_notebook():
    s = connect(seed=2)
    assert s.info().root_children == 0 and s.info().nodes_total == 1
    root = s.root()
    assert root["isRoot"] and root["owner_id"] == s.info().user_id
    a = s.add_to_root("a")
    s.wait(1)
    b = s.add_to_root("b")
    s.wait(1)
    assert [n["_id"] for n in s.nodes()] == [root["_id"], a, b]
    assert s.atlas.info().root_children == 2
    assert {d["_id"] for d in s.atlas.nodes()} == {root["_id"], a, b}
    assert {a, b} <= s.device.acked


def test_reset_deletes_only_this_owners_nodes():
    s = connect(seed=4)
    s.collection.insert_one({"_id": "other-root", "text": "root", "isRoot": True, "owner_id": "someone-else",
                             "children": ["other-1"]})
    s.collection.insert_one({"_id": "other-1", "text": "x", "isRoot": False, "owner_id": "someone-else",
                             "children": []})
    s.add_to_root("mine")
    s.wait(2)
    assert s.reset() == 2
    s.wait(2)
    assert s.info().nodes_total == 0
    assert s.atlas.info().nodes_total == 0
    assert {d["_id"] for d in s.collection.find({})} == {"other-root", "other-1"}
    assert s.device.table.keys().isdisjoint({"other-root", "other-1"})  # never synced to this user


def test_other_devices_of_the_owner_converge():
    s = connect(seed=5)
    other = s.add_device()
    s.wait(1)
    assert other.visible_children(other.root_id()) == []
    s.add_to_root("from device 1")
    other.add_to_root("from device 2")
    s.wait(2)
    assert s.device.visible_children(s.device.root_id()) == other.visible_children(other.root_id())
    assert len(other.visible_children(other.root_id())) == 2


def test_realtime_mode_runs_at_wall_clock_pace():
    s = connect(realtime=True, resync_delay_s=0.2)
    assert isinstance(s, EmulatedSession)
    start = s.now()
    s.add_to_root("x")
    s.wait(0.3)
    assert s.now() >= start + 0.3
    assert s.atlas.info().root_children == 1
