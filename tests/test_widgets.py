"""The control panel, driven headlessly: Button.click(), then wait_idle().

Virtual-time sessions keep these fast; `test_real_time_*` run a short scenario at wall-clock
pace to show the panel's own behaviour there (Deploy during a run, Stop, the live chart)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from repro_kit import recording
from repro_kit.client import connect
from repro_kit.widgets import SHOWN_LINES, ControlPanel, live_chart_png

FAST = {"resync_delay_s": 8.0}


@pytest.fixture
def session():
    return connect(seed=3, **FAST)


@pytest.fixture
def panel(session, tmp_path):
    p = ControlPanel(session, runs_dir=tmp_path / "runs")
    assert p.wait_idle(10)
    yield p
    p.close()


def click(panel: ControlPanel, button) -> None:
    button.click()
    assert panel.wait_idle(60), "action did not finish"


def test_status_line_shows_both_views_after_an_action(panel, session):
    click(panel, panel.add_button)
    assert "Added a node to the root" in panel.text
    assert "root's children <b>1</b>, nodes <b>2</b>" in panel.status_html.value.split("Atlas")[0]
    panel.wait_s.value = 5
    click(panel, panel.wait_button)
    atlas = panel.status_html.value.split("Atlas")[1]
    assert "root's children <b>1</b>, nodes <b>2</b>" in atlas  # uploaded and translated by then


def test_print_nodes_and_info_show_what_the_original_tool_printed(panel, session):
    click(panel, panel.add_button)
    click(panel, panel.nodes_button)
    click(panel, panel.info_button)
    info = session.info()
    assert "root\t(1 children)\n   a child node\t(0 children)" in panel.text
    assert (f"User id: {info.user_id}\nRoot node id: {info.root_id}\nTotal node objects: 2\n"
            "Number of children in root: 1\n") in panel.text
    assert "Atlas (a refresh of the Node collection):" in panel.text


def test_run_test_records_a_run_and_shows_the_verdict(panel, session, tmp_path):
    panel.writes.value, panel.interval.value, panel.settle.value = 10, 1.0, 30.0
    panel.deploy_in_run.value, panel.deploy_at.value = True, 3.5
    click(panel, panel.run_button)
    assert not panel.errors, panel.errors
    run = panel.last_run
    assert run is not None and Path(run.path).parent == tmp_path / "runs"
    lost = len(panel.last_analysis.verdict.lost)
    assert lost == 6  # writes at 4..9 s, after the deploy at 3.5 s
    assert 'Adding node with text "Test node 1" (9 remaining)' in panel.text
    assert "\t: User has 11 total nodes" in panel.text and "\t: Root has 4 children" in panel.text
    assert "6 of 10 nodes orphaned" in panel.text
    assert f"Report: {Path(run.path) / 'report.md'}" in panel.text and (Path(run.path) / "report.md").exists()
    assert panel.progress_label.value == "finished"
    assert session.info().root_children == 10 - lost


def test_run_test_has_no_automatic_deploy_unless_asked(panel):
    panel.writes.value, panel.settle.value = 5, 20.0
    click(panel, panel.run_button)
    assert not panel.errors, panel.errors
    assert "deploy the schema change by hand while it runs" in panel.text
    assert "No loss: all 5 acknowledged nodes" in panel.text


def test_two_run_tests_with_a_reset_between_both_complete(panel, session):
    panel.writes.value, panel.settle.value, panel.deploy_in_run.value, panel.deploy_at.value = 4, 15.0, True, 1.5
    click(panel, panel.run_button)
    click(panel, panel.reset_button)
    click(panel, panel.confirm_button)
    click(panel, panel.run_button)
    assert not panel.errors, panel.errors
    assert panel.text.count("Run test finished") == 2
    assert [d["field"] for d in session.control.deployments] == ["tags", "tags_2"]  # a new field each time


def test_reset_without_confirmation_deletes_nothing(panel, session):
    click(panel, panel.add_button)
    click(panel, panel.reset_button)
    assert panel.confirm_box.layout.display != "none"  # the Confirm/Cancel pair is showing
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
    assert "Deleting 3 nodes" in panel.text
    session.wait(5)
    assert session.info().nodes_total == 0
    assert session.atlas.info().nodes_total == 0
    survivors = list(session.collection.find({"owner_id": "someone-else"}))
    assert sorted(d["_id"] for d in survivors) == [d["_id"] for d in others]


def test_a_failing_action_shows_its_error_in_the_panel(panel, session):
    panel.bson_type.value = "array<banana>"
    click(panel, panel.deploy_button)
    assert len(panel.errors) == 1
    assert panel.errors[0].startswith("Deploy schema change failed: bson_type: 'array<banana>' is not a BSON type")
    assert panel.errors[0].endswith("nothing was deployed")  # bad input in words, no Python exception name
    assert "banana" in panel.text and "banana" in panel.error_html.value and "ValueError" not in panel.text
    assert not panel.deploy_button.disabled  # the panel recovers
    panel.bson_type.value = "array<string>"
    click(panel, panel.deploy_button)
    assert "Deployed the optional field tags (array<string>)" in panel.text


def test_bad_run_parameters_are_reported_not_raised(panel):
    panel.writes.value, panel.interval.value = 5, 1.0
    panel.deploy_in_run.value, panel.deploy_at.value = True, 5000.0  # after the run ends
    click(panel, panel.run_button)
    assert panel.errors and "deploy_at_s" in panel.errors[-1]
    assert panel.last_run is None


def test_the_output_box_shows_the_newest_lines_without_scrolling(panel):
    for i in range(40):
        panel.say(f"line {i}")
    html = panel.log_html.value
    assert "line 39" in html and "line 21" not in html.split("</div>")[-1]
    assert f"({40 - SHOWN_LINES} earlier lines: panel.text)" in html
    assert "overflow" not in html  # nothing to scroll: the box grows to its lines
    assert "line 0\n" in panel.text


def test_resync_batches_reach_the_panel_as_they_happen(panel, session):
    click(panel, panel.add_button)
    click(panel, panel.deploy_button)
    panel.wait_s.value = 30
    click(panel, panel.wait_button)
    assert "a re-import batch of 1 documents from the server" in panel.text  # virtual time: no time between clicks
    assert bytes(panel.chart.value).startswith(b"\x89PNG")


def test_the_panel_displays_as_a_widget(panel):
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_live_chart_draws_counts_halt_and_batches():
    series = [(0.0, "device", 0, 1), (0.0, "atlas", 0, 1), (1.0, "device", 1, 2), (1.2, "atlas", 1, 2),
              (2.0, "device", 2, 3), (9.0, "device", 1, 3), (9.2, "atlas", 1, 3)]
    marks = [(1.5, "deploy", "tags"), (1.5, "halt", {}), (9.0, "batch", 2), (9.0, "resume", {})]
    png = live_chart_png(series, marks, now=12.0, title="12 s elapsed")
    assert png.startswith(b"\x89PNG") and len(png) > 5000


# -- real time: the panel as the report's author would have used it ------------------------


@pytest.fixture
def realtime_panel(tmp_path):
    p = ControlPanel(connect(seed=5, realtime=True, resync_delay_s=2.0), runs_dir=tmp_path / "runs")
    yield p
    p.close()


def until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_real_time_deploy_by_hand_during_a_run_with_a_moving_live_chart(realtime_panel):
    p = realtime_panel
    p.writes.value, p.interval.value, p.settle.value = 8, 0.4, 4.0
    p.run_button.click()
    until(lambda: p.actions.running)
    assert p.run_button.disabled is False or p.actions.running
    until(lambda: 'Test node 3' in p.text)
    assert not p.deploy_button.disabled and not p.stop_button.disabled  # Deploy stays enabled during a run
    p.deploy_button.click()
    until(lambda: "Deployed the optional field tags" in p.text)
    first_chart = p.chart.value
    until(lambda: p.chart.value != first_chart, timeout=5)  # redrawn while the run goes
    until(lambda: "s left of" in p.progress_label.value)
    until(lambda: "Run test finished" in p.text, timeout=60)
    assert p.wait_idle(30) and not p.errors, p.errors
    history = p.last_run.history
    deploys = history[(history.f == "deploy") & (history.type == "invoke")]
    assert len(deploys) == 1 and deploys.value.iloc[0].get("manual") is True  # recorded in the run
    assert p.last_analysis.verdict.outcome == "lost"


def test_real_time_stop_keeps_a_loadable_partial_run(realtime_panel):
    p = realtime_panel
    p.writes.value, p.interval.value, p.settle.value = 20, 0.3, 60.0
    p.run_button.click()
    until(lambda: "Test node 2" in p.text)
    p.stop_button.click()
    until(lambda: "Run test stopped at" in p.text)
    assert p.wait_idle(30)
    run = recording.load_run(p.last_run.path)
    assert run.meta["finished"] is False and 0 < run.meta["stopped_at_s"] < 60
    assert p.progress_label.value == "stopped: partial run kept"
    assert p.last_analysis.verdict.outcome == "inconclusive"
