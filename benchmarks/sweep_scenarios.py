"""A 1,000-scenario sweep through `repro_kit.sweep`, on every core.

Varies deploy time (5 points across the writes), write rate (5 intervals), resync delay
(5), batch size (4) and encoding (2): 5 x 5 x 5 x 4 x 2 = 1,000 scenarios of 20 writes
and a 300 s settle each. Figure: wall seconds (target < 60 s) and scenarios per second.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from benchmarks import row

SMOKE: dict[str, Any] = {"n": 8, "processes": 2, "settle_s": 10.0, "delays": (5.0,)}
TARGET_S = 60.0

DEPLOY_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
INTERVALS_S = (0.25, 0.5, 1.0, 2.0, 4.0)
DELAYS_S = (30.0, 60.0, 120.0, 180.0, 240.0)
BATCH_SIZES = (1, 5, 20, 50)
ENCODINGS = ("replace", "diff")


def scenarios(n: int = 1000, writes: int = 20, settle_s: float = 300.0,
              delays: tuple[float, ...] = DELAYS_S) -> list[dict[str, Any]]:
    """The first `n` scenarios of the grid (it repeats with new seeds past its size)."""
    grid = list(itertools.product(ENCODINGS, BATCH_SIZES, delays, INTERVALS_S, DEPLOY_FRACTIONS))
    out = []
    for i in range(n):
        encoding, batch, delay, interval, fraction = grid[i % len(grid)]
        out.append({
            "encoding": encoding, "resync_batch_size": batch, "resync_delay_s": delay, "interval_s": interval,
            "deploy_at_s": round(fraction * (writes - 1) * interval, 3), "writes": writes, "settle_s": settle_s,
            "seed": i // len(grid),
        })
    return out


def run(n: int = 1000, processes: int | None = None, settle_s: float = 300.0,
        delays: tuple[float, ...] = DELAYS_S) -> list[dict[str, Any]]:
    from repro_kit.sweeps import sweep

    todo = scenarios(n, settle_s=settle_s, delays=delays)
    started = time.perf_counter()
    frame = sweep(todo, processes=processes, progress=False)
    wall = time.perf_counter() - started
    workers = processes or os.cpu_count()
    lossy = frame[frame["encoding"] == "replace"]
    details = {"scenarios": len(frame), "processes": workers, "wall_s": wall,
               "replace_lossy_share": float((lossy["lost_count"] > 0).mean()) if len(lossy) else None,
               "diff_lost_total": int(frame.loc[frame["encoding"] == "diff", "lost_count"].sum())}
    return [
        row(f"sweep: {len(frame):,} scenarios, wall", wall, "s", f"< {TARGET_S:.0f} s", wall < TARGET_S, **details),
        row("sweep: throughput", len(frame) / wall, "scenarios/s", "", None, processes=workers),
    ]
