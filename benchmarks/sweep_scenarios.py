"""A 1,000-scenario sweep through `repro_kit.sweep`: 1 process, 2 processes, a 2-worker Dask cluster.

Varies deploy time (5 points across the writes), write rate (5 intervals), resync delay
(5), batch size (4) and encoding (2): 5 x 5 x 5 x 4 x 2 = 1,000 scenarios of 20 writes
and a 300 s settle each. The same scenarios run three times: in this process (1 process),
on `processes` worker processes, and through a Dask `LocalCluster` of `processes`
single-threaded worker processes on loopback (`sweep(scheduler=...)`, as a real cluster
would be used). Every run must give the same frame, row for row.
Figures: wall seconds on `processes` processes (target < 60 s), the speed-up over 1
process (target >= 1.8x on 2 cores), the Dask wall seconds (its start-up reported apart),
and scenarios per second. The 1-process and `processes` runs alternate `repeats` times and
the fastest of each counts (the build machines are shared: every wall is in the details).
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

from benchmarks import row

SMOKE: dict[str, Any] = {"n": 8, "processes": 2, "settle_s": 10.0, "delays": (5.0,), "repeats": 1}
TARGET_S = 60.0
TARGET_SPEEDUP = 1.8

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


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def _on_dask(todo: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """The sweep through a fresh LocalCluster by its address; {} details with `skipped` without Dask."""
    try:
        from distributed import LocalCluster
    except ImportError:
        return {"skipped": "dask.distributed is not installed (pip install 'dask[distributed]')"}
    from repro_kit.sweeps import sweep

    cluster, start_s = _timed(LocalCluster, n_workers=workers, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
    try:
        frame, wall = _timed(sweep, todo, scheduler=cluster.scheduler_address, progress=False)
    finally:
        cluster.close(timeout=60)
    return {"frame": frame, "wall_s": wall, "cluster_start_s": start_s}


def run(n: int = 1000, processes: int = 2, settle_s: float = 300.0, delays: tuple[float, ...] = DELAYS_S,
        repeats: int = 2, dask: bool = True) -> list[dict[str, Any]]:
    import pandas as pd

    from repro_kit.sweeps import sweep

    todo = scenarios(n, settle_s=settle_s, delays=delays)
    walls_1: list[float] = []
    walls: list[float] = []
    for _ in range(max(1, repeats)):
        one, wall_1 = _timed(sweep, todo, processes=1, progress=False)
        frame, wall = _timed(sweep, todo, processes=processes, progress=False)
        pd.testing.assert_frame_equal(frame, one)  # the same rows whatever runs them
        walls_1.append(wall_1)
        walls.append(wall)
    wall_1, wall = min(walls_1), min(walls)
    speedup = wall_1 / wall
    lossy = frame[frame["encoding"] == "replace"]
    details = {"scenarios": len(frame), "processes": processes, "wall_s": wall, "wall_1_process_s": wall_1,
               "walls_s": walls, "walls_1_process_s": walls_1,
               "replace_lossy_share": float((lossy["lost_count"] > 0).mean()) if len(lossy) else None,
               "diff_lost_total": int(frame.loc[frame["encoding"] == "diff", "lost_count"].sum())}
    rows = [
        row(f"sweep: {len(frame):,} scenarios on {processes} processes, wall", wall, "s", f"< {TARGET_S:.0f} s",
            wall < TARGET_S, **details),
        row(f"sweep: speed-up, {processes} processes over 1", speedup, "x", f">= {TARGET_SPEEDUP}x",
            speedup >= TARGET_SPEEDUP, wall_1_process_s=wall_1, wall_s=wall),
        row(f"sweep: {len(frame):,} scenarios in 1 process, wall", wall_1, "s", "", None),
        row("sweep: throughput", len(frame) / wall, "scenarios/s", "", None, processes=processes),
    ]
    if dask:
        on_dask = _on_dask(todo, processes)
        if "frame" in on_dask:
            pd.testing.assert_frame_equal(on_dask.pop("frame"), frame)  # row for row, as the process pool's
            rows.append(row(f"sweep: {len(frame):,} scenarios on a {processes}-worker Dask LocalCluster, wall",
                            on_dask["wall_s"], "s", "", None, rows_identical=True, **on_dask))
        else:
            rows.append(row(f"sweep: on a {processes}-worker Dask LocalCluster", None, "s", "", None, **on_dask))
    return rows
