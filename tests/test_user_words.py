"""No `None` or `nan` in what a person reads (issue 17, item 5), through the real CLI.

`run --no-deploy` printed "deploy at None s."; a run directory without meta.json printed
"None None encoding=None: None writes"; a meta.json holding NaN was accepted as a number.
Now an absent value is said in words ("no deploy", "unknown"), and NaN or Infinity in
meta.json is refused in one line naming the key.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import repro_kit as rk
from repro_kit import findings, plots, recording, report

from readonly import environ

#: "None" or "nan" as a word: what Python prints for a missing value.
RAW = re.compile(r"\bNone\b|\b(?i:nan|inf|infinity)\b")


def cli(args: list[str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro_kit", *args], cwd=cwd, env=environ(), input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def control_run(tmp_path_factory) -> Path:
    """A short run without a deploy, made once through the real CLI (its output checked below)."""
    where = tmp_path_factory.mktemp("words")
    proc = cli(["run", "--no-deploy", "--writes", "3", "--settle", "10", "--out", "nd"], where)
    assert proc.returncode == 0, proc.stderr
    (where / "stdout.txt").write_text(proc.stdout)
    return where / "nd"


def test_run_without_a_deploy_says_no_deploy(control_run):
    first = (control_run.parent / "stdout.txt").read_text().splitlines()[0]
    assert first.startswith("emulator production encoding=replace: 3 writes, no deploy. "), first
    assert not RAW.search(first), first
    md = (control_run / "report.md").read_text()
    assert "| deploy_at_s | none (no deploy) |" in md


def test_report_without_meta_json_says_unknown(control_run, tmp_path):
    copy = tmp_path / "nometa"
    shutil.copytree(control_run, copy)
    (copy / "meta.json").unlink()
    proc = cli(["report", str(copy)], tmp_path)
    first = proc.stdout.splitlines()[0]
    assert first.startswith("unknown set-up (no meta.json): writes unknown, deploy time unknown. "), first
    assert not RAW.search(proc.stdout + proc.stderr), proc.stdout + proc.stderr
    md = (copy / "report.md").read_text()
    assert not RAW.search(md.split("<details>")[0]), md  # report.json's block below holds JSON nulls
    assert "Unknown: the run directory has no meta.json" in md


@pytest.mark.parametrize("key, text, word", [
    ("deploy_at_s", "NaN", "NaN"),
    ("writes", "Infinity", "Infinity"),
    ("settle_s", "-Infinity", "-Infinity"),
])
def test_nan_or_infinity_in_meta_json_makes_the_run_inconclusive_naming_the_key(control_run, tmp_path, key, text,
                                                                                   word):
    copy = tmp_path / "bad"
    shutil.copytree(control_run, copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta[key] = "@@"
    (copy / "meta.json").write_text(json.dumps(meta, indent=2).replace('"@@"', text))
    proc = cli(["report", str(copy), "--fail-on-loss"], tmp_path)
    assert proc.returncode == 3, proc.stderr
    reason = f"meta.json: {key} is {word}, not a number (JSON has no NaN or Infinity)"
    first = proc.stdout.splitlines()[0]
    assert first.startswith("unknown set-up (meta.json unusable): "), first
    assert f"INCONCLUSIVE: {reason}" in first, proc.stdout
    assert json.loads((copy / "report.json").read_text())["inconclusive_reason"] == reason


def test_nested_nan_is_named_by_its_path(control_run, tmp_path):
    copy = tmp_path / "bad"
    shutil.copytree(control_run, copy)
    text = (copy / "meta.json").read_text()
    (copy / "meta.json").write_text(re.sub(r'"resync_delay_s": [0-9.]+', '"resync_delay_s": NaN', text))
    proc = cli(["report", str(copy)], tmp_path)
    assert proc.returncode == 0 and "params.resync_delay_s is NaN" in proc.stdout


def test_the_timeline_title_says_no_deploy(control_run):
    analysis = findings.analyse(recording.load_run(control_run))
    title = plots._title(analysis)
    assert "no deploy" in title and not RAW.search(title)


def test_menu_print_info_after_a_reset_has_no_none(tmp_path):
    proc = cli(["menu", "--virtual"], tmp_path, stdin="5\nyes\n4\n9\n")
    assert proc.returncode == 0, proc.stderr
    assert "Root node id: none yet (Add to root creates it)" in proc.stdout
    assert not RAW.search(proc.stdout), proc.stdout


def test_a_markdown_report_shows_no_nan(tmp_path):
    run = rk.run_test(rk.connect(), writes=3, settle_s=10, out=tmp_path / "r")
    run.meta["interval_s"] = float("nan")  # an in-memory run from Python: no file to refuse
    md = report.render_markdown(run)
    assert not RAW.search(md.split("<details>")[0])
