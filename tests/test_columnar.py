"""Columnar recordings (`RunRecorder(format="arrow")`): the very DataFrames JSON lines give,
crash safety as JSON lines have it, `repro-kit export --jsonl`, and the analysis unchanged."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repro_kit import recording
from repro_kit.findings import analyse
from repro_kit.recording import EVENTS_ARROW, HISTORY_ARROW, RunRecorder, load_run

from runs import record_scenario

ROOT = Path(__file__).resolve().parents[1]


def _record(path: Path, fmt: str, ops: list[dict], events: list[dict], flush_every: int | None = None,
            finish: bool = True) -> Path:
    rec = RunRecorder(path, {"backend": "synthetic"}, format=fmt, flush_every=flush_every)
    for op in ops:
        rec.op(**op)
    for event in events:
        rec.event(event)
    if finish:
        rec.finish()
    else:
        rec.close()
    return path


def _same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def assert_same_frames(a, b) -> None:
    """Equal frames, dtype for dtype, categories in the same order, and in object columns the
    very Python values (1 stays an int, None stays None, not NaN)."""
    for name in ("history", "events"):
        left, right = getattr(a, name), getattr(b, name)
        pd.testing.assert_frame_equal(left, right, check_dtype=True, check_exact=True, check_categorical=True,
                                      check_column_type=True, check_index_type=True)
        for col in left.columns:
            if isinstance(left[col].dtype, pd.CategoricalDtype):
                assert left[col].cat.categories.tolist() == right[col].cat.categories.tolist(), (name, col)
                assert left[col].cat.categories.dtype == right[col].cat.categories.dtype, (name, col)
            elif left[col].dtype == object:
                assert all(map(_same_value, left[col], right[col])), (name, col)


def _ev(t, observer="device", kind="counts", **fields):
    return {"time": t, "observer": observer, "kind": kind, **fields}


def _op(i, typ="invoke", f="add", value=None, process=0, t=None):
    return {"process": process, "type": typ, "f": f, "value": f"n{i}" if value is None and f == "add" else value,
            "time": float(i) if t is None else t}


_OPS = [_op(0), _op(0, "ok", t=0.05), _op(1), _op(1, "ok", t=1.05),
        _op(2, "invoke", "deploy", {"field": "tags", "bson_type": "array<string>"}, "nemesis", 1.5),
        _op(3, "info", "halt", {"snapshot_docs": 3, "nested": [1, {"a": None}]}, "nemesis", 1.6),
        _op(4, "info", "add", None, 0, 2.0), _op(5, "fail", "read", (1, 2), 3, 2.5)]

CASES = {
    "kit events": [
        _ev(0.0, kind="doc_insert", node_id="n0"), _ev(0.0, kind="enter", node_id="n0"),
        _ev(0.0, root_children=1, nodes_total=1), _ev(0.5, "atlas", "poll", root_children=0, nodes_total=0),
        _ev(180.0, kind="batch", batch=20), _ev(180.0, kind="leave", node_id="n1"), _ev(181, root_children=0)],
    "a fleet's keys": [
        _ev(1.0, kind="leave", node_id="n0", user=3), _ev(1.5, kind="batch", batch=20, user=4),
        _ev(2.0, kind="final", user=3, root_id="r3", root_children=2, nodes_total=5, children=["a", "b"]),
        _ev(2.0, kind="final", user=4, root_id=None, root_children=0, nodes_total=1, children=[])],
    "None and NaN": [
        _ev(1.0, node_id=None, root_children=None), _ev(2.0, extra=float("nan")), _ev(3.0, extra=None),
        _ev(4.0, only_null=None), _ev(4.5, kind="enter", node_id="n1"), _ev(5.0, extra=float("inf"))],
    "extra keys of mixed types": [
        _ev(1.0, x=1, y="a", z=True), _ev(2.0, x="two", y=2.5, z=False), _ev(3.0, x=3.0, y=None),
        _ev(4.0, x=2 ** 70, w={"nested": [1, 2]}, v=(1, 2)), _ev(5.0, x=-(2 ** 63), u=2 ** 63),
        _ev(6.0, np_int=np.int64(3), np_float=np.float64(1.5), np_bool=np.bool_(True))],
    "unusual kit values": [
        _ev(1.0, observer="watcher-2"), _ev(2.0, observer="a-view", kind="gossip"),
        _ev(3.0, observer=5, kind="enter", node_id="n0"), _ev(4.0, root_children="7"),
        _ev(5.0, root_children=2 ** 60 + 1), _ev(6.0, batch=True), _ev(7.0, nodes_total=3.0)],
    "text": [_ev(1.0, kind="enter", node_id="caf\u00e9 \u2603"), _ev(2.0, note="line\nbreak \"quoted\" \\ \u00e9")],
    "no events": [],
}


@pytest.mark.parametrize("flush_every", [1, 3, None])
@pytest.mark.parametrize("case", sorted(CASES))
def test_columnar_and_json_lines_load_the_same_frames(tmp_path, case, flush_every):
    events = CASES[case]
    text = load_run(_record(tmp_path / "jsonl", "jsonl", _OPS, events))
    columnar = load_run(_record(tmp_path / "arrow", "arrow", _OPS, events, flush_every))
    assert (tmp_path / "arrow" / EVENTS_ARROW).exists() and not (tmp_path / "arrow" / "events.jsonl").exists()
    assert_same_frames(text, columnar)
    assert columnar.warnings == text.warnings == ()
    assert columnar.end_s == text.end_s


_OPS_CASES = {
    "adds only (int processes, string values)": [_op(i, t=float(i)) for i in range(5)] + [_op(1, "ok", t=9.0)],
    "no values at all": [_op(i, "invoke", "read", None, i, float(i)) for i in range(3)],
    "values of every kind": [_op(0), _op(1, "info", "halt", {"a": [1, None]}, "nemesis", 1.0),
                             _op(2, "ok", "read", [1, "x", 2.5, True], 7, 2.0), _op(3, "fail", "add", 3, 0, 3.0),
                             _op(4, "ok", "read", 2 ** 70, 1, 4.0), _op(5, "info", "add", float("nan"), 1, 5.0)],
}


@pytest.mark.parametrize("flush_every", [1, 2, None])
@pytest.mark.parametrize("case", sorted(_OPS_CASES))
def test_a_columnar_history_is_the_frame_its_records_make(tmp_path, case, flush_every):
    """The history frame of a columnar run, built from its columns (no dict a record), equals the
    JSON lines' one, dtype for dtype and value for value, whatever the ops hold."""
    ops = _OPS_CASES[case]
    text = load_run(_record(tmp_path / "jsonl", "jsonl", ops, []))
    columnar = load_run(_record(tmp_path / "arrow", "arrow", ops, [], flush_every))
    assert_same_frames(text, columnar)
    assert len(columnar.history) == len(ops)


def _outcome(run) -> tuple:
    a = analyse(run)
    v = a.verdict
    return (v.summary(), v.acknowledged, v.lost, v.orphaned, v.stale, v.resync_batches, a.final_counts,
            a.deploy_window, a.intervals.to_csv(), a.lifecycle.to_csv())


@pytest.mark.parametrize("kwargs", [{}, {"loss": False}, {"vanish": (3, 30.0, 40.0), "atlas_late": {2: 4.0}},
                                    {"finish": False, "end_s": 60.0}])
def test_a_scenario_recorded_columnar_is_judged_as_recorded_as_json_lines(tmp_path, monkeypatch, kwargs):
    text = load_run(record_scenario(tmp_path / "jsonl", **kwargs))
    monkeypatch.setitem(RunRecorder.__init__.__kwdefaults__, "format", "arrow")
    monkeypatch.setitem(RunRecorder.__init__.__kwdefaults__, "flush_every", 5)
    columnar = load_run(record_scenario(tmp_path / "arrow", **kwargs))
    assert (tmp_path / "arrow" / HISTORY_ARROW).exists()
    assert _outcome(columnar) == _outcome(text)
    assert_same_frames(text, columnar)


def test_an_emulator_run_recorded_columnar_is_the_same_run(tmp_path, monkeypatch):
    from repro_kit.client import connect
    from repro_kit.driver import run_test

    text = run_test(connect(seed=1, resync_delay_s=10.0), 6, 1.0, 2.5, 20.0, out=tmp_path / "jsonl", progress=False)
    monkeypatch.setitem(RunRecorder.__init__.__kwdefaults__, "format", "arrow")
    columnar = run_test(connect(seed=1, resync_delay_s=10.0), 6, 1.0, 2.5, 20.0, out=tmp_path / "arrow",
                        progress=False)
    assert (tmp_path / "arrow" / EVENTS_ARROW).exists() and (tmp_path / "arrow" / "trace.jsonl").exists()
    assert _outcome(columnar) == _outcome(text)
    assert [e.steps for e in analyse(columnar).explanations()] == [e.steps for e in analyse(text).explanations()]
    assert_same_frames(text, columnar)


# The benchmark's synthetic run at small sizes: lost set, intervals and lifecycle hashed from the
# analysis as it was before the columnar recordings and the column-based analysis (main at 985e5ec).
BEFORE = {
    (3_000, 5): ("82b5116720b5f35219495b9411f639b16b9e6b09a6f93e961f2e4b33d3d5a7c0",
                 "e7f46daba88a0e4ecac6514e0f15e1545e9712388c65ec57f435c3b5bf07467b",
                 "d647632adce30dab41e9c646e3b01acc12abda1832220d69b60098ff639c6bec"),
    (20_000, 7): ("592417e990b46e5a68229d891324a3be34ff4b45e599bae1546f5955d319071d",
                  "f6c0803c5b182ae3c13d23e37fe71565fedbc30044ed7c1413190fd51fa0c927",
                  "637a14b4f4a490299a54173383bee9c7d0c4ca787b440c0fb303271ad6fa5bce"),
}


@pytest.mark.parametrize("size,seed", sorted(BEFORE))
def test_the_benchmark_run_is_analysed_exactly_as_before_in_both_formats(tmp_path, size, seed):
    sys.path.insert(0, str(ROOT))
    from benchmarks.analysis import synthesise

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    runs = {}
    for fmt in ("jsonl", "arrow"):
        synthesise(tmp_path / fmt, events=size, seed=seed, format=fmt)
        runs[fmt] = load_run(tmp_path / fmt)
        a = analyse(runs[fmt])
        got = (digest(json.dumps(a.verdict.lost)), digest(a.intervals.to_csv(index=False)),
               digest(a.lifecycle.to_csv(index=False)))
        assert got == BEFORE[(size, seed)], fmt
    assert_same_frames(runs["jsonl"], runs["arrow"])


def test_frames_handed_out_and_changed_are_what_the_analysis_reads(tmp_path):
    run = load_run(record_scenario(tmp_path / "run"))
    lost = analyse(run).verdict.lost
    assert lost
    run.events = run.events[run.events["kind"].astype(str) != "leave"].reset_index(drop=True)
    assert analyse(run).verdict.lost == []  # nothing left the root any more: the changed frame counts


# -- crash safety ---------------------------------------------------------------------------------

_KILLED_WRITER = """
import sys, time
from repro_kit.recording import RunRecorder
fmt = sys.argv[2]
rec = RunRecorder(sys.argv[1], {"backend": "emulator"}, format=fmt, flush_every=1 if fmt == "jsonl" else 10 ** 9)
i = 0
while True:
    rec.invoke(0, "add", f"n{i}", time=float(i))
    rec.event({"time": float(i), "observer": "device", "kind": "enter", "node_id": f"n{i}", "user": i % 3})
    rec.ok(0, "add", f"n{i}", time=i + 0.05)
    i += 1
    if fmt == "jsonl" or i % 25 == 0:
        if fmt != "jsonl":
            rec.flush()
        print(2 * i, flush=True)  # ops known to be on disk
    time.sleep(0.001)
"""


@pytest.mark.parametrize("fmt", ["jsonl", "arrow"])
def test_a_sigkilled_writer_leaves_every_flushed_record_loadable(tmp_path, fmt):
    from repro_kit.findings import check

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(run_dir), fmt], stdout=subprocess.PIPE,
                            text=True)
    flushed = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and flushed < 400:
            line = proc.stdout.readline()
            if not line:
                break
            flushed = int(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert flushed >= 400
    run = load_run(run_dir)
    assert not run.finished
    assert len(run.history) >= flushed  # every flushed op survived the kill
    assert run.history["index"].tolist() == list(range(len(run.history)))
    if fmt == "arrow":
        assert len(run.history) % 50 == 0  # whole batches only: what was not flushed is gone
        assert run.events["user"].tolist() == [i % 3 for i in range(len(run.events))]
    verdict = check(run)
    assert verdict.lost == [] and len(verdict.acknowledged) >= 100
    assert verdict.outcome == "inconclusive"


def test_a_cut_last_batch_is_dropped_with_a_warning(tmp_path):
    """A batch is written with one write, so a kill leaves whole batches; a full disk can still
    cut the last one: every whole batch before it loads, the rest is dropped with a warning."""
    import pyarrow as pa

    events = [_ev(float(i), kind="enter", node_id=f"n{i}", user=i) for i in range(40)]
    path = _record(tmp_path / "run", "arrow", _OPS, events, flush_every=6)
    whole = load_run(path)
    data = (path / EVENTS_ARROW).read_bytes()
    ends, sizes = [], []  # where each batch's stream ends, and its rows
    source = pa.BufferReader(data)
    while source.tell() < len(data):
        sizes.append(sum(len(b) for b in pa.ipc.open_stream(source)))
        ends.append(source.tell())
    assert len(ends) > 3 and sum(sizes) == 40
    cut_dir = tmp_path / "cut"
    for cut in sorted({1, ends[0] - 1, ends[0], ends[0] + 5, ends[2] - 40, ends[-2] + 100, len(data) - 1}):
        shutil.rmtree(cut_dir, ignore_errors=True)
        shutil.copytree(path, cut_dir)
        (cut_dir / EVENTS_ARROW).write_bytes(data[:cut])
        run = load_run(cut_dir)
        n = sum(size for size, end in zip(sizes, ends) if end - 8 <= cut)  # a batch whole but for its 8-byte end mark is kept
        assert len(run.events) == n, cut
        if n:
            pd.testing.assert_frame_equal(run.events, whole.events.iloc[:n], check_categorical=False)
        assert any("dropped an incomplete last batch" in w for w in run.warnings) == (cut not in ends), cut
        assert len(run.history) == len(whole.history)


# -- export ---------------------------------------------------------------------------------------


def test_export_writes_json_lines_that_load_as_the_columnar_run(tmp_path, capsys):
    from repro_kit.cli import main

    events = [e for case in ("kit events", "a fleet's keys", "None and NaN", "extra keys of mixed types", "text")
              for e in CASES[case]]
    path = _record(tmp_path / "run", "arrow", _OPS, events, flush_every=4)
    columnar = load_run(path)
    assert main(["export", str(path), "--jsonl"]) == 0
    out = capsys.readouterr().out
    assert "history.jsonl" in out and "events.jsonl" in out
    assert_same_frames(load_run(path), columnar)  # the columnar logs are still the ones read
    text_only = tmp_path / "text"
    shutil.copytree(path, text_only)
    for name in (HISTORY_ARROW, EVENTS_ARROW):
        (text_only / name).unlink()
    assert_same_frames(load_run(text_only), columnar)
    first = json.loads((text_only / "events.jsonl").read_text().splitlines()[0])
    assert list(first)[:3] == ["time", "observer", "kind"]
    assert main(["export", str(path), "--jsonl"]) == 0  # again: the same files, replaced


def test_export_of_a_json_lines_run_has_nothing_to_do(tmp_path, capsys):
    from repro_kit.cli import main

    path = record_scenario(tmp_path / "run")
    before = (path / "events.jsonl").read_bytes()
    assert main(["export", str(path), "--jsonl"]) == 0
    assert "nothing to export" in capsys.readouterr().out
    assert (path / "events.jsonl").read_bytes() == before


@pytest.mark.parametrize("args,needle", [
    (["export", "{missing}", "--jsonl"], "DIR: "),
    (["export", "{empty}", "--jsonl"], "not a run directory"),
    (["export", "{file}", "--jsonl"], "not a directory"),
    (["export", "{run}"], "--jsonl"),
])
def test_export_bad_input_exits_2_with_one_line(tmp_path, capsys, args, needle):
    from repro_kit.cli import main

    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    run = _record(tmp_path / "run", "arrow", _OPS, CASES["kit events"])
    names = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "file": tmp_path / "file", "run": run}
    assert main([a.format(**names) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err


def test_export_that_cannot_write_exits_4_naming_the_file(tmp_path, capsys):
    from repro_kit.cli import main

    run = _record(tmp_path / "run", "arrow", _OPS, CASES["kit events"])
    (run / "events.jsonl").mkdir()  # the file cannot be written: a folder holds its name
    assert main(["export", str(run), "--jsonl"]) == 4
    err = capsys.readouterr().err.strip()
    assert err == f"repro-kit: error: is a directory: {run / 'events.jsonl'}"
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_export_into_a_read_only_run_directory_exits_4_in_words(tmp_path):
    try:
        from readonly import run_cli_read_only
    except ImportError:  # tests/ imported as a package
        from tests.readonly import run_cli_read_only

    run = _record(tmp_path / "run", "arrow", _OPS, CASES["kit events"])
    proc = run_cli_read_only(run, ["export", str(run), "--jsonl"], tmp_path)
    assert proc.returncode == 4, (proc.returncode, proc.stderr)
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("repro-kit: error: ") and str(run) in line
    assert "read-only file system" in line or "permission denied" in line
    assert "Error" not in line and "[Errno" not in line


# -- no pandas, no pyarrow for a run's verdict -------------------------------------------------------


def test_a_fresh_process_judges_the_reports_scenario_without_pandas_or_pyarrow(tmp_path):
    code = (
        "import sys, repro_kit as rk\n"
        f"run = rk.run_test(rk.connect(), out={str(tmp_path / 'run')!r}, progress=False)\n"
        "verdict = rk.analyse(run).verdict\n"
        "print(verdict.outcome, len(verdict.lost), sorted(m for m in ('pandas', 'pyarrow', 'matplotlib') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["lost", "14", "[]"]
    assert analyse(load_run(tmp_path / "run")).verdict.outcome == "lost"  # and its frames load as ever
