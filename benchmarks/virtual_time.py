"""The report's scenario (20 writes, a deploy at 5.5 s, 300 s settle) in virtual time.

Figure: simulated seconds per wall second (target >= 1000x), best of `repeats`, for
the lossy configuration (production, replace) that does the most work.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import row

SMOKE: dict[str, Any] = {"repeats": 1, "settle_s": 10.0}
TARGET = 1000.0


def run(repeats: int = 5, writes: int = 20, interval_s: float = 1.0, deploy_at_s: float = 5.5,
        settle_s: float = 300.0) -> list[dict[str, Any]]:
    from repro_kit.client import connect
    from repro_kit.findings import analyse
    from repro_kit.recording import MemoryRecorder
    from repro_kit.driver import run_test

    simulated = (writes - 1) * interval_s + settle_s
    walls = []
    result: dict[str, Any] = {}
    for seed in range(repeats):
        started = time.perf_counter()
        session = connect(seed=seed)
        record = run_test(session, writes, interval_s, deploy_at_s, settle_s, recorder=MemoryRecorder, progress=False)
        walls.append(time.perf_counter() - started)
        result = analyse(record).figures()
    best = min(walls)
    speed = simulated / best
    return [row("virtual time: report scenario", speed, "x real time", f">= {TARGET:,.0f}x", speed >= TARGET,
                simulated_s=simulated, wall_s_best=best, wall_s_all=walls, lost_count=result["lost_count"],
                events=len(record.events))]
