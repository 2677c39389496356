import io
import json
import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest

from repro_kit import findings, recording
from repro_kit.cli import Menu, main
from repro_kit.client import connect

REPORT_KEYS = {"backend", "mode", "encoding", "writes", "deploy_at_s", "nodes_created", "nodes_total",
               "root_children", "atlas_nodes_total", "atlas_root_children", "orphaned", "lost_count",
               "first_loss_at_s", "resync_batches", "valid", "verdict", "inconclusive_reason", "causes"}


def run_cli(tmp_path, *args):
    out = tmp_path / "out"
    code = main(["run", "--out", str(out), *args])
    return code, out


def test_run_defaults_report_the_orphans(tmp_path, capsys):
    code, out = run_cli(tmp_path)
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report) == REPORT_KEYS
    history = recording.load_run(out).history
    invokes = history[(history.f == "add") & (history.type == "invoke")]
    after_deploy = [str(v) for v in invokes[invokes.time > 5.5].value]
    assert report["orphaned"] == after_deploy and report["lost_count"] == 14
    assert report["valid"] is False and report["nodes_total"] == 21 and report["root_children"] == 6
    assert report["atlas_nodes_total"] == 21 and report["atlas_root_children"] == 6
    assert report["resync_batches"] == [7]
    assert 185 < report["first_loss_at_s"] < 190
    for name in ("report.md", "timeline.png", "timeline.svg", "history.jsonl", "events.jsonl"):
        assert (out / name).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "LOST 14 of 20" in printed and str(out / "report.md") in printed
    # why: one Clear of the root's children in re-import batch 1, under clear-vs-array-insert
    assert report["verdict"] == "lost" and report["inconclusive_reason"] is None
    (cause,) = report["causes"]
    assert cause["rule"] == "clear-vs-array-insert" and cause["nodes"] == report["orphaned"]
    assert cause["changeset"]["origin"] == "re-import" and cause["changeset"]["reimport_batch"] == 1
    assert cause["changeset"]["instruction"] == "Clear(root.children)"
    assert "Cause: 14 nodes lost to one Clear(root.children) in re-import batch 1" in printed
    md = (out / "report.md").read_text()
    why = md.split("## Why these nodes were lost", 1)[1]
    assert "14 nodes lost to one Clear(root.children) in re-import batch 1" in why
    assert all(f"`{n}` | `clear-vs-array-insert`" in why for n in report["orphaned"])
    assert (out / "sequence.png").stat().st_size > 0 and (out / "sequence.svg").stat().st_size > 0


@pytest.mark.parametrize("args", [["--mode", "development"], ["--encoding", "diff"]])
def test_run_without_loss(tmp_path, args):
    code, out = run_cli(tmp_path, *args, "--fail-on-loss")
    report = json.loads((out / "report.json").read_text())
    assert code == 0 and report["valid"] is True and report["lost_count"] == 0 and report["orphaned"] == []
    assert report["first_loss_at_s"] is None


def test_run_deploying_before_the_root_has_children_loses_nothing(tmp_path):
    """--deploy-at 0: the snapshot's root list is empty, so the re-import carries no Clear."""
    code, out = run_cli(tmp_path, "--deploy-at", "0")
    report = json.loads((out / "report.json").read_text())
    assert code == 0 and report["valid"] is True and report["lost_count"] == 0
    assert report["resync_batches"] == [1] and report["root_children"] == 20


@pytest.mark.parametrize("scope, lost, batches", [("new-values", 0, []), ("all", 14, [7])])
def test_run_reimport_scope(tmp_path, scope, lost, batches):
    code, out = run_cli(tmp_path, "--reimport", scope)
    report = json.loads((out / "report.json").read_text())
    assert code == 0 and report["lost_count"] == lost and report["resync_batches"] == batches
    assert recording.load_run(out).meta["reimport"] == scope


@pytest.mark.parametrize("args", [["--mode", "development"], ["--encoding", "diff"]])
def test_run_without_loss_has_no_causes_and_is_clean(tmp_path, args):
    code, out = run_cli(tmp_path, *args)
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "clean" and report["causes"] == [] and report["valid"] is True


def test_a_run_stopped_before_the_reimport_is_inconclusive_and_report_says_the_same(tmp_path, capsys):
    code, out = run_cli(tmp_path, "--settle", "20", "--fail-on-loss")
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert code == 3
    assert report["verdict"] == "inconclusive" and report["valid"] is None
    assert "still halted" in report["inconclusive_reason"] and "39.0 s" in report["inconclusive_reason"]
    assert "INCONCLUSIVE" in printed and "No acknowledged node was lost" not in printed
    (out / "report.json").unlink()
    (out / "report.md").unlink()
    assert main(["report", str(out), "--fail-on-loss"]) == 3
    again = json.loads((out / "report.json").read_text())
    assert again == report
    assert "Inconclusive" in (out / "report.md").read_text()


def test_report_rebuilds_a_finished_run_without_rerunning_it(tmp_path, capsys):
    code, out = run_cli(tmp_path)
    first = json.loads((out / "report.json").read_text())
    history = (out / "history.jsonl").read_text()
    for name in ("report.json", "report.md", "timeline.png", "sequence.svg"):
        (out / name).unlink()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert json.loads((out / "report.json").read_text()) == first
    assert (out / "timeline.png").exists() and (out / "sequence.svg").exists()
    assert (out / "history.jsonl").read_text() == history  # nothing re-run, nothing appended
    assert "LOST 14 of 20" in capsys.readouterr().out


def test_report_of_a_missing_directory_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "run directory not found" in err


def test_one_analysis_per_run(tmp_path, monkeypatch):
    """The interval computation (the expensive part) runs once for `repro-kit run`."""
    from repro_kit import _timeline as timeline

    calls = []
    real = timeline._interval_arrays
    monkeypatch.setattr(timeline, "_interval_arrays", lambda c: calls.append(1) or real(c))
    code, _ = run_cli(tmp_path)
    assert code == 0 and len(calls) == 1


def test_fail_on_loss_exits_1(tmp_path):
    code, _ = run_cli(tmp_path, "--fail-on-loss", "--settle", "200")
    assert code == 1


@pytest.mark.parametrize("args, words", [
    (["run", "--interval", "-1"], "--interval"),
    (["run", "--deploy-at", "3000"], "--deploy-at"),
    (["run", "--writes", "0"], "--writes"),
    (["run", "--writes", "many"], "--writes"),
    (["run", "--mode", "staging"], "mode"),
    (["run", "--encoding", "zip"], "encoding"),
    (["run", "--reimport", "some"], "reimport"),
    (["run", "--bson-type", "array<>"], "--bson-type"),
    (["run", "--field", "has space"], "--field"),
    (["run", "--backend", "cloud"], "--backend"),
    (["run", "--bogus"], "--bogus"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, words):
    code = main(args + ["--out", str(tmp_path / "o")] if args[0] == "run" else args)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_module_entry_point_bad_input_in_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "repro_kit", "run", "--interval", "-2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_killed_run_loads_and_checks_what_was_recorded(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "repro_kit", "run", "--realtime", "--writes", "40",
                             "--interval", "0.1", "--deploy-at", "0.55", "--settle", "30", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    history = out / "history.jsonl"
    while time.monotonic() < deadline:  # wait for the run to be halfway through its writes
        if history.exists() and history.read_text().count('"invoke"') >= 20:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = recording.load_run(out)
    assert run.meta["finished"] is False
    adds = run.history[(run.history.f == "add") & (run.history.type == "invoke")]
    assert 15 <= len(adds) < 40
    oks = run.history[(run.history.f == "add") & (run.history.type == "ok")]
    verdict = findings.check(run)
    assert set(verdict.acknowledged) == set(oks.value.astype(str)) <= set(adds.value.astype(str))
    assert verdict.lost == []  # killed before the re-import: nothing lost yet, and the check says so
    assert verdict.outcome == "inconclusive" and verdict.valid is None
    assert "still halted" in verdict.inconclusive_reason
    assert main(["report", str(out), "--fail-on-loss"]) == 3
    assert json.loads((out / "report.json").read_text())["verdict"] == "inconclusive"


def menu_for(session, lines, **overrides):
    args = Namespace(writes=5, interval=1.0, deploy_at=1.5, settle=30.0, field="tags", bson_type="array<string>")
    for k, v in overrides.items():
        setattr(args, k, v)
    out = io.StringIO()
    return Menu(session, args, stdin=io.StringIO("".join(f"{l}\n" for l in lines)), stdout=out), out


def test_menu_driven_through_its_input_stream(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = connect(seed=2, resync_delay_s=10)
    menu, out = menu_for(s, ["1", "1", "4", "7", "1", "3", "4", "6", "", "", "7", "30", "4", "9"])
    assert menu.loop() == 0
    text = out.getvalue()
    assert text.count("Added a node to the root") == 2
    info = s.info()
    assert f"User id: {info.user_id}\nRoot node id: {info.root_id}\nTotal node objects: 3\n" \
           "Number of children in root: 2\n" in text
    assert "Atlas (a refresh of the Node collection): 1 node documents, 0 children in the root" in text  # not synced
    assert "Atlas (a refresh of the Node collection): 3 node documents, 2 children in the root" in text
    assert "root\t(2 children)\n   a child node\t(0 children)\n   a child node\t(0 children)" in text  # Print nodes
    assert "\t: User has 3 total nodes\n\t: Root has 2 children" in text  # the original's listener lines
    assert "Deployed the optional field tags (array<string>)" in text
    assert "a re-import batch of 3 documents from the server" in text


def test_menu_reset_needs_confirmation():
    s = connect(seed=2)
    s.add_to_root("keep me")
    menu, out = menu_for(s, ["5", "no", "5", "yes", "9"])
    menu.loop()
    text = out.getvalue()
    assert "Reset cancelled; nothing deleted." in text and "Deleting 2 nodes" in text


def test_menu_run_test_and_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = connect(seed=2, resync_delay_s=10)
    menu, out = menu_for(s, ["2", "10", "6", "bad name", "7", "soon", "7", "inf", "7", "nan", "4"])
    assert menu.loop() == 0  # end of input ends the menu
    text = out.getvalue()
    assert 'Adding node with text "Test node 1" (4 remaining)' in text
    assert 'Adding node with text "Test node 5" (0 remaining)' in text
    assert "3 of 5 nodes orphaned" in text and "Run test finished; the run is in runs" in text
    assert "Unknown choice '10'" in text
    assert "error: field 'bad name' is not a valid field name" in text and "nothing was deployed" in text
    assert "BSON type [" not in text  # a refused name is said at once, before the type is asked
    assert "error: seconds: not a number: 'soon'" in text
    assert "error: seconds: must be a number from 0 to 86,400, got inf" in text
    assert "got nan" in text and "Total node objects: 6" in text  # the menu went on after every error
    assert list(Path("runs").iterdir())


def test_menu_end_of_input_at_a_question_cancels_it():
    s = connect(seed=2)
    for lines, said in ((["6"], "Deploy cancelled; nothing deployed."), (["6", "tags"], "Deploy cancelled"),
                        (["5"], "Reset cancelled; nothing deleted."), (["7"], "Wait cancelled.")):
        menu, out = menu_for(s, lines)
        assert menu.loop() == 0
        assert said in out.getvalue()
    assert s.control.deployments == [] and s.info().nodes_total == 1


def test_menu_run_test_twice_with_a_reset_between(tmp_path, monkeypatch):
    """Run test is repeatable: each deploy adds a new field when the default one exists."""
    monkeypatch.chdir(tmp_path)
    s = connect(seed=2, resync_delay_s=10)
    menu, out = menu_for(s, ["2", "5", "yes", "2", "9"])
    assert menu.loop() == 0
    text = out.getvalue()
    assert text.count("Run test finished") == 2 and "error" not in text
    assert [d["field"] for d in s.control.deployments] == ["tags", "tags_2"]
    assert len(list(Path("runs").iterdir())) == 2


def test_run_into_an_existing_run_exits_2_and_keeps_it(tmp_path, capsys):
    code, out = run_cli(tmp_path, "--settle", "5")
    before = (out / "history.jsonl").read_bytes()
    code2, _ = run_cli(tmp_path, "--settle", "5")
    err = capsys.readouterr().err
    assert (code, code2) == (0, 2) and "already holds a run" in err and err.count("\n") == 1
    assert (out / "history.jsonl").read_bytes() == before


def test_ctrl_c_during_a_run_keeps_a_readable_partial_run(tmp_path):
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "repro_kit", "run", "--realtime", "--writes", "40", "--interval",
                             "0.1", "--deploy-at", "0.55", "--settle", "30", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # Ctrl-C's default, as a terminal gives it: a suite started in the background
                            # of a shell without job control inherits SIGINT ignored, and so would the run
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    history = out / "history.jsonl"
    hang = time.monotonic() + 600  # a guard against a hang, not a speed check
    while not (history.exists() and history.read_text().count('"invoke"') >= 10):  # the run is under way
        assert proc.poll() is None, f"the run ended before it was interrupted: {proc.communicate()}"
        assert time.monotonic() < hang, "the run wrote no history in 10 minutes"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "interrupted" in err and str(out) in err and "repro-kit report" in err
    run = recording.load_run(out)
    assert run.meta["finished"] is False and run.warnings == ()  # every line whole: stopped cleanly
    assert main(["report", str(out), "--fail-on-loss"]) == 3
