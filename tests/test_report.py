"""report.json keeps DESIGN's keys exactly; report.md is paste-able and leaks nothing."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from repro_kit.findings import analyse
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
    assert set(paths) == {"json", "md", "html", "png", "svg"}
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
    for p in (paths["json"], paths["md"], paths["svg"], paths["html"]):
        text = p.read_text()
        for secret in ("SEKRET", "bob", "anon-user-777"):
            assert secret not in text, (p.name, secret)
    assert "`resync_delay` | 180" in paths["md"].read_text()


def test_write_report_rejects_a_file_as_out_dir(tmp_path: Path) -> None:
    run = load_run(record_scenario(tmp_path / "run", loss=False))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        write_report(run, tmp_path / "file")


def test_batches_are_counted_as_documents_in_report_md_and_the_cli(tmp_path: Path, capsys) -> None:
    """A batch's number is its size: "1 batch of 6 documents", never "batches [6]"."""
    from repro_kit import cli

    run_dir = record_scenario(tmp_path / "run")
    assert cli.main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "re-import: 1 batch of 6 documents." in out and "batches [" not in out
    md = (run_dir / "report.md").read_text()
    assert "Re-import batches seen by the device: 1 batch of 6 documents (at 185.00 s)." in md
    assert f"  {run_dir / 'report.html'}" in out.splitlines()  # the CLI lists report.html with the other files


# -- report.html ----------------------------------------------------------------------------------


class _Links(HTMLParser):
    """Every URL-bearing attribute of every element (script bodies are not attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.scripts_with_src: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data", "formaction", "xlink:href") and value:
                self.urls.append((tag, name, value))
            if tag == "script" and name == "src":
                self.scripts_with_src.append(value or "")


def test_report_html_is_one_self_contained_file_with_no_cdn(tmp_path: Path) -> None:
    from repro_kit.client import connect
    from repro_kit.driver import run_test

    a = analyse(run_test(connect(seed=3), out=tmp_path / "run"))
    paths = write_report(a)
    page = paths["html"].read_text(encoding="utf-8")
    links = _Links()
    links.feed(page)
    remote = [u for u in links.urls if re.match(r"\s*(https?:)?//", u[2], re.I)]
    assert not remote, remote
    assert not links.scripts_with_src  # every script inline
    assert all(u[2].startswith(("data:", "#")) for u in links.urls), links.urls
    assert not re.search(r"<link\b[^>]*rel=[\"']?stylesheet", page, re.I)
    assert not re.search(r"@import|url\(\s*[\"']?(https?:)?//", page, re.I)
    assert "plotly.js v" in page and "Plotly.newPlot(" in page  # the library itself, inlined
    assert "data:image/svg+xml;base64," in page  # the sequence diagram, inlined
    # the page shows the one analysis: its verdict, its causes, every lost node with its chain
    assert html.escape(a.verdict.summary()) in page
    (cause,) = a.causes
    assert html.escape(cause.describe()) in page and cause.rule in page
    for exp in a.explanations():
        assert exp.node_id in page
    assert "1 batch of 7 documents" in page
    spec = json.loads(re.search(r"var fig = (\{.*?\});\n", page, re.S).group(1).replace("<\\/", "</"))
    bars = [t for t in spec["data"] if t["type"] == "bar"]
    hovered = {c[0]: c[1] for t in bars for c in t["customdata"]}
    for node in a.verdict.lost:
        assert html.escape(cause.describe()) in hovered[node] and "chain" in hovered[node]
    for node in set(a.verdict.acknowledged) - set(a.verdict.lost):
        assert "cause" not in hovered[node]
    window = a.deploy_window
    assert [s for s in spec["layout"]["shapes"] if s["type"] == "rect"][0]["x0"] == window[0]
    labels = [b["label"] for b in spec["layout"]["updatemenus"][0]["buttons"]]
    assert labels == ["whole run", "deploy window", "the deploy (±10 s)", "the re-import (±2 s)"]


def test_report_html_of_a_clean_run(tmp_path: Path) -> None:
    paths = write_report(load_run(record_scenario(tmp_path / "run", loss=False)))
    page = paths["html"].read_text(encoding="utf-8")
    assert "Verdict (clean)" in page and "Nothing was lost" in page and "No lost node to draw" in page
    assert "sequence_svg" not in paths
