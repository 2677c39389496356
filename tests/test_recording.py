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


@pytest.mark.parametrize("fmt", ["jsonl", "arrow"])
def test_a_line_handed_over_is_written_as_a_checked_one(tmp_path: Path, fmt: str) -> None:
    """What the driver hands over (`take=True`, a history Event's line) is kept as it is and loads
    exactly as the same observation given the checked way, in both formats."""
    handed, checked = tmp_path / "handed", tmp_path / "checked"
    events = [{"time": 1.5, "observer": "device", "kind": "enter", "node_id": "n1", "user": 3},
              {"time": 2.0, "observer": "device", "kind": "counts", "root_children": 1, "nodes_total": 2, "user": 3}]
    with RunRecorder(handed, {"backend": "emulator"}, format=fmt) as rec:
        for event in events:
            line = dict(event)
            assert rec.event(line, take=True) is line  # no copy
    with RunRecorder(checked, {"backend": "emulator"}, format=fmt) as rec:
        for event in events:
            rec.event({k: event[k] for k in reversed(list(event))})  # any key order: the recorder orders it
    a, b = load_run(handed), load_run(checked)
    assert a.events.equals(b.events) and len(a.events) == 2 and a.end_s == b.end_s == 2.0


@pytest.mark.parametrize("fmt", ["jsonl", "arrow"])
@pytest.mark.parametrize("take", [True, False])
def test_events_appended_together_are_recorded_as_one_by_one(tmp_path: Path, fmt: str, take: bool) -> None:
    """`event_all` (a device notification's events at once) writes what `event` would for each, in
    order, with the same counts and end; JSON lines are on disk when it returns."""
    events = [{"time": 1.5, "observer": "device", "kind": "doc_insert", "node_id": "n1", "user": 3},
              {"time": 1.5, "observer": "device", "kind": "enter", "node_id": "n1", "user": 3},
              {"time": 1.5, "observer": "device", "kind": "counts", "root_children": 1, "nodes_total": 2, "user": 3}]
    together, apart = tmp_path / "together", tmp_path / "apart"
    with RunRecorder(together, {"backend": "emulator"}, format=fmt) as rec:
        assert rec.event_all([], take=take) == []
        lines = rec.event_all([dict(e) for e in events], take=take)
        assert lines == events
        if fmt == "jsonl":
            assert [json.loads(l) for l in (together / EVENTS_FILE).read_text().splitlines()] == events
    with RunRecorder(apart, {"backend": "emulator"}, format=fmt) as rec:
        for event in events:
            rec.event(dict(event), take=take)
    a, b = load_run(together), load_run(apart)
    assert a.events.equals(b.events) and len(a.events) == 3 and a.end_s == b.end_s == 1.5
    assert a.meta["records"] == b.meta["records"]
    with RunRecorder(tmp_path / "bad", format=fmt) as rec, pytest.raises(ValueError, match="observer"):
        rec.event_all([{"time": 1.0, "kind": "enter"}])


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


# -- load_run through pyarrow: exactly the pure-Python path's frames -----------------------------

pyarrow = pytest.importorskip("pyarrow")


def _load_both(path: Path, monkeypatch: pytest.MonkeyPatch):
    """load_run's events through pyarrow and through the pure-Python path: (frame, warnings) or the error."""
    from repro_kit import recording

    out = []
    monkeypatch.setattr(recording, "_ARROW_MIN_BYTES", 0)  # small files too: the two readers compared
    for use_arrow in (True, False):
        monkeypatch.setattr(recording, "_USE_ARROW", use_arrow)
        try:
            run = load_run(path)
            out.append((run.events, run.warnings, run.history))
        except ValueError as err:
            out.append(("error", str(err)))
    monkeypatch.setattr(recording, "_USE_ARROW", True)
    return out


def _assert_same(path: Path, monkeypatch: pytest.MonkeyPatch, *, arrow: bool) -> None:
    """Both paths give the same frames and warnings (or the same error); `arrow`: pyarrow read it."""
    import pandas as pd

    from repro_kit import recording

    fast, slow = _load_both(path, monkeypatch)
    if isinstance(slow[0], str) or isinstance(fast[0], str):  # ("error", message)
        assert fast == slow
    else:
        pd.testing.assert_frame_equal(fast[0], slow[0], check_exact=True, check_categorical=True,
                                      check_column_type=True, check_index_type=True)
        assert fast[0]["observer"].cat.categories.tolist() == slow[0]["observer"].cat.categories.tolist()
        assert fast[0]["kind"].cat.categories.tolist() == slow[0]["kind"].cat.categories.tolist()
        for col in fast[0].columns[7:]:  # extra keys: the very values json.loads gave (1 stays int, not 1.0)
            assert [(type(v), v) for v in fast[0][col]] == [(type(v), v) for v in slow[0][col]]
        assert fast[1] == slow[1]
        pd.testing.assert_frame_equal(fast[2], slow[2])
    used = recording._load_events_arrow(path / EVENTS_FILE) is not None
    assert used == arrow, f"pyarrow path {'not ' if arrow else ''}taken for {path.name}"


def _write_events(path: Path, lines: list[str], meta: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if meta:
        (path / META_FILE).write_text('{"backend": "synthetic"}')
    (path / EVENTS_FILE).write_text("".join(lines))
    return path


def _ev(**fields) -> str:
    return json.dumps({"time": 1.0, "observer": "device", "kind": "counts", **fields}) + "\n"


@pytest.mark.parametrize("kwargs", [
    {}, {"loss": False}, {"deploy_at_s": None}, {"vanish": (3, 30.0, 40.0), "atlas_late": {2: 4.0}},
    {"finish": False, "end_s": 60.0}, {"writes": 1},
])
def test_pyarrow_reads_the_synthetic_runs_as_the_python_path(tmp_path, monkeypatch, kwargs):
    _assert_same(record_scenario(tmp_path / "run", **kwargs), monkeypatch, arrow=True)


def test_pyarrow_reads_an_emulator_run_as_the_python_path(tmp_path, monkeypatch):
    from repro_kit.client import connect
    from repro_kit.driver import run_test

    run_test(connect(seed=1, resync_delay_s=10.0), 6, 1.0, 2.5, 20.0, out=tmp_path / "emu", progress=False)
    _assert_same(tmp_path / "emu", monkeypatch, arrow=True)
    run_test(connect(seed=2, encoding="diff"), 4, 1.0, None, 5.0, out=tmp_path / "clean", progress=False)
    _assert_same(tmp_path / "clean", monkeypatch, arrow=True)


def test_pyarrow_reads_the_benchmark_run_as_the_python_path(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.analysis import synthesise

    synthesise(tmp_path / "bench", events=3_000, seed=5, format="jsonl")
    _assert_same(tmp_path / "bench", monkeypatch, arrow=True)


def test_pyarrow_and_python_agree_on_a_cut_last_line(tmp_path, monkeypatch):
    path = record_scenario(tmp_path / "run", finish=False)
    with open(path / EVENTS_FILE, "a") as fh:
        fh.write('{"time": 190.0, "observer": "dev')
    _assert_same(path, monkeypatch, arrow=True)
    assert any("dropped an incomplete last line" in w for w in load_run(path).warnings)
    # cut, then blank lines after it; and a last line that is valid JSON but not an object
    (tmp_path / "b").mkdir()
    lines = (path / EVENTS_FILE).read_text().splitlines(keepends=True)
    _assert_same(_write_events(tmp_path / "b", lines[:-1] + ['{"time": 19\n', "\n", "   \n"]), monkeypatch, arrow=True)
    _assert_same(_write_events(tmp_path / "c", lines[:-1] + ["[1, 2]\n"]), monkeypatch, arrow=True)
    _assert_same(_write_events(tmp_path / "d", lines[:-1] + ['{"time": 1.0, "observer": "device", "kind": "co\xe9\n']),
                 monkeypatch, arrow=True)


@pytest.mark.parametrize("lines,arrow", [
    ([], False),                                           # an empty events file
    (["\n", "  \n"], False),                               # blank lines only
    (['{"time": 1.0, "obs'], False),                       # the only line, cut
    ([_ev(node_id=None, root_children=None)], True),      # explicit nulls
    ([_ev(observer="watcher-2"), _ev(observer="atlas"), _ev(observer="a-view")], True),  # unknown observers sort after
    ([_ev(kind="gossip"), _ev(time=None), _ev(time=3)], True),  # unknown kind, null time, an int time
    ([_ev(), "\n", "   \n", _ev(time=2.0)], True),        # blank lines in the middle
    ([_ev(), "{garbage\n", _ev()], False),                 # a bad line in the middle: the same error
    ([_ev(), '{"time": 1} {"time": 2}\n', _ev()], False),  # two objects on a line: pyarrow would read it
    ([_ev(), '{"time": 1},{"time": 2}\n', _ev()], False),  # json.loads reads this one (in a block)
    ([_ev(), '{"time": 1},{"time": 2}\n'], False),         # ... and as the last line
    ([_ev(), '{"time": 1, "time": 2, "observer": "device", "kind": "poll"}\n'], False),  # a repeated key
    ([_ev().replace("\n", "\r\n"), _ev().replace("\n", "\r\n")], False),  # CRLF
    ([_ev(node_id="caf\u00e9 \u2603"), _ev(node_id="\u00e9")], True),  # escaped non-ASCII
    ([_ev(root_children="7"), _ev(root_children=3)], False),  # a count as a string: to_numeric's call
    ([_ev(root_children=1.0), _ev()], False),
    ([_ev(root_children=2 ** 60 + 1), _ev()], False),     # the Python path rounds through float64 there
    ([_ev(root_children=2 ** 60 + 1), _ev(root_children=1)], False),
    ([_ev(node_id=12), _ev()], False),                     # a number where a string belongs
    ([_ev(time="1.5"), _ev()], False),
    ([_ev(time=float("nan")), _ev(time=float("inf"))], True),  # NaN, Infinity: json.loads reads them too
])
def test_pyarrow_and_python_agree_line_by_line(tmp_path, monkeypatch, lines, arrow):
    _assert_same(_write_events(tmp_path / "run", lines), monkeypatch, arrow=arrow)


@pytest.mark.parametrize("lines,arrow", [
    # extra keys of exact types: strings, ints, booleans, nulls, in order of first appearance
    ([_ev(zeta=1, alpha="x"), _ev(mid=True), _ev(beta=None), _ev(alpha=None, zeta=2)], True),
    ([_ev(late=None), _ev(), _ev(early="x"), _ev(late="y")], True),  # a key first seen holding null
    ([_ev(a="b"), _ev(b=1, a="c")], True),                # the key's name first appears as a value
    ([_ev(tags={"b": 1}), _ev(b=2)], False),              # ... or nested: a struct, the Python path
    ([_ev(x=1), _ev(x=1.5)], False),                      # pyarrow would make 1 a 1.0
    ([_ev(x="2024-05-01T10:00:00"), _ev(x="2024-05-02 10:00:00")], False),  # pyarrow: a timestamp
    ([_ev(x=[1, 2]), _ev()], False),
    ([_ev(x=1), _ev(x="a")], False),
    ([_ev(x=2 ** 70), _ev()], False),
    ([_ev(**{"we\u00efrd key": "v", "q\"uote": 1})], False),  # a backslash in the file
    ([_ev(**{"we\u00efrd key": "v"}).replace("\\u00ef", "\u00ef"), _ev(plain=1)], True),
])
def test_pyarrow_and_python_agree_on_extra_keys(tmp_path, monkeypatch, lines, arrow):
    _assert_same(_write_events(tmp_path / "run", lines), monkeypatch, arrow=arrow)


def test_extra_keys_across_blocks_keep_the_order_of_first_appearance(tmp_path, monkeypatch):
    """Many small blocks and chunks: columns in order of first appearance, and a key absent from a
    whole chunk is None there as in any other row (never NaN)."""
    import random

    from repro_kit import recording

    rng = random.Random(3)
    lines = []
    for i in range(4000):
        extra = {}
        if rng.random() < 0.01:  # one type per key (a key of two types goes to the Python path)
            k = rng.randrange(12)
            extra[f"k{k}"] = rng.choice([None, ("v", 7, False)[k % 3]])
        lines.append(_ev(time=i * 0.1, node_id=f"n{i % 50}", kind="enter", **extra))
    path = _write_events(tmp_path / "run", lines)
    monkeypatch.setattr(recording, "_ARROW_BLOCK_BYTES", 4096)
    monkeypatch.setattr(recording, "_CHUNK_BYTES", 8192)
    _assert_same(path, monkeypatch, arrow=True)
    events = load_run(path).events
    keys = list(dict.fromkeys(k for line in lines for k in json.loads(line) if k[1:].isdigit()))
    assert list(events.columns[7:]) == keys
    assert all(v is None or v in ("v", 7, False) for col in keys for v in events[col])


def test_invalid_utf8_is_replaced_as_the_python_path_does(tmp_path, monkeypatch):
    path = _write_events(tmp_path / "run", [])
    (path / EVENTS_FILE).write_bytes(_ev(node_id="n1").encode() + b'{"time": 2.0, "observer": "device", '
                                     b'"kind": "enter", "node_id": "n\xff2"}\n' + _ev(node_id="n3").encode())
    _assert_same(path, monkeypatch, arrow=False)
    assert load_run(path).events["node_id"].tolist()[1] == "n\ufffd2"


def test_an_extra_key_changing_type_between_blocks_is_read_safely(tmp_path, monkeypatch):
    """pyarrow 26 crashes the process when a column it infers is a number in one block and a
    boolean in a later one: extra keys are inferred in one block, where that is an error."""
    from repro_kit import recording

    lines = [_ev(x=7)] + [_ev(time=i * 0.1) for i in range(400)] + [_ev(x=True)]
    path = _write_events(tmp_path / "run", lines)
    monkeypatch.setattr(recording, "_ARROW_BLOCK_BYTES", 1024)
    _assert_same(path, monkeypatch, arrow=False)
    assert load_run(path).events["x"].iloc[[0, -1]].tolist() == [7, True]


def test_without_pyarrow_the_python_path_reads_the_run(tmp_path, monkeypatch):
    from repro_kit import recording

    path = record_scenario(tmp_path / "run")
    with_arrow = load_run(path)
    monkeypatch.setattr(recording, "_arrow_modules", False)  # as when `import pyarrow` fails
    assert recording._load_events_arrow(path / EVENTS_FILE) is None
    __import__("pandas").testing.assert_frame_equal(load_run(path).events, with_arrow.events)


def test_the_versions_table_is_what_importlib_metadata_finds(tmp_path, monkeypatch):
    """default_versions lists sys.path's folders once instead of asking importlib.metadata seven
    times; the versions must be the ones importlib.metadata gives, first folder first."""
    import importlib.metadata as metadata

    from repro_kit.recording import _VERSIONED, default_versions

    def expected() -> dict:
        out = {}
        for dist in _VERSIONED:
            try:
                out[dist] = metadata.version(dist)
            except Exception:  # not installed, or its metadata broken (the shadow's numpy below, under a backport)
                pass
        return out

    versions = default_versions()
    assert {k: v for k, v in versions.items() if k != "python"} == expected()
    shadow = tmp_path / "shadow"
    (shadow / "SimPy-9.9.dist-info").mkdir(parents=True)  # another spelling of the name, earlier on sys.path
    (shadow / "SimPy-9.9.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: SimPy\nVersion: 9.9\n\nbody")
    (shadow / "pandas.egg-info").mkdir()
    (shadow / "pandas.egg-info" / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: pandas\nVersion: 0.0.1\n")
    (shadow / "numpy-1.0.dist-info").mkdir()  # no METADATA: importlib.metadata decides
    monkeypatch.syspath_prepend(str(shadow))
    shadowed = default_versions()
    assert shadowed["simpy"] == "9.9" and shadowed["pandas"] == "0.0.1"
    assert {k: v for k, v in shadowed.items() if k != "python"} == expected()
