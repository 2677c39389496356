"""`check` and the timeline (`intervals`, `lifecycle`) over a million recorded events.

A synthetic but realistic run is written with `RunRecorder`: `nodes` acknowledged
nodes, each seen by both observers (doc_insert, enter, counts), flapping out of and
back into the root's children a few times (leave/enter), 30% of them lost at the end,
plus re-import batch events. It is analysed in a fresh process so the peak memory
(ru_maxrss) is the analysis's own.
Figures: wall seconds of check + intervals + lifecycle (target < 5 s), load_run's
seconds (no target), and the process's peak memory (target < 1 GiB).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import row

SMOKE: dict[str, Any] = {"events": 2_000}
TARGET_S = 5.0
TARGET_MIB = 1024.0
OBSERVERS = ("device", "atlas")


def synthesise(path: Path, events: int = 1_000_000, seed: int = 0) -> dict[str, Any]:
    """Write a run of about `events` events to `path`; returns its shape."""
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
    with RunRecorder(path, {"backend": "synthetic", "writes": nodes}) as rec:
        for at, kind, pk in ops:
            rec.op(0, kind, "add", pk, time=round(at, 6))
        for _, _, event in stream:
            rec.event(event)
    return {"nodes": nodes, "events": len(stream), "lost_nodes": lost}


_MEASURE = """
import json, resource, sys, time
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
                  "events": len(run.events), "lost": len(verdict.lost), "intervals": len(iv), "lifecycle_rows": len(life),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(events: int = 1_000_000, timeout_s: float = 600.0) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="repro-kit-bench-") as tmp:
        started = time.perf_counter()
        shape = synthesise(Path(tmp) / "run", events)
        synth_s = time.perf_counter() - started
        proc = subprocess.run([sys.executable, "-c", _MEASURE, str(Path(tmp) / "run")],
                              capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["analysis failed"])[-1])
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    assert m["lost"] == shape["lost_nodes"], f"check found {m['lost']} lost nodes, {shape['lost_nodes']} were made lost"
    analysis_s = m["check_s"] + m["intervals_s"] + m["lifecycle_s"]
    details = {**m, **shape, "synthesise_s": synth_s}
    n = f"{m['events']:,}"
    return [
        row(f"analysis: check + intervals + lifecycle, {n} events", analysis_s, "s", f"< {TARGET_S:.0f} s",
            analysis_s < TARGET_S, **details),
        row("analysis: load_run of the same run", m["load_s"], "s", "", None, events=m["events"]),
        row("analysis: events per second (load + analysis)", m["events"] / (analysis_s + m["load_s"]), "events/s", "", None),
        row("analysis: peak memory (load + analysis)", m["peak_rss_mib"], "MiB", f"< {TARGET_MIB:,.0f} MiB",
            m["peak_rss_mib"] < TARGET_MIB),
    ]
