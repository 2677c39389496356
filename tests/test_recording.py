"""The run directory survives crashes and loads into typed DataFrames."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro_kit.recording import EVENTS_FILE, HISTORY_FILE, META_FILE, RunRecorder, latest_run, load_run

from runs import node_id, record_scenario


def test_recorder_writes_meta_history_and_events(tmp_path: Path) -> None:
    with RunRecorder(tmp_path / "run", {"backend": "emulator", "writes": 2}) as rec:
        assert json.loads((tmp_path / "run" / META_FILE).read_text())["finished"] is False
        rec.invoke(0, "add", "n1", time=1.0)
        rec.ok(0, "add", "n1", time=1.05)
        rec.info(0, "add", "n2", time=2.0)
        rec.event({"time": 1.0, "observer": "device", "kind": "enter", "node_id": "n1"})
        # each line is on disk before the recorder is closed
        assert len((tmp_path / "run" / HISTORY_FILE).read_text().splitlines()) == 3
        assert len((tmp_path / "run" / EVENTS_FILE).read_text().splitlines()) == 1
    meta = json.loads((tmp_path / "run" / META_FILE).read_text())
    assert meta["finished"] is True and meta["backend"] == "emulator"
    assert {"python", "pandas", "matplotlib"} <= set(meta["versions"])
    assert "started_at" in meta
    lines = [json.loads(l) for l in (tmp_path / "run" / HISTORY_FILE).read_text().splitlines()]
    assert [l["index"] for l in lines] == [0, 1, 2]
    assert [l["type"] for l in lines] == ["invoke", "ok", "info"]


def test_finish_adds_extra_meta(tmp_path: Path) -> None:
    rec = RunRecorder(tmp_path, {"mode": "production"})
    rec.event({"time": 12.5, "observer": "atlas", "kind": "poll", "root_children": 1, "nodes_total": 2})
    rec.finish({"resync_delay_s": 180})
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["resync_delay_s"] == 180 and meta["duration_s"] == 12.5 and meta["finished"] is True
    with pytest.raises(ValueError, match="already finished"):
        rec.event({"time": 13.0, "observer": "atlas", "kind": "poll"})


def test_secrets_never_reach_meta(tmp_path: Path) -> None:
    rec = RunRecorder(tmp_path, {
        "params": {"api_key": "PRIVATE-123", "mongodb_uri": "mongodb://bob:hunter2@db.example/x"},
    })
    rec.finish({"access_token": "tok-456"})
    text = (tmp_path / META_FILE).read_text()
    for secret in ("PRIVATE-123", "hunter2", "tok-456"):
        assert secret not in text


def test_bad_arguments_raise_one_line_value_errors(tmp_path: Path) -> None:
    rec = RunRecorder(tmp_path)
    for call in (
        lambda: rec.op(0, "maybe", "add"),
        lambda: rec.op(0, "ok", ""),
        lambda: rec.op(1.5, "ok", "add"),
        lambda: rec.event({"time": 1.0, "kind": "enter"}),
        lambda: rec.invoke(0, "add", "x", time=float("nan")),
    ):
        with pytest.raises(ValueError) as err:
            call()
        assert "\n" not in str(err.value)
    rec.close()


def test_load_run_types_columns(tmp_path: Path) -> None:
    run = load_run(record_scenario(tmp_path / "run"))
    assert run.finished and run.warnings == ()
    assert run.meta["backend"] == "emulator"
    assert str(run.events["time"].dtype) == "float64"
    assert str(run.history["time"].dtype) == "float64"
    assert isinstance(run.events["observer"].dtype, __import__("pandas").CategoricalDtype)
    assert isinstance(run.events["kind"].dtype, __import__("pandas").CategoricalDtype)
    assert run.events["node_id"].dtype == "str"
    assert str(run.events["root_children"].dtype) == "Int64"
    adds = run.history[(run.history["f"] == "add") & (run.history["type"] == "ok")]
    assert adds["node_id"].tolist() == [node_id(i) for i in range(20)]
    assert run.history["index"].tolist() == list(range(len(run.history)))
    assert run.end_s == 200.0


def test_truncated_last_line_loads(tmp_path: Path) -> None:
    path = record_scenario(tmp_path / "run", finish=False)
    before = load_run(path)
    with open(path / EVENTS_FILE, "a") as fh:
        fh.write('{"time": 190.0, "observer": "dev')  # a write cut short by SIGKILL
    with open(path / HISTORY_FILE, "a") as fh:
        fh.write('{"index": 99, "ti\n')
    run = load_run(path)
    assert len(run.events) == len(before.events)
    assert len(run.history) == len(before.history)
    assert len(run.warnings) == 2 and not run.finished


def test_garbled_middle_line_raises_one_line(tmp_path: Path) -> None:
    path = record_scenario(tmp_path / "run")
    lines = (path / HISTORY_FILE).read_text().splitlines()
    lines.insert(3, "{garbage")
    (path / HISTORY_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"history.jsonl: line 4") as err:
        load_run(path)
    assert "\n" not in str(err.value)


def test_non_object_line_in_the_middle_raises(tmp_path: Path) -> None:
    path = record_scenario(tmp_path / "run")
    text = (path / EVENTS_FILE).read_text()
    (path / EVENTS_FILE).write_text("[1, 2]\n" + text)
    with pytest.raises(ValueError, match="line 1"):
        load_run(path)


def test_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a run directory"):
        load_run(tmp_path / "empty")


def test_latest_run_picks_newest_start(tmp_path: Path) -> None:
    RunRecorder(tmp_path / "b", {"started_at": "2024-05-01T10:00:00+00:00"}).finish()
    RunRecorder(tmp_path / "a", {"started_at": "2024-05-02T10:00:00+00:00"}).finish()
    (tmp_path / "not-a-run").mkdir()
    assert latest_run(tmp_path) == tmp_path / "a"
    with pytest.raises(ValueError, match="root_dir"):
        latest_run(tmp_path / "not-a-run")


_KILLED_WRITER = """
import sys, time
from repro_kit.recording import RunRecorder
rec = RunRecorder(sys.argv[1], {"backend": "emulator"})
i = 0
while True:
    rec.invoke(0, "add", f"n{i}", time=float(i))
    rec.event({"time": float(i), "observer": "device", "kind": "enter", "node_id": f"n{i}"})
    rec.ok(0, "add", f"n{i}", time=i + 0.05)
    i += 1
    time.sleep(0.001)
"""


def test_sigkilled_run_loads_and_checks(tmp_path: Path) -> None:
    from repro_kit.findings import check

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(run_dir)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            hist = run_dir / HISTORY_FILE
            if hist.exists() and hist.stat().st_size > 2000:
                break
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    run = load_run(run_dir)
    assert not run.finished
    assert len(run.history) > 10
    verdict = check(run)
    assert verdict.lost == [] and len(verdict.acknowledged) >= 5
    assert verdict.outcome == "inconclusive" and verdict.valid is None  # killed: nothing to judge a deploy by


def test_a_directory_holding_a_run_is_never_appended_to(tmp_path):
    from repro_kit.recording import RunRecorder, load_run

    with RunRecorder(tmp_path / "r", {"mode": "production"}) as rec:
        rec.op(process=0, type="invoke", f="add", value="a", time=0.0)
    with pytest.raises(ValueError, match="already holds a run"):
        RunRecorder(tmp_path / "r", {})
    assert len(load_run(tmp_path / "r").history) == 1


def test_trace_is_appended_line_by_line_and_survives_a_cut_last_line(tmp_path: Path) -> None:
    from repro_kit.recording import TRACE_FILE

    rec = RunRecorder(tmp_path / "run", {"backend": "emulator"})
    rec.trace({"time": 1.5, "kind": "integrate", "version": 2, "origin": 2, "instructions": []})
    rec.trace({"time": 185.5, "kind": "discarded", "rule": "clear-vs-array-insert", "instruction": {"op": "Clear"}})
    assert len((tmp_path / "run" / TRACE_FILE).read_text().splitlines()) == 2  # flushed, before finish
    rec.close()
    with open(tmp_path / "run" / TRACE_FILE, "a") as fh:
        fh.write('{"time": 186.0, "kind": "disc')  # a SIGKILL mid-write
    run = load_run(tmp_path / "run")
    assert [r["kind"] for r in run.trace] == ["integrate", "discarded"]
    assert any(TRACE_FILE in w for w in run.warnings)
    with pytest.raises(ValueError, match="kind"):
        RunRecorder(tmp_path / "other").trace({"time": 1.0})


def test_a_run_without_a_trace_loads_with_an_empty_one(tmp_path: Path) -> None:
    run = load_run(record_scenario(tmp_path / "run"))
    assert run.trace == []
