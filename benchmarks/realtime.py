"""Real-time mode: how late the write schedule runs against the wall clock.

A short report-like scenario (20 writes at 0.1 s, a deploy, a 0.5 s resync delay, 2 s
settle) on `connect(realtime=True)`; `run_test` records each scheduled step's lateness.
Figure: p99 lateness in ms (target < 20 ms), with p50 and max beside it.
"""

from __future__ import annotations

from typing import Any

from benchmarks import row

SMOKE: dict[str, Any] = {"writes": 4, "interval_s": 0.05, "settle_s": 0.2, "resync_delay_s": 0.1, "deploy_at_s": 0.05}
TARGET_MS = 20.0


def run(writes: int = 20, interval_s: float = 0.1, deploy_at_s: float = 0.55, settle_s: float = 2.0,
        resync_delay_s: float = 0.5) -> list[dict[str, Any]]:
    from repro_kit.client import connect
    from repro_kit.findings import analyse
    from repro_kit.recording import MemoryRecorder
    from repro_kit.driver import run_test

    session = connect(realtime=True, resync_delay_s=resync_delay_s, resync_batch_interval_s=0.05)
    record = run_test(session, writes, interval_s, deploy_at_s, settle_s, poll_s=0.5, recorder=MemoryRecorder,
                      progress=False)
    lateness = record.meta["lateness_ms"]
    result = analyse(record).figures()
    return [row("real time: write schedule lateness p99", lateness["p99"], "ms", f"< {TARGET_MS:.0f} ms",
                lateness["p99"] < TARGET_MS, **lateness, lost_count=result["lost_count"], steps=writes)]
