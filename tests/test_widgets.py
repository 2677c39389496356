"""The control panel, driven headlessly: Button.click(), then wait_idle().

Virtual-time sessions keep these fast; `test_real_time_*` run a short scenario at wall-clock
pace to show the panel's own behaviour there (Deploy during a run, Stop, the live chart)."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pytest

from repro_kit import recording
from repro_kit.client import connect
from repro_kit import findings
from repro_kit.widgets import ControlPanel, lab_location, live_chart_png

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
    assert "Device: root's children 1, nodes 2" in panel.status_text()
    assert "Device: root&#x27;s children 1, nodes 2" in panel.status_html.value
    assert "t = session time" in panel.status_text()  # no Run test yet: the clock says which it is
    panel.wait_s.value = 5
    click(panel, panel.wait_button)
    assert "Atlas: root's children 1, nodes 2" in panel.status_text()  # uploaded and translated by then


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
    assert "6 of 10 nodes orphaned" in panel.text and "6 of 10 nodes orphaned" in panel.result_html.value
    assert f"Report: {Path(run.path) / 'report.md'}" in panel.text and (Path(run.path) / "report.md").exists()
    assert re.search(r"\[App Services\] translation halted at 3\.5 s", panel.text)  # the run's clock
    assert "first loss at" in panel.text
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


def test_the_log_keeps_the_whole_history_in_blocks_that_are_appended(panel):
    for i in range(40):
        panel.say(f"line {i}")
    blocks = panel.log_column.children
    shown = "".join(b.value for b in blocks)
    assert all(f">line {i}<" in shown for i in range(40))  # nothing hidden
    assert "earlier lines" not in shown and "panel.text" not in shown
    before = [b.value for b in blocks]
    for i in range(40, 60):
        panel.say(f"line {i}")
    assert [b.value for b in panel.log_column.children[:len(before)]] == before  # appended, never rewritten
    layout = panel.log_box.layout
    assert (layout.flex_flow, layout.overflow) == ("column-reverse", "auto") and layout.height  # scrolls, follows


def test_print_nodes_with_many_children_keeps_its_head_line_in_one_block(panel, session):
    for i in range(23):
        session.add_to_root(f"note {i}")
    click(panel, panel.nodes_button)
    block = next(b.value for b in panel.log_column.children if "root" in b.value and "(23 children)" in b.value)
    assert block.count("(0 children)") == 23  # the head line and its 23 children, together


def test_status_and_print_info_show_the_pending_halt_with_a_countdown_in_run_time(panel, session):
    panel.writes.value, panel.settle.value = 3, 1.0
    click(panel, panel.run_button)  # the clock's zero: this Run test's start
    t0 = panel.actions.run_t0
    click(panel, panel.deploy_button)
    deployed = re.search(r"Deployed the optional field tags \(array<string>\) at ([\d.]+) s: successful\.", panel.text)
    assert deployed, panel.text
    at = float(deployed[1])
    assert at == pytest.approx(session.now() - t0, abs=0.05)  # run time, not session time
    due = at + FAST["resync_delay_s"]
    assert f"re-imports the collection at {due:.1f} s (in about 8 s)" in panel.text
    status = panel.status_text()
    assert f"Waiting: translation halted since {at:.1f} s; re-import due at {due:.1f} s (in 0:08)" in status, status
    click(panel, panel.info_button)
    assert f"Waiting: translation halted since {at:.1f} s; re-import due at {due:.1f} s (in 0:08)" in panel.text
    panel.wait_s.value = 3
    click(panel, panel.wait_button)
    assert "(in 0:05)" in panel.status_text()  # the countdown follows the clock
    panel.wait_s.value = 10
    click(panel, panel.wait_button)
    assert "Waiting" not in panel.status_text()  # re-imported: nothing to wait for
    assert re.search(r"translation resumed at ([\d.]+) s", panel.text)[1] == f"{due:.1f}"


def test_analysing_shows_between_the_runs_end_and_its_verdict(panel, monkeypatch):
    release, entered = threading.Event(), threading.Event()
    real = findings.analyse

    def slow(run):
        entered.set()
        assert release.wait(30)
        return real(run)

    monkeypatch.setattr("repro_kit.actions.findings.analyse", slow)
    panel.writes.value, panel.settle.value = 3, 2.0
    panel.run_button.click()
    assert entered.wait(30)
    panel._refresh()
    assert "analysing…" in panel.status_text() and "Analysing" in panel.result_html.value
    assert panel.progress_label.value == "analysing…"
    assert panel.text.rstrip().endswith("Analysing…") and "No loss" not in panel.text
    release.set()
    assert panel.wait_idle(30)
    assert "analysing" not in panel.status_text() and "NO LOSS" in panel.result_html.value
    lines = panel.text.splitlines()
    finished = next(i for i, line in enumerate(lines) if line.startswith("Run test finished"))
    verdict = next(i for i, line in enumerate(lines) if line.startswith("No loss"))
    assert finished < verdict  # the causal order: the run ends, then its verdict


def test_a_new_deploy_during_an_earlier_halt_gets_its_own_halt_and_reimport(panel, session):
    """Issue 17 item 7, as a user sees it: a run ends (here: its settle is short) during its
    deploy's halt, Reset; the pending halt and re-import are shown; a Deploy now gets its own
    full halt and re-import; Run test waits for that re-import, then runs, and its own deploy's
    loss reproduces."""
    panel.writes.value, panel.interval.value, panel.settle.value = 6, 1.0, 1.0
    panel.deploy_in_run.value, panel.deploy_at.value = True, 2.5
    click(panel, panel.run_button)
    assert panel.last_analysis.verdict.outcome == "inconclusive"  # ended before the re-import
    click(panel, panel.reset_button)
    click(panel, panel.confirm_button)
    assert "(Still waiting: translation halted since 2.5 s; re-import due at 10.5 s (in 0:04)" in panel.text
    click(panel, panel.deploy_button)  # during the earlier deploy's wait
    new = re.search(r"\[App Services\] a new deploy at ([\d.]+) s: translation stays halted \(since 2\.5 s\); Atlas "
                    r"was snapshotted again; its re-import is due at ([\d.]+) s", panel.text)
    assert new and float(new[2]) == pytest.approx(float(new[1]) + FAST["resync_delay_s"], abs=0.05), panel.text
    assert f"re-import due at {new[2]} s (in 0:08)" in panel.status_text()  # the new, full wait
    panel.settle.value = 20.0
    click(panel, panel.run_button)
    text = panel.text
    waits = text.index("Run test waits for the earlier deploy's re-import first (translation halted since 2.5 s; "
                       f"re-import due at {new[2]} s (in 0:08))")
    resumed = text.index(f"[App Services] translation resumed at {new[2]} s")  # not at 10.5 s: the old timer was cancelled
    starts = text.index("Run test starts now: translation has resumed")
    second = re.search(r"\[App Services\] translation halted at 2\.5 s; Atlas was snapshotted; its re-import is due "
                       r"at 10\.5 s", text[starts:])  # the run's own deploy, on the run's own clock
    assert waits < resumed < starts and second, text
    verdict = panel.last_analysis.verdict
    assert verdict.outcome == "lost" and len(verdict.lost) == 3 and verdict.first_loss_at_s >= 10.5  # it reproduces
    assert f"first loss at {verdict.first_loss_at_s:.1f} s" in panel.result_html.value


def test_export_writes_the_report_and_the_live_chart_and_links_them(panel, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JPY_SESSION_NAME", "02_write_and_deploy.ipynb")  # Lab's root: the notebook's folder
    panel.writes.value, panel.settle.value = 10, 30.0
    panel.deploy_in_run.value, panel.deploy_at.value = True, 3.5
    click(panel, panel.run_button)
    click(panel, panel.export_button)
    run_dir = Path(panel.last_run.path)
    for name in ("report.md", "report.html", "timeline.png", "timeline.svg", "sequence.png", "sequence.svg",
                 "live_chart.png", "live_chart.svg"):
        assert (run_dir / name).stat().st_size > 0, name
        assert name in panel.exported
    html = panel.export_out.outputs[0]["data"]["text/html"]
    rel = run_dir.relative_to(tmp_path).as_posix()
    assert f"href='{rel}/report.md'" in html and f"href='{rel}/live_chart.svg'" in html
    assert "filebrowser:go-to-path" in html and f'"path": "{rel}"' in html.replace("&quot;", '"')
    assert f"Exported to {rel}: report.md, report.html" in panel.text
    svg = (run_dir / "live_chart.svg").read_text()
    assert "seconds since Run test started" in svg


def test_export_before_any_run_saves_the_live_chart(panel):
    click(panel, panel.add_button)
    click(panel, panel.export_button)
    assert set(panel.exported) == {"live_chart.png", "live_chart.svg"}
    assert all(p.exists() and p.parent.parent == Path(panel.runs_dir) for p in panel.exported.values())
    assert "seconds (session time)" in panel.exported["live_chart.svg"].read_text()  # no Run test: labelled so


def test_lab_location_from_the_notebooks_path_and_through_a_link(tmp_path):
    root = tmp_path / "lab"
    (root / "notebooks").mkdir(parents=True)
    runs = root / "runs" / "r1"
    runs.mkdir(parents=True)
    assert lab_location(runs / "report.md", cwd=root / "notebooks", session_path="notebooks/02.ipynb") == \
        ("../runs/r1/report.md", "runs/r1/report.md")
    elsewhere = tmp_path / "home" / "repro-kit-runs" / "r2"
    elsewhere.mkdir(parents=True)
    assert lab_location(elsewhere, cwd=root / "notebooks", session_path="notebooks/02.ipynb") is None
    os.symlink(elsewhere.parent, root / "linked-runs")
    assert lab_location(elsewhere / "report.md", cwd=root / "notebooks", session_path="notebooks/02.ipynb") == \
        ("../linked-runs/r2/report.md", "linked-runs/r2/report.md")


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
    svg = live_chart_png(series, marks, now=12.0, start=1.0, fmt="svg").decode()
    assert "seconds since Run test started" in svg and "session time" not in svg


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
