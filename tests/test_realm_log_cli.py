"""`repro-kit replay LOG [--json] [--out DIR] [--fail-on-loss]` through the real CLI: what it prints,
its exit codes (0, 1 orphaned under --fail-on-loss, 3 inconclusive, 2 a bad log, 4 unreadable or
unwritable), one error line each, and the run directory it leaves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from realm_logs import LogBuilder, append, create, report_scenario
from repro_kit.cli import main

DATA = Path(__file__).parent / "data" / "realm-core-13.17.1" / "sync-logs"
DEVICE_LOG = DATA / "device_trace.log"
OTHERS = ("c1", "c2", "c3", "p1")


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("repro-kit: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_replay_of_the_recorded_log_names_exactly_a1_a2_a3(tmp_path, capsys):
    assert main(["replay", str(DEVICE_LOG), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        "a1, a2, a3 left Node[root].children when the client integrated server version 6 from origin_file_ident 3 "
        "(based on server version 2): Clear(root.children), rule clear-vs-array-insert")
    named = set(re.findall(r"\b[a-z]\d\b", out))
    assert named == {"a1", "a2", "a3"}, named  # no other object is named
    assert "Checker: 3 of 7 nodes orphaned" in out and str(tmp_path / "run") in out


def test_fail_on_loss_exits_1_through_the_installed_command(tmp_path):
    kit = Path(sys.executable).parent / "repro-kit"
    done = subprocess.run([str(kit), "replay", str(DEVICE_LOG), "--out", str(tmp_path / "run"), "--fail-on-loss"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "a1, a2, a3 left Node[root].children" in done.stdout and done.stderr == ""


def test_json_gives_the_same_as_data(tmp_path, capsys):
    assert main(["replay", str(DEVICE_LOG), "--json", "--out", str(tmp_path / "run"), "--fail-on-loss"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "lost" and data["orphaned"] == ["a1", "a2", "a3"]
    (loss,) = data["losses"]
    assert loss["objects"] == ["a1", "a2", "a3"] and loss["rule"] == "clear-vs-array-insert"
    assert loss["step"]["server_version"] == 6 and loss["step"]["origin_file_ident"] == 3
    assert loss["step"]["base_version"] == 2 and "inferred" in loss["step"]["base_derivation"]
    assert data["checker"]["lost"] == ["a1", "a2", "a3"] and data["run_dir"] == str(tmp_path / "run")
    assert [c["kind"] for c in data["changesets"]].count("download") == 1
    assert data["root_children_at_end"] == ["c1", "c2", "c3", "p1"]


def test_inconclusive_exits_3_under_fail_on_loss(tmp_path, capsys):
    log = LogBuilder()
    log.t = 0.01
    log.upload(9, 5, create("a1", "a1") + [append("root", "a1", 3)])
    log.batch(6, 9)
    path = tmp_path / "late.log"
    path.write_text(log.text())
    assert main(["replay", str(path), "--out", str(tmp_path / "run"), "--fail-on-loss"]) == 3
    assert "Inconclusive: Node[root] was created before the log starts" in capsys.readouterr().out
    assert main(["replay", str(path), "--out", str(tmp_path / "run2")]) == 0


def _bad_logs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = report_scenario().text()
    lines = good.splitlines()
    header = next(n for n, line in enumerate(lines) if "DOWNLOAD CHANGESET" in line)
    missing = lines[:header + 1] + lines[header + 2:]
    hex_line = next(n for n, line in enumerate(lines) if "Changeset: " in line)
    truncated = list(lines)
    truncated[hex_line] = truncated[hex_line][:-12] + "..."
    resized = [re.sub(r"changeset_size=(\d+)", lambda m: f"changeset_size={int(m.group(1)) + 5}", line, count=1)
               if n == hex_line - 1 else line for n, line in enumerate(lines)]
    cases = {
        "garbage": ("\x00\x7f binary junk\nhello world\n", "no realm sync changesets found"),
        "truncated hex": ("\n".join(truncated), f"line {hex_line + 1}: the hex dump is clamped"),
        "header without changeset": ("\n".join(missing), f"line {header + 1}: DOWNLOAD CHANGESET header without "
                                                         "its changeset line"),
        "wrong size": ("\n".join(resized), f"line {hex_line + 1}: the changeset has"),
    }
    out = {}
    for name, (text, reason) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.log"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        out[name] = (path, reason)
    return out


@pytest.mark.parametrize("case", ["garbage", "truncated hex", "header without changeset", "wrong size"])
def test_bad_logs_exit_2_with_one_line_naming_the_problem(tmp_path, capsys, case):
    path, reason = _bad_logs(tmp_path)[case]
    assert main(["replay", str(path), "--out", str(tmp_path / "run")]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert f"bad log {path.name}: " in line and reason in line, line
    assert captured.out == "" and not (tmp_path / "run").exists()  # nothing written for a bad log


def test_unreadable_log_and_unwritable_dir_exit_4(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "missing.log")]) == 4
    assert "LOG: cannot read" in one_error_line(capsys.readouterr().err)
    assert main(["replay", str(tmp_path)]) == 4
    assert "is a directory" in one_error_line(capsys.readouterr().err)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["replay", str(DEVICE_LOG), "--out", str(blocker / "run")]) == 4
    assert "--out: cannot write to" in one_error_line(capsys.readouterr().err)
    if os.geteuid() != 0:  # root can read anything: the permission case only means something for a user
        locked = tmp_path / "locked.log"
        locked.write_text("x")
        locked.chmod(0)
        assert main(["replay", str(locked)]) == 4


def test_a_directory_that_already_holds_a_run_is_bad_input(tmp_path, capsys):
    assert main(["replay", str(DEVICE_LOG), "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["replay", str(DEVICE_LOG), "--out", str(tmp_path / "run")]) == 2
    assert "already holds a run" in one_error_line(capsys.readouterr().err)


def test_the_default_run_directory_is_under_the_runs_root(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_KIT_RUNS", str(tmp_path / "runs"))
    assert main(["replay", str(DEVICE_LOG)]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("replay-") and (run / "trace.jsonl").is_file()
    assert json.loads((run / "meta.json").read_text())["kind"] == "replay"
