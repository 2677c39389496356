"""Exit 4, "could not do the job", for every command, through the real CLI (issue 17, item 6).

A full disk, a read-only directory or an unreachable server is not a loss: exit 1 means
"acknowledged nodes were lost" under --fail-on-loss, so these exit 4 with one line naming
the path or host, in words (no Python exception name, no "[Errno 28]"), and a URI's
password never shows. The full disk is real: a file of the run directory is a symlink to
/dev/full, which refuses every write with ENOSPC; the read-only directory is real too
(`readonly.run_cli_read_only`).
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from repro_kit import recording
from repro_kit.cli import main

from readonly import REPO, environ, run_cli_read_only

#: What must never be in a "could not do the job" line.
RAW = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b|\[Errno|Traceback")

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full (not Linux)")


def cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro_kit", *args], cwd=cwd, env=environ(), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("repro-kit: error: "), err
    assert not RAW.search(lines[0]), f"a Python exception name or raw errno: {lines[0]}"
    return lines[0]


def a_run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    assert main(["run", "--writes", "3", "--settle", "10", "--out", str(out)]) == 0
    return out


# -- a full disk ------------------------------------------------------------------------------
@needs_dev_full
def test_run_on_a_full_disk_exits_4_naming_the_file(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "trace.jsonl").symlink_to("/dev/full")  # the merge's trace: its first line meets a full disk
    proc = cli(["run", "--out", "run", "--fail-on-loss"], tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert one_line(proc.stderr) == "repro-kit: error: no space left on device writing run/trace.jsonl"
    assert proc.stdout == ""


def test_run_whose_events_file_meets_a_full_disk_names_it(tmp_path, capsys, monkeypatch):
    """ENOSPC raised at the write itself, as a buffered file's flush raises it: with no file
    name in the error; the line still names events.jsonl."""
    real = recording.RunRecorder._flush

    def full(self, fh):
        if fh.name.endswith("events.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, fh)

    monkeypatch.setattr(recording.RunRecorder, "_flush", full)
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--fail-on-loss"]) == 4
    captured = capsys.readouterr()
    assert one_line(captured.err) == f"repro-kit: error: no space left on device writing {out / 'events.jsonl'}"


@needs_dev_full
def test_report_on_a_full_disk_exits_4_naming_the_file(tmp_path):
    out = a_run(tmp_path)
    (out / "report.json").unlink()
    (out / "report.json").symlink_to("/dev/full")
    proc = cli(["report", "run", "--fail-on-loss"], tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert one_line(proc.stderr) == "repro-kit: error: no space left on device writing run/report.json"


# -- a read-only directory ---------------------------------------------------------------------
def test_report_into_a_read_only_run_directory_exits_4_naming_the_path(tmp_path):
    out = a_run(tmp_path)
    for name in ("report.json", "report.md", "timeline.png", "timeline.svg"):
        (out / name).unlink(missing_ok=True)
    proc = run_cli_read_only(out, ["report", str(out), "--fail-on-loss"], tmp_path)
    assert proc.returncode == 4, (proc.returncode, proc.stderr)
    line = one_line(proc.stderr)
    assert str(out) in line and ("read-only file system" in line or "permission denied" in line), line


def test_notebooks_into_a_read_only_directory_exits_4(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    proc = run_cli_read_only(locked, ["notebooks", str(locked / "nb")], tmp_path)
    assert proc.returncode == 4, (proc.returncode, proc.stderr)
    line = one_line(proc.stderr)
    assert str(locked / "nb") in line and ("read-only file system" in line or "permission denied" in line)


def test_fleet_into_a_read_only_directory_exits_4_before_running(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    proc = run_cli_read_only(locked, ["fleet", "--users", "2", "--out", str(locked / "f")], tmp_path)
    assert proc.returncode == 4, (proc.returncode, proc.stderr)
    line = one_line(proc.stderr)
    assert "--out" in line and str(locked / "f") in line


def test_menu_run_test_into_a_read_only_runs_directory_says_it_in_words(tmp_path):
    """The menu goes on (it is interactive); the failed Run test is one line in words."""
    runs = tmp_path / "runs"
    runs.mkdir()
    proc = run_cli_read_only(runs, ["menu", "--virtual", "--writes", "2", "--settle", "1"], tmp_path,
                             stdin="2\n9\n", env={"REPRO_KIT_RUNS": str(runs)})
    assert proc.returncode == 0, proc.stderr
    failed = [line for line in proc.stdout.splitlines() if "Run test failed" in line]
    assert len(failed) == 1, proc.stdout
    assert not RAW.search(failed[0]) and str(runs) in failed[0], failed[0]


# -- an unreachable server ----------------------------------------------------------------------
def test_audit_of_an_unreachable_server_exits_4_naming_the_flag_and_host(tmp_path):
    proc = cli(["audit", "--mongodb-uri", "mongodb://alice:hunter2-pw@127.0.0.1:1/?directConnection=true",
                "--timeout", "0.5"], tmp_path)
    assert proc.returncode == 4, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith("repro-kit: error: --mongodb-uri: ") and "127.0.0.1:1" in line
    assert "hunter2" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("uri, words", [
    ("mongodb+srv://alice:hunter2-pw@localhost", "domain name with a dot"),
    ("mongodb+srv://alice:hunter2-pw@cluster0.example.com:27017", "must not include a port"),
    ("mongodb+srv://alice:hunter2-pw@a.example.com,b.example.com", "exactly one host"),
    ("mongodb://alice:hunter2-pw@", "no host"),
    ("http://alice:hunter2-pw@example.com", "must start with mongodb://"),
    ("mongodb://alice:hunter2-pw@h/?tls=maybe", "not valid"),
])
def test_audit_bad_uri_exits_2_naming_the_flag_without_the_password(tmp_path, uri, words):
    proc = cli(["audit", "--mongodb-uri", uri, "--timeout", "0.5"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith("repro-kit: error: --mongodb-uri: ") and words in line, line
    assert "hunter2" not in proc.stderr + proc.stdout


def test_audit_uri_from_the_environment_is_named_so(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "repro_kit", "audit", "--timeout", "0.5"], cwd=tmp_path,
                          env={**environ(), "MONGODB_URI": "mongodb+srv://alice:hunter2-pw@localhost"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert one_line(proc.stderr).startswith("repro-kit: error: --mongodb-uri (from $MONGODB_URI): ")
    assert "hunter2" not in proc.stderr


def test_deploy_to_an_unreachable_server_exits_4_naming_the_host(tmp_path):
    env = {**environ(), "MONGODB_ATLAS_PUBLIC_API_KEY": "pub-key", "MONGODB_ATLAS_PRIVATE_API_KEY": "priv-secret"}
    proc = subprocess.run([sys.executable, "-m", "repro_kit", "deploy", "--app-id", "myapp-abcde", "--field", "tags",
                           "--bson-type", "array<string>", "--base-url", "http://127.0.0.1:1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    line = one_line(proc.stderr)
    assert "127.0.0.1:1" in line and "priv-secret" not in proc.stderr


# -- the codes, documented -----------------------------------------------------------------------
def test_readme_has_one_table_of_every_exit_code():
    readme = (REPO / "README.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| ([^|]+) \|", readme, flags=re.M))
    assert set(rows) == {"0", "1", "2", "3", "4", "130"}, rows
    assert "could not do the job" in rows["4"] and "--fail-on-loss" in rows["1"] and "--fail-on-loss" in rows["3"]


@pytest.mark.parametrize("command", ["run", "fleet", "report", "menu", "deploy", "audit", "notebooks", "export"])
def test_each_commands_help_lists_its_exit_codes(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "exit codes:" in text and re.search(r"^\s+4\s+could not do the job", text, flags=re.M), text
    assert re.search(r"^\s+2\s+bad input", text, flags=re.M)
