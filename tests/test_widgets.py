"""The control panel, driven headlessly: Button.click(), then wait_idle()."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro_kit.client import connect
from repro_kit.widgets import ControlPanel

FAST = {"resync_delay_s": 8.0}


@pytest.fixture
def session():
    return connect(seed=3, **FAST)


@pytest.fixture
def panel(session, tmp_path):
    p = ControlPanel(session, runs_dir=tmp_path / "runs", report=False)
    assert p.wait_idle(10)
    yield p
    p.close()


def click(panel: ControlPanel, button) -> None:
    button.click()
    assert panel.wait_idle(30), "action did not finish"


def test_status_line_shows_both_views_after_an_action(panel, session):
    click(panel, panel.add_button)
    assert "Added" in panel.text
    assert panel.status["device"] == (1, 2)  # root + one child, seen by the device at once
    panel.wait_s.value = 5
    click(panel, panel.wait_button)
    assert panel.status["atlas"] == (1, 2)  # uploaded and translated by then
    assert "Device" in panel.status_html.value and "Atlas" in panel.status_html.value


def test_print_nodes_and_info_write_to_the_output(panel, session):
    click(panel, panel.add_button)
    click(panel, panel.nodes_button)
    click(panel, panel.info_button)
    root_id = session.info().root_id
    assert f"root {root_id}" in panel.text
    assert f"user {session.info().user_id}: device 2 nodes, root has 1 children" in panel.text


def test_run_test_records_a_run_and_shows_the_lost_count(panel, session, tmp_path):
    panel.writes.value, panel.interval.value, panel.deploy_at.value, panel.settle.value = 10, 1.0, 3.5, 30.0
    click(panel, panel.run_button)
    assert not panel.errors, panel.errors
    run = panel.last_run
    assert run is not None and Path(run.path).is_dir()
    assert Path(run.path).parent == tmp_path / "runs"
    assert (Path(run.path) / "history.jsonl").exists()
    lost = len(panel.last_verdict.lost)
    assert lost > 0  # production + replace: the deploy window's nodes are orphaned
    assert f"{lost} nodes lost" in panel.text
    assert panel.progress.value == panel.progress.max == pytest.approx(9 + 30.0)
    assert session.info().root_children == 10 - lost
    assert panel.status["device"] == (10 - lost, 11)


def test_run_test_without_deploy_loses_nothing(panel):
    panel.writes.value, panel.settle.value = 5, 20.0
    panel.deploy_in_run.value = False
    click(panel, panel.run_button)
    assert not panel.errors, panel.errors
    assert "0 nodes lost" in panel.text


def test_buttons_are_disabled_while_an_action_runs_and_a_second_action_is_refused(panel, session):
    panel.writes.value, panel.settle.value, panel.deploy_in_run.value = 5, 10.0, False
    with session._lock:  # holds the model still: the worker blocks inside Run test
        panel.run_button.click()
        assert panel.busy
        assert panel.add_button.disabled and panel.run_button.disabled and panel.writes.disabled
        assert panel.add_to_root() is False
        assert "Add to root: busy with another action" in panel.text
    assert panel.wait_idle(30)
    assert not panel.errors, panel.errors
    assert not panel.add_button.disabled and not panel.run_button.disabled
    assert session.info().root_children == 5  # the refused Add to root added nothing


def test_reset_without_confirmation_deletes_nothing(panel, session):
    click(panel, panel.add_button)
    click(panel, panel.reset_button)
    assert panel.confirm_box.layout.display != "none"  # the Confirm/Cancel pair is showing
    assert panel.add_button.disabled
    click(panel, panel.cancel_button)
    assert "nothing deleted" in panel.text
    assert panel.confirm_box.layout.display == "none"
    assert session.info().nodes_total == 2
    assert panel.confirm_reset() is False  # confirming after a cancel does nothing either
    assert session.info().nodes_total == 2


def test_reset_confirmed_deletes_only_this_owners_nodes(panel, session):
    click(panel, panel.add_button)
    click(panel, panel.add_button)
    session.wait(5)
    others = [{"_id": f"other-{i}", "owner_id": "someone-else", "text": f"theirs {i}", "isRoot": i == 0,
               "children": []} for i in range(3)]
    for doc in others:
        session.collection.insert_one(doc)
    click(panel, panel.reset_button)
    click(panel, panel.confirm_button)
    assert "Deleted 3 nodes." in panel.text
    session.wait(5)
    assert session.info().nodes_total == 0
    assert session.atlas.info().nodes_total == 0
    survivors = list(session.collection.find({"owner_id": "someone-else"}))
    assert sorted(d["_id"] for d in survivors) == [d["_id"] for d in others]


def test_a_failing_action_shows_its_error_in_the_panel(panel, session):
    panel.bson_type.value = "array<banana>"
    click(panel, panel.deploy_button)
    assert len(panel.errors) == 1
    assert panel.errors[0].startswith("Deploy schema change failed: ValueError: bson_type:")
    assert "ValueError" in panel.text and "banana" in panel.text
    assert "ValueError" in panel.error_html.value
    assert not panel.deploy_button.disabled  # the panel recovers
    panel.bson_type.value = "array<string>"
    click(panel, panel.deploy_button)
    assert "Deployed tags (array<string>): successful." in panel.text


def test_bad_run_parameters_are_reported_not_raised(panel):
    panel.writes.value, panel.interval.value, panel.deploy_at.value = 5, 1.0, 5000.0  # after the run ends
    click(panel, panel.run_button)
    assert panel.errors and "deploy_at_s" in panel.errors[-1]
    assert panel.last_run is None


def test_resync_batches_reach_the_panel_as_they_happen(panel, session):
    click(panel, panel.add_button)
    click(panel, panel.deploy_button)
    panel.wait_s.value = 30
    click(panel, panel.wait_button)
    assert "batch of" in panel.text


def test_the_panel_displays_as_a_widget(panel):
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_run_test_writes_the_bug_report_bundle_by_default(session, tmp_path):
    panel = ControlPanel(session, runs_dir=tmp_path / "runs")
    try:
        panel.writes.value, panel.deploy_at.value, panel.settle.value = 4, 1.5, 12.0
        click(panel, panel.run_button)
        assert not panel.errors, panel.errors
        run_dir = Path(panel.last_run.path)
        assert (run_dir / "report.md").exists() and (run_dir / "report.json").exists()
        assert f"Report: {run_dir / 'report.md'}" in panel.text
    finally:
        panel.close()
