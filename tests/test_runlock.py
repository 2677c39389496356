"""One run at a time in a run directory, through the real CLI: a second run into a directory a
live run holds is refused in one line; a lock left by a killed run is stale, never obeyed forever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro_kit._runlock import LOCK_FILE, RunDirectoryBusy, RunLock

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "repro_kit", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the first run to start"
        time.sleep(0.02)  # polling a condition, not a fixed wait


def slow_run(out: Path, tmp_path: Path) -> subprocess.Popen:
    """A real-time run that holds its directory for a few seconds."""
    proc = cli("run", "--realtime", "--writes", "4", "--interval", "0.5", "--deploy-at", "none", "--settle", "3",
               "--out", str(out), cwd=tmp_path)
    until(lambda: (out / LOCK_FILE).exists() and (out / "history.jsonl").exists()
          and (out / "history.jsonl").stat().st_size > 0)
    return proc


def test_a_second_run_into_a_directory_a_live_run_holds_is_refused_in_one_line(tmp_path):
    out = tmp_path / "d"
    first = slow_run(out, tmp_path)
    second = cli("run", "--encoding", "diff", "--out", str(out), cwd=tmp_path)
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 2, stderr
    assert stderr.splitlines() == [f"repro-kit: error: --out: {out} is in use by another run "
                                   f"(process {first.pid} on {os.uname().nodename}); choose another directory"]
    assert stdout == ""
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert sum(op["f"] == "add" and op["type"] == "invoke" for op in history) == 4  # the first run's alone
    assert json.loads((out / "meta.json").read_text())["encoding"] == "replace"
    assert not (out / LOCK_FILE).exists()  # released at the end
    report = cli("report", str(out), cwd=tmp_path)
    assert report.wait(120) == 0


def test_report_waits_for_a_live_run_but_a_killed_runs_lock_is_stale(tmp_path):
    out = tmp_path / "d"
    run = slow_run(out, tmp_path)
    busy = cli("report", str(out), cwd=tmp_path)
    _, stderr = busy.communicate(timeout=120)
    assert busy.returncode == 2 and "is in use by another run" in stderr and "report it once" in stderr
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    assert (out / LOCK_FILE).exists()  # a killed run cannot release it ...
    report = cli("report", str(out), "--fail-on-loss", cwd=tmp_path)
    stdout, stderr = report.communicate(timeout=120)
    assert report.returncode == 3, stderr  # ... and it is not obeyed: the partial run is reported, inconclusive
    assert "INCONCLUSIVE" in stdout and (out / "report.md").exists()
    with RunLock(out):  # taken over
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_lock_whose_process_id_was_reused_is_stale(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid(),
                                                  "started": "not-this-process"}))
    assert RunLock(tmp_path).busy() is None
    with RunLock(tmp_path) as lock:
        assert lock.held
        with pytest.raises(RunDirectoryBusy, match="in use by another run"):
            RunLock(tmp_path).acquire()  # a live holder, even in the same process, is obeyed
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_held_by_a_live_process_is_obeyed(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]
        (tmp_path / LOCK_FILE).write_text(json.dumps({"host": os.uname().nodename, "pid": sleeper.pid,
                                                      "started": started}))
        assert f"process {sleeper.pid}" in RunLock(tmp_path).busy()
        with pytest.raises(RunDirectoryBusy):
            RunLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert RunLock(tmp_path).busy() is None  # gone: stale
