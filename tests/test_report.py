"""report.json keeps DESIGN's keys exactly; report.md is paste-able and leaks nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from repro_kit.recording import load_run
from repro_kit.report import REPORT_KEYS, build_report, write_report

from runs import post_deploy_ids, record_scenario

DESIGN_KEYS = [
    "backend", "mode", "encoding", "writes", "deploy_at_s", "nodes_created", "nodes_total",
    "root_children", "atlas_nodes_total", "atlas_root_children", "orphaned", "lost_count",
    "first_loss_at_s", "resync_batches", "valid", "verdict", "inconclusive_reason", "causes",
]


def test_design_doc_lists_the_same_keys() -> None:
    design = Path(__file__).resolve().parents[2] / "shared" / "DESIGN.md"
    if not design.exists():
        pytest.skip("DESIGN.md not beside the repository")
    section = design.read_text().split("report.json keys:", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"`([a-z_]+)`", section) == DESIGN_KEYS


def test_report_has_exactly_the_design_keys(tmp_path: Path) -> None:
    report = build_report(load_run(record_scenario(tmp_path / "run")))
    assert list(report) == DESIGN_KEYS == list(REPORT_KEYS)
    assert report["backend"] == "emulator" and report["mode"] == "production"
    assert report["encoding"] == "replace" and report["writes"] == 20 and report["deploy_at_s"] == 5.5
    assert report["nodes_created"] == 20
    assert report["nodes_total"] == 21 and report["root_children"] == 5  # device view at the end
    assert report["atlas_nodes_total"] == 21 and report["atlas_root_children"] == 5
    assert report["orphaned"] == post_deploy_ids()  # in ack order
    assert report["lost_count"] == 15
    assert report["first_loss_at_s"] == 185.0
    assert report["resync_batches"] == [6]
    assert report["valid"] is False
    json.dumps(report)  # plain JSON types only


def test_report_of_a_clean_run(tmp_path: Path) -> None:
    report = build_report(load_run(record_scenario(tmp_path / "run", loss=False)))
    assert report["valid"] is True and report["orphaned"] == [] and report["lost_count"] == 0
    assert report["first_loss_at_s"] is None and report["resync_batches"] == []
    assert report["root_children"] == 20


def test_write_report_bundle(tmp_path: Path) -> None:
    run = load_run(record_scenario(tmp_path / "run", vanish=(2, 100.0, 101.0)))
    paths = write_report(run, tmp_path / "out")
    assert set(paths) == {"json", "md", "png", "svg"}
    assert all(p.exists() and p.parent == tmp_path / "out" for p in paths.values())
    assert json.loads(paths["json"].read_text()) == build_report(run)
    md = paths["md"].read_text()
    assert "15 of 20 nodes orphaned" in md
    assert "![timeline of the run](timeline.png)" in md  # relative, so the bundle moves as one
    for n in post_deploy_ids():
        assert n in md
    assert "| device | 5 | 21 |" in md and "| atlas | 5 | 21 |" in md
    assert "pandas" in md and "deploy_at_s" in md


def test_write_report_defaults_to_the_run_directory(tmp_path: Path) -> None:
    run = load_run(record_scenario(tmp_path / "run", loss=False))
    paths = write_report(run)
    assert paths["md"] == tmp_path / "run" / "report.md"
    assert "No loss" in paths["md"].read_text()


def test_secrets_never_reach_the_report(tmp_path: Path) -> None:
    meta = {
        "user_id": "anon-user-777",
        "params": {"resync_delay": 180.0, "api_key": "SEKRET-1",
                   "mongodb_uri": "mongodb://bob:SEKRET-2@db.example/x", "app_id": "app-1"},
        "access_token": "SEKRET-3",
    }
    run = load_run(record_scenario(tmp_path / "run", meta=meta))
    run.meta["params"]["private_key"] = "SEKRET-4"  # even if a meta.json was written by hand
    paths = write_report(run, tmp_path / "out")
    for p in (paths["json"], paths["md"], paths["svg"]):
        text = p.read_text()
        for secret in ("SEKRET", "bob", "anon-user-777"):
            assert secret not in text, (p.name, secret)
    assert "`resync_delay` | 180" in paths["md"].read_text()


def test_write_report_rejects_a_file_as_out_dir(tmp_path: Path) -> None:
    run = load_run(record_scenario(tmp_path / "run", loss=False))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        write_report(run, tmp_path / "file")
