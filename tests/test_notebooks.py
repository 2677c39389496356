"""Every notebook, executed top to bottom headless (papermill) on the emulator, in a temp directory."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest

papermill = pytest.importorskip("papermill")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["01_setup", "02_write_and_deploy", "03_timeline", "04_sweeps", "05_fleet", "06_replay"]
LIVE_VARS = ("MONGODB_URI", "REPRO_KIT_APP_ID", "REALM_APP_ID", "MONGODB_ATLAS_PUBLIC_API_KEY",
             "MONGODB_ATLAS_PRIVATE_API_KEY")


@pytest.fixture(autouse=True)
def headless_emulator(monkeypatch):
    """The kernel inherits this environment: no live variables, so the emulator is used."""
    for name in LIVE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")


def execute(name: str, cwd: Path, **parameters) -> nbformat.NotebookNode:
    out = cwd / f"{name}.out.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=parameters,
                               cwd=str(cwd), kernel_name="python3", progress_bar=False, log_output=False)
    return nbformat.read(out, as_version=4)


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def text(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in outputs(nb) if o.get("output_type") == "stream")


def images(nb: nbformat.NotebookNode) -> int:
    return sum(1 for o in outputs(nb) if "image/png" in o.get("data", {}))


def cell_images(cell) -> int:
    return sum(1 for o in cell.get("outputs", []) if "image/png" in o.get("data", {}))


def markdown(nb: nbformat.NotebookNode) -> str:
    """The notebook's prose, joined (what a reader reads beside the outputs)."""
    return " ".join(" ".join(c.source.split()) for c in nb.cells if c.cell_type == "markdown")


def assert_no_errors(nb: nbformat.NotebookNode) -> None:
    errors = [o for o in outputs(nb) if o.get("output_type") == "error"]
    assert not errors, f"{errors[0]['ename']}: {errors[0]['evalue']}"


def lost_count(nb: nbformat.NotebookNode) -> int:
    match = re.search(r"Lost (\d+) of (\d+) acknowledged nodes", text(nb))
    assert match, text(nb)
    return int(match.group(1))


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code), "papermill needs a parameters cell"


def test_01_setup_uses_the_emulator_without_live_variables_and_finds_the_root(tmp_path):
    nb = execute("01_setup", tmp_path)
    assert_no_errors(nb)
    out = text(nb)
    assert "backend: emulator  (live variables not set)" in out
    assert re.search(r"root node: [0-9a-f-]{36} \(isRoot=True", out)
    assert "device: 1 nodes, root has 0 children" in out
    assert "Atlas:  1 nodes, root has 0 children" in out
    assert '"queryable_fields_names"' in out and "anonymous login enabled" in out
    assert "DIFF" not in out and out.count("ok  ") >= 6


def test_02_runs_the_panel_and_the_experiment_and_saves_the_run(tmp_path):
    nb = execute("02_write_and_deploy", tmp_path, panel_realtime=False)  # virtual time: deterministic clicks
    assert_no_errors(nb)
    out = text(nb)
    # before Wait Atlas has not seen the new node; after Wait it has: the panel's lines and the
    # sentences computed from the counts (what the text above the cell points to) agree
    assert "Atlas (a refresh of the Node collection): 1 node documents, 0 children in the root" in out
    assert "Atlas (a refresh of the Node collection): 2 node documents, 1 children in the root" in out
    assert ("Right after Add to root: Atlas has not seen the device's latest changes yet: Atlas shows 1 node "
            "document and 0 children in the root, the device 2 nodes and 1 child in the root.") in out
    assert "After Wait (2 s): Atlas agrees with the device: 2 node documents, 1 child in the root." in out
    prose = markdown(nb)
    assert "Atlas has not seen the node yet" not in prose  # the old claim, true only in virtual time
    assert lost_count(nb) == 14  # the report's scenario: writes at 6..19 s fall in the deploy window
    assert "device: 21 nodes, root has 6 children" in out  # documents kept, children lost
    runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1 and (runs[0] / "history.jsonl").exists() and (runs[0] / "events.jsonl").exists()
    assert images(nb) >= 1
    assert not (NOTEBOOKS / "runs").exists()


def test_02_with_another_deploy_time_loses_a_different_count_matching_the_cli(tmp_path):
    from repro_kit import cli

    params = {"writes": 20, "interval_s": 1.0, "deploy_at_s": 12.5, "settle_s": 200.0, "seed": 3}
    nb = execute("02_write_and_deploy", tmp_path, out_dir="runs/late", panel_realtime=False, **params)
    assert_no_errors(nb)
    lost = lost_count(nb)
    assert lost != 14 and lost > 0
    assert (tmp_path / "runs" / "late" / "meta.json").exists()

    cli_out = tmp_path / "cli"
    code = cli.main(["run", "--writes", "20", "--interval", "1", "--deploy-at", "12.5", "--settle", "200",
                     "--seed", "3", "--out", str(cli_out)])
    assert code == 0
    report = json.loads((cli_out / "report.json").read_text(encoding="utf-8"))
    assert report["lost_count"] == lost


def test_03_makes_a_run_when_there_is_none_and_exports_the_report(tmp_path):
    nb = execute("03_timeline", tmp_path)
    assert_no_errors(nb)
    out = text(nb)
    assert "no run under runs/: recording one" in out
    assert "14 of 20 nodes orphaned" in out
    assert "lost ids (14):" in out
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    for name in ("report.md", "report.json", "timeline.png", "swimlane.png", "swimlane.svg", "counts.png", "counts.svg",
                 "sequence.png", "sequence.svg"):
        assert (run_dir / name).exists(), name
    assert "14 nodes lost to one Clear(root.children) in re-import batch 1" in out  # the explanation
    assert "re-import seen by the device: 1 batch of 7 documents" in out
    assert (run_dir / "report.html").exists() and "report.html" in markdown(nb)
    assert "rule clear-vs-array-insert discarded the node's ArrayInsert" in out
    assert images(nb) >= 3  # swimlanes, counts and the sequence diagram


def test_03_loads_the_newest_run_by_default(tmp_path):
    from repro_kit.client import connect
    from repro_kit.driver import run_test

    run_test(connect(), writes=5, deploy_at_s=None, settle_s=5.0, out=tmp_path / "runs" / "a-old")
    newest = run_test(connect(), writes=10, deploy_at_s=2.5, settle_s=200.0, out=tmp_path / "runs" / "b-new")
    nb = execute("03_timeline", tmp_path)
    assert_no_errors(nb)
    out = text(nb)
    assert f"Run: {Path('runs') / 'b-new'}" in out or f"Run: {newest.path}" in out
    assert "no run under" not in out
    assert "7 of 10 nodes orphaned" in out  # writes at 3..9 s
    assert (newest.path / "report.md").exists()


def test_04_sweeps_render_heatmaps_and_conclude_from_the_results(tmp_path):
    nb = execute("04_sweeps", tmp_path)
    assert_no_errors(nb)
    out = text(nb)
    assert "quick=True" in out
    assert images(nb) >= 3
    assert "Every loss happened with mode=production, encoding=replace, tree=children, pause_during_resync=False." in out
    assert "Nothing was lost with mode=development" in out
    assert "The re-import batch size (resync_batch_size) does not change how many nodes are lost." in out
    # sensitivity: computed by the sweep, not typed in
    assert "appears in 13 of 18 variants" in out
    # the prose before the table claims it: a deploy while the root has no children loses nothing
    assert "A deploy while the root has no children loses nothing" in markdown(nb)
    assert ("With root at the deploy = empty (deploy 0 s) it does not: none of the 20 notes written after the "
            "deploy was lost.") in out
    assert ("With re-import scope = new-values it does not: none of the 14 notes written after the deploy was "
            "lost; no re-import batch reached the device.") in out
    assert "no every" not in out
    assert os.listdir(tmp_path) == ["04_sweeps.out.ipynb"]  # sweeps keep runs in memory


def test_03_finds_the_clis_runs_from_the_notebooks_folder_and_shows_report_images(tmp_path):
    """One runs directory for everyone: a run `make demo` wrote to reports/latest at the top of a
    checkout is what notebook 03 (run from notebooks/) opens; report.md's images are embedded."""
    from repro_kit import cli

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "repro_kit"\n')
    (tmp_path / "notebooks").mkdir()
    assert cli.main(["run", "--writes", "8", "--settle", "200", "--out", str(tmp_path / "reports" / "latest")]) == 0
    nb = execute("03_timeline", tmp_path / "notebooks")
    assert_no_errors(nb)
    out = text(nb)
    assert f"Run: {tmp_path / 'reports' / 'latest'}" in out and "no run under" not in out
    markdown = [o["data"]["text/markdown"] for o in outputs(nb) if "text/markdown" in o.get("data", {})]
    assert markdown and "](data:image/png;base64," in markdown[-1]
    assert "](timeline.png)" not in markdown[-1]


def test_05_fleet_reports_the_blast_radius_and_the_halt_growing(tmp_path):
    from repro_kit import fleets

    nb = execute("05_fleet", tmp_path, users=40, writes_per_user=8, halt_sizes=[0, 10, 30])
    assert_no_errors(nb)
    out = text(nb)
    assert re.search(r"This deploy orphaned [\d,]+ notes of \d+ users \(of 40 users", out)
    # every sentence that states a result is the one computed from the runs it describes
    first, *growth_runs = [fleets.load_fleet(p) for p in sorted((tmp_path / "runs").iterdir())]
    assert len(growth_runs) == 3
    assert first.summary() in out
    in_halt = int(first.users["notes_written_in_halt"].sum())
    assert f"all {in_halt:,} notes written while it was halted" in first.summary()
    assert first.notes_orphaned == in_halt + first.orphaned_by_write_time()["before"]
    assert fleets.halt_growth(growth_runs) in out
    prose = markdown(nb)
    for stale in ("nobody else lost anything", "grows linearly", "the report's timings"):
        assert stale not in prose, stale
    # each figure drawn once: the fleet figure and the halt plot
    assert images(nb) == 2
    assert [n for n in map(cell_images, nb.cells) if n > 1] == []
    html = "".join(o["data"].get("text/html", "") for o in outputs(nb) if "data" in o)
    assert "halt (s)" in html and "re-import batches" in html
    assert (tmp_path / "runs").is_dir()  # fleet runs go where every other run goes


def test_06_replays_the_recorded_log_and_names_the_orphans(tmp_path):
    nb = execute("06_replay", tmp_path, out_dir="runs/replay")
    assert_no_errors(nb)
    out = text(nb)
    assert "log: device_trace.log; 7 changesets replayed; verdict: lost" in out
    assert ("a1, a2, a3 left Node[root].children when the client integrated server version 6 from origin_file_ident 3 "
            "(based on server version 2): Clear(root.children), rule clear-vs-array-insert") in out
    assert "checker: 3 of 7 nodes orphaned" in out
    assert "rule clear-vs-array-insert discarded the node's ArrayInsert(root.children[3] = a1)" in out
    html = "".join(o["data"].get("text/html", "") for o in outputs(nb) if "data" in o)
    assert "Clear root.children; ArrayInsert root.children[0] = c1" in html  # the decoded changesets' table
    assert images(nb) >= 1  # the list as the device saw it
    assert (tmp_path / "runs" / "replay" / "trace.jsonl").is_file()
