"""`load_run` then the analysis (verdict, intervals, lifecycle) over a million recorded events.

A synthetic but realistic run is written with `RunRecorder(format="arrow")` (a bulk
recording: columnar, history.arrows and events.arrows): `nodes` acknowledged nodes, each
seen by both observers (doc_insert, enter, counts), flapping out of and back into the
root's children a few times (leave/enter), 30% of them lost at the end, plus re-import
batch events. It is loaded and analysed in a fresh process (as a user opening a run
does; pandas and pyarrow imported first: imports are not the load, the fresh-process
benchmark measures them), so the peak memory (ru_maxrss) is the analysis's own.
Figures: wall seconds of load + analysis, i.e. `load_run`, then `findings.analyse(run)`
and its `.verdict`, `.intervals`, `.lifecycle` (target < 0.6 s on 2 cores); the load
alone and the analysis alone (no targets); the same run exported as JSON lines
(`repro-kit export --jsonl`) and loaded through pyarrow's JSON reader and the pure-Python
reader, for comparison (all three give equal DataFrames, checked, and the same verdict);
and the process's peak memory (target < 1 GiB). The fresh process runs `repeats` times
and the fastest is reported (the build machines are shared: the others are in the details).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import row

SMOKE: dict[str, Any] = {"events": 2_000, "repeats": 1}
TARGET_S = 0.6
TARGET_MIB = 1024.0
OBSERVERS = ("device", "atlas")


def synthesise(path: Path, events: int = 1_000_000, seed: int = 0, format: str = "arrow") -> dict[str, Any]:
    """Write a run of about `events` events to `path` (a columnar recording by default, as bulk
    recordings are; `format="jsonl"` for JSON lines); returns its shape."""
    from repro_kit.recording import RunRecorder

    rng = random.Random(seed)
    per_node = 40  # average events per node below: 2 observers x (4 + 4 x 4 flaps)
    nodes = max(1, events // per_node)
    stream: list[tuple[float, int, dict[str, Any]]] = []
    ops: list[tuple[float, str, str]] = []
    seq = 0
    lost = 0
    for i in range(nodes):
        pk = f"{rng.getrandbits(128):032x}"
        born = i * 0.01
        ops += [(born, "invoke", pk), (born + 0.1, "ok", pk)]
        is_lost = rng.random() < 0.3
        lost += is_lost
        for obs in OBSERVERS:
            t = born + (0.05 if obs == "device" else 0.2)
            seen = [("doc_insert", t), ("enter", t)]
            for _ in range(rng.randint(0, 8)):
                t += rng.uniform(0.5, 30.0)
                seen.append(("leave", t))
                t += rng.uniform(0.1, 5.0)
                seen.append(("enter", t))
            if is_lost:
                seen.append(("leave", t + rng.uniform(1.0, 60.0)))
            for kind, at in seen:
                stream.append((at, seq, {"time": round(at, 6), "observer": obs, "kind": kind, "node_id": pk}))
                stream.append((at, seq + 1, {"time": round(at, 6), "observer": obs, "kind": "counts",
                                             "root_children": i, "nodes_total": i + 1}))
                seq += 2
    for b in range(max(1, nodes // 20)):
        at = nodes * 0.01 / 2 + b * 0.5
        stream.append((at, seq, {"time": at, "observer": "device", "kind": "batch", "batch": 20}))
        seq += 1
    stream.sort(key=lambda item: (item[0], item[1]))
    ops.sort()
    with RunRecorder(path, {"backend": "synthetic", "writes": nodes}, format=format) as rec:
        for at, kind, pk in ops:
            rec.op(0, kind, "add", pk, time=round(at, 6))
        for _, _, event in stream:
            rec.event(event)
    return {"nodes": nodes, "events": len(stream), "lost_nodes": lost}


_MEASURE = """
import json, resource, sys, time
import pandas, pyarrow, pyarrow.compute, pyarrow.ipc  # imports are not the load
import repro_kit.findings, repro_kit.recording, repro_kit._arrow_log
from repro_kit.recording import load_run
from repro_kit.findings import analyse
t0 = time.perf_counter()
run = load_run(sys.argv[1])
t1 = time.perf_counter()
analysis = analyse(run)
verdict = analysis.verdict
t2 = time.perf_counter()
iv = analysis.intervals
t3 = time.perf_counter()
life = analysis.lifecycle
t4 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "check_s": t2 - t1, "intervals_s": t3 - t2, "lifecycle_s": t4 - t3,
                  "lost": len(verdict.lost), "intervals": len(iv), "lifecycle_rows": len(life),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# The same run as JSON lines (argv[2]): loaded through pyarrow's JSON reader and the pure-Python
# reader, timed, and every frame compared with the columnar run's (argv[1]), and the verdicts.
_JSONL_LOAD = """
import json, sys, time
import pandas as pd, pyarrow, pyarrow.json, pyarrow.compute
from repro_kit import recording
from repro_kit.findings import analyse
columnar = recording.load_run(sys.argv[1])
t0 = time.perf_counter()
fast = recording.load_run(sys.argv[2])
fast.events
t1 = time.perf_counter()
recording._USE_ARROW = False
slow = recording.load_run(sys.argv[2])
slow.events
t2 = time.perf_counter()
for other in (fast, slow):
    for name in ("history", "events"):
        pd.testing.assert_frame_equal(getattr(columnar, name), getattr(other, name), check_exact=True, check_categorical=True)
    assert other.warnings == columnar.warnings
assert analyse(fast).verdict.lost == analyse(columnar).verdict.lost
print(json.dumps({"arrow_json_load_s": t1 - t0, "python_load_s": t2 - t1,
                  "arrow_json_used": recording._load_events_arrow(fast.path / recording.EVENTS_FILE) is not None}))
"""


def _measure(script: str, run_dir: Path, timeout_s: float, *more: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", script, str(run_dir), *map(str, more)], capture_output=True, text=True,
                          timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["analysis failed"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _as_json_lines(run_dir: Path, out: Path) -> float:
    """A copy of the run with its logs as JSON lines only (`repro-kit export --jsonl`); the export's seconds."""
    from repro_kit import _arrow_log
    from repro_kit.recording import EVENTS_ARROW, HISTORY_ARROW

    shutil.copytree(run_dir, out)
    started = time.perf_counter()
    _arrow_log.export_jsonl(out)
    took = time.perf_counter() - started
    for name in (HISTORY_ARROW, EVENTS_ARROW):
        (out / name).unlink()
    return took


def run(events: int = 1_000_000, repeats: int = 3, timeout_s: float = 600.0) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="repro-kit-bench-") as tmp:
        started = time.perf_counter()
        shape = synthesise(Path(tmp) / "run", events)
        synth_s = time.perf_counter() - started
        runs = [_measure(_MEASURE, Path(tmp) / "run", timeout_s) for _ in range(max(1, repeats))]
        export_s = _as_json_lines(Path(tmp) / "run", Path(tmp) / "text")
        loads = _measure(_JSONL_LOAD, Path(tmp) / "run", timeout_s, Path(tmp) / "text")

    def total(r: dict[str, Any]) -> float:
        return r["load_s"] + r["check_s"] + r["intervals_s"] + r["lifecycle_s"]

    m = min(runs, key=total)
    assert m["lost"] == shape["lost_nodes"], f"check found {m['lost']} lost nodes, {shape['lost_nodes']} were made lost"
    analysis_s = m["check_s"] + m["intervals_s"] + m["lifecycle_s"]
    total_s = total(m)
    details = {**m, **shape, "synthesise_s": synth_s, "analysis_s": analysis_s, "format": "arrow",
               "totals_s": sorted(total(r) for r in runs), "export_jsonl_s": export_s}
    n = f"{shape['events']:,}"
    return [
        row(f"analysis: load + analysis (verdict, intervals, lifecycle), {n} events, columnar run", total_s, "s",
            f"< {TARGET_S:g} s", total_s < TARGET_S, **details),
        row("analysis: load_run alone (columnar: Arrow batches)", m["load_s"], "s", "", None, events=shape["events"]),
        row("analysis: load_run + events frame, the same run as JSON lines (pyarrow's JSON reader)",
            loads["arrow_json_load_s"], "s", "", None, arrow_json_used=loads["arrow_json_used"], frames_equal=True),
        row("analysis: load_run + events frame, JSON lines through the pure-Python reader (the fallback)",
            loads["python_load_s"], "s", "", None, frames_equal=True),
        row("analysis: analysis alone (verdict + intervals + lifecycle)", analysis_s, "s", "", None),
        row("analysis: events per second (load + analysis)", shape["events"] / total_s, "events/s", "", None),
        row("analysis: peak memory (load + analysis)", m["peak_rss_mib"], "MiB", f"< {TARGET_MIB:,.0f} MiB",
            m["peak_rss_mib"] < TARGET_MIB),
    ]
