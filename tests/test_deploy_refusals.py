"""A deploy that cannot be made is refused before anything runs; one that fails is never clean
(issue 17, item 3).

`--field children` (or any name the Node schema has, or a reserved one) used to pass the
input check, run, fail mid-run naming `field`, and leave a run directory `report` called
clean although nothing was deployed. Now the schema and the Scenario refuse it, so every
front end does: `run`, `menu`, `deploy`, Python's `Scenario`/`run_test`, the menu's and the
panel's Deploy. And a deploy that fails mid-run (the control plane raising, or answering
"failed") makes the run inconclusive, naming the failed deploy.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import repro_kit as rk
from repro_kit import _schema, fleets
from repro_kit._session import DeployResult
from repro_kit.cli import main
from repro_kit.emulator.appservices import ControlPlane
from repro_kit.recording import RunRecorder
from repro_kit.scenario import Scenario, ScenarioError

from live_fakes.appservices_server import FakeAppServices
from readonly import environ

TAKEN = ["children", "text", "owner_id", "isRoot", "_id"]


def cli(args: list[str], cwd: Path, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro_kit", *args], cwd=cwd, env={**environ(), **(env or {})},
                          input=stdin, capture_output=True, text=True, timeout=120)


def refused(proc: subprocess.CompletedProcess, flag: str = "--field") -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"repro-kit: error: {flag}: "), proc.stderr
    assert not re.search(r"\b[A-Z][A-Za-z]*(Error|Exception)\b", lines[0]), lines[0]
    return lines[0]


# -- refused before anything runs -----------------------------------------------------------------
@pytest.mark.parametrize("name", TAKEN)
def test_run_refuses_a_field_the_schema_has_before_anything_runs(tmp_path, name):
    proc = cli(["run", "--field", name, "--out", "out"], tmp_path)
    line = refused(proc)
    assert repr(name) in line
    assert proc.stdout == "" and list(tmp_path.iterdir()) == [], "a run directory was written"


def test_menu_refuses_it_before_the_menu(tmp_path):
    proc = cli(["menu", "--virtual", "--field", "children"], tmp_path, stdin="9\n")
    refused(proc)
    assert proc.stdout == ""


def test_deploy_refuses_it_before_any_request(tmp_path):
    with FakeAppServices() as fake:
        proc = cli(["deploy", "--app-id", "myapp-abcde", "--field", "children", "--bson-type", "array<string>",
                    "--base-url", fake.url], tmp_path,
                   env={"MONGODB_ATLAS_PUBLIC_API_KEY": fake.public_key, "MONGODB_ATLAS_PRIVATE_API_KEY": fake.private_key})
        refused(proc)
        assert fake.requests == []


@pytest.mark.parametrize("name", TAKEN)
def test_python_scenario_and_run_test_refuse_it(tmp_path, name):
    with pytest.raises(ScenarioError) as info:
        Scenario(field=name)
    assert info.value.field == "field" and str(info.value).startswith("field: ")
    with pytest.raises(ScenarioError):
        Scenario(field=name, deploy_at_s=None)  # the menu and panel deploy by hand with it
    with pytest.raises(ValueError, match="field"):
        rk.run_test(rk.connect(), field=name, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_fleet_refuses_it_too():
    with pytest.raises(ValueError, match="field: 'children' already exists"):
        fleets.check_inputs(users=2, field="children")


def test_the_schema_names_what_it_has():
    assert _schema.NODE_FIELDS == ("_id", "text", "children", "isRoot", "owner_id")
    with pytest.raises(ValueError, match=r"'text' already exists in the Node schema \(_id, text"):
        _schema.validate_field_name("text")
    with pytest.raises(ValueError, match="'tags' already exists"):
        _schema.add_optional_field(_schema.add_optional_field(_schema.NODE_SCHEMA, "tags", "string"), "tags", "string")
    assert _schema.validate_field_name("tags") == "tags"


def test_menu_deploy_with_such_a_name_says_why_in_one_line_and_deploys_nothing(tmp_path):
    proc = cli(["menu", "--virtual"], tmp_path, stdin="6\nchildren\n6\n_id\n9\n")
    assert proc.returncode == 0, proc.stderr
    errors = ["error:" + line.split("error:", 1)[1] for line in proc.stdout.splitlines() if "error:" in line]
    assert len(errors) == 2, proc.stdout
    assert errors[0].startswith("error: field 'children' already exists in the Node schema")
    assert "nothing was deployed" in errors[0] and "the next free name is tags" in errors[0]
    assert errors[1].startswith("error: field '_id' is reserved")
    assert "Deployed" not in proc.stdout and "BSON type [" not in proc.stdout


def test_panel_deploy_with_such_a_name_says_why_in_one_line_and_deploys_nothing():
    pytest.importorskip("ipywidgets")
    from repro_kit.widgets import ControlPanel

    session = rk.connect(realtime=False)
    panel = ControlPanel(session)
    try:
        panel.field.value = "children"
        panel.deploy()
        panel.wait_idle(30)
        assert len(panel.errors) == 1
        assert panel.errors[0].startswith("Deploy schema change failed: field 'children' already exists")
        assert "nothing was deployed" in panel.errors[0] and "Error" not in panel.errors[0]
        assert session.control.deployments == [] and "Deployed" not in panel.text
    finally:
        panel.close()


# -- a deploy that fails mid-run is never clean ------------------------------------------------------
def _raise(self, field, bson_type):
    raise RuntimeError("the control plane is unavailable (HTTP 503)")


def _answer_failed(self, field, bson_type):
    return DeployResult(field=field, bson_type=bson_type, status="failed", deployment_id="emulated-x", schema={})


def test_a_deploy_that_raises_mid_run_gives_inconclusive_exit_3(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ControlPlane, "deploy_schema_change", _raise)
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--fail-on-loss"]) == 3
    captured = capsys.readouterr()
    first = captured.out.splitlines()[0]
    assert "INCONCLUSIVE: the schema deploy at 5.5 s failed (the control plane is unavailable (HTTP 503))" in first
    assert "Run longer" not in first
    assert captured.err.strip() == (f"repro-kit: the schema deploy failed at 5.5 s and stopped the run; the partial "
                                    f"run is kept in {out}")
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "inconclusive" and report["valid"] is None
    assert "deploy at 5.5 s failed" in report["inconclusive_reason"]
    monkeypatch.undo()
    assert main(["report", str(out), "--fail-on-loss"]) == 3  # the same verdict, read back
    assert "INCONCLUSIVE: the schema deploy at 5.5 s failed" in capsys.readouterr().out
    assert main(["run", "--out", str(tmp_path / "plain")]) == 0  # without the flag: 0, the verdict printed


def test_a_deploy_the_control_plane_answers_failed_gives_inconclusive_exit_3(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ControlPlane, "deploy_schema_change", _answer_failed)
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--fail-on-loss"]) == 3
    first = capsys.readouterr().out.splitlines()[0]
    assert "INCONCLUSIVE: the schema deploy at 5.5 s failed (deployment status 'failed')" in first
    assert json.loads((out / "report.json").read_text())["valid"] is None


def _recorded(path: Path, deploy_types: list[str], planned: float | None = 1.5) -> Path:
    rec = RunRecorder(path, {"backend": "emulator", "mode": "production", "encoding": "replace", "writes": 1,
                             "deploy_at_s": planned, "root_id": "root"})
    rec.op(0, "invoke", "add", "n1", time=0.0)
    rec.op(0, "ok", "add", "n1", time=0.1)
    for i, typ in enumerate(deploy_types):
        rec.op("nemesis", typ, "deploy", {"field": "tags", "bson_type": "string"}, time=1.5 + i)
    for t, kind in ((0.0, "doc_insert"), (0.0, "enter")):
        rec.event({"time": t + 0.05, "observer": "device", "kind": kind, "node_id": "n1"})
    rec.finish({"duration_s": 10.0})
    return path


@pytest.mark.parametrize("types, planned, reason", [
    (["invoke"], 1.5, "the schema deploy invoked at 1.5 s never completed"),
    ([], 1.5, "the schema deploy planned at 1.5 s never happened"),
    (["invoke", "fail"], 1.5, "the schema deploy at 2.5 s failed"),
])
def test_report_of_a_run_whose_deploy_did_not_take_effect_is_inconclusive(tmp_path, capsys, types, planned, reason):
    out = _recorded(tmp_path / "run", types, planned)
    assert main(["report", str(out), "--fail-on-loss"]) == 3
    assert f"INCONCLUSIVE: {reason}" in capsys.readouterr().out


def test_a_control_run_without_a_deploy_stays_clean(tmp_path, capsys):
    out = _recorded(tmp_path / "run", [], planned=None)
    assert main(["report", str(out), "--fail-on-loss"]) == 0
    assert "No acknowledged node was lost" in capsys.readouterr().out
