"""Verdicts off the happy path, through the real CLI: `report` on a fleet gives the fleet's own
verdict; files cut short or belonging to another run make a run inconclusive, naming the file;
a fleet larger than memory is refused with the estimate; a long fleet shows its progress."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FLEET = ["--users", "12", "--notes-per-user", "4", "--writes-per-user", "10", "--resync-delay", "20"]


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "repro_kit", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    done = cli(["fleet", *FLEET, "--out", str(tmp / "fs"), "--fail-on-loss"], tmp)
    return tmp / "fs", done


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    done = cli(["run", "--out", str(tmp / "r")], tmp)
    assert done.returncode == 0, done.stderr
    return tmp / "r"


def test_report_on_a_fleet_directory_gives_the_fleets_own_verdict(fleet_dir, tmp_path):
    path, done = fleet_dir
    assert done.returncode == 1, done.stderr  # notes were orphaned
    said = done.stdout.splitlines()[0]
    assert re.match(r"This deploy orphaned \d+ notes of 12 users", said), said
    again = cli(["report", str(path), "--fail-on-loss"], tmp_path)
    assert again.returncode == 1, again.stderr
    assert again.stdout.splitlines()[0] == said  # the same verdict, the same words
    assert not (path / "report.md").exists() and (path / "fleet.md").exists()  # a fleet's report, not a run's
    assert json.loads((path / "meta.json").read_text())["kind"] == "fleet"


def test_report_on_a_fleet_that_lost_nothing_says_so(tmp_path):
    done = cli(["fleet", *FLEET, "--mode", "development", "--out", str(tmp_path / "fs"), "--fail-on-loss"], tmp_path)
    assert done.returncode == 0, done.stderr
    again = cli(["report", str(tmp_path / "fs"), "--fail-on-loss"], tmp_path)
    assert again.returncode == 0 and again.stdout.splitlines()[0] == done.stdout.splitlines()[0]
    assert "orphaned 0 notes of 0 users" in again.stdout


@pytest.mark.parametrize("cut", ["lines", "mid-line"])
def test_events_cut_short_make_the_run_inconclusive_naming_the_file(run_dir, tmp_path, cut):
    copy = tmp_path / "cut"
    shutil.copytree(run_dir, copy)
    lines = (copy / "events.jsonl").read_text().splitlines(keepends=True)
    kept = lines[:-30] if cut == "lines" else lines[:-30] + [lines[-30][:25]]
    (copy / "events.jsonl").write_text("".join(kept))
    done = cli(["report", str(copy), "--fail-on-loss"], tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert "INCONCLUSIVE: events.jsonl" in first and "LOST" not in first, first
    if cut == "lines":
        total = len(lines)
        assert f"events.jsonl cut short: it holds {total - 30:,} of the {total:,} records the run wrote" in first
    else:
        assert re.search(r"events\.jsonl is cut short: its last line \(\d+\) is incomplete", first), first
    report = json.loads((copy / "report.json").read_text())
    assert report["verdict"] == "inconclusive" and report["lost_count"] == 0 and report["valid"] is None
    assert report["root_children"] == 6  # from the final read: what the device held, whatever the events say


def test_another_runs_events_are_not_trusted(run_dir, tmp_path):
    other = tmp_path / "other"
    done = cli(["run", "--encoding", "diff", "--out", str(other)], tmp_path)
    assert done.returncode == 0
    mixed = tmp_path / "mixed"
    shutil.copytree(run_dir, mixed)
    shutil.copy(other / "events.jsonl", mixed / "events.jsonl")  # the files disagree
    done = cli(["report", str(mixed), "--fail-on-loss"], tmp_path)
    assert done.returncode == 3, done.stdout
    assert "INCONCLUSIVE: events.jsonl" in done.stdout.splitlines()[0]


def test_history_cut_short_is_inconclusive_too(run_dir, tmp_path):
    copy = tmp_path / "cut"
    shutil.copytree(run_dir, copy)
    lines = (copy / "history.jsonl").read_text().splitlines(keepends=True)
    (copy / "history.jsonl").write_text("".join(lines[:-5]))
    done = cli(["report", str(copy), "--fail-on-loss"], tmp_path)
    assert done.returncode == 3 and "history.jsonl cut short" in done.stdout.splitlines()[0]


def test_a_fleet_larger_than_memory_is_refused_with_the_estimate(tmp_path):
    done = cli(["fleet", "--users", "200000", "--out", str(tmp_path / "big")], tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert re.match(r"repro-kit: error: --users: 200,000 users with 40 notes each would need about [\d.,]+ GiB of "
                    r"memory; this machine has about [\d.,]+ GiB to spare: at most [\d,]+ users", line), line
    assert not (tmp_path / "big").exists()


def test_a_fleet_on_a_terminal_shows_its_progress(tmp_path):
    """tqdm draws on a terminal (in a notebook, a progress widget): the run's time goes by on screen."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stderr is the terminal, of a size (a bar needs columns to draw in)
        fcntl.ioctl(2, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        os.chdir(tmp_path)
        os.environ["PYTHONPATH"] = str(REPO)
        os.execv(sys.executable, [sys.executable, "-m", "repro_kit", "fleet", *FLEET, "--out", str(tmp_path / "fs")])
    screen = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = screen.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "fleet of 12 users" in text and re.search(r"\d+/\d+ \[", text), text  # the bar, with its count
    assert "This deploy orphaned" in text
