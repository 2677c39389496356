"""A 1,000-scenario sweep through `repro_kit.sweep`: 1 process, 2 processes, a 2-worker Dask cluster.

Varies deploy time (5 points across the writes), write rate (5 intervals), resync delay
(5), batch size (4) and encoding (2): 5 x 5 x 5 x 4 x 2 = 1,000 scenarios of 20 writes
and a 300 s settle each. The same scenarios run four times: in this process (1 process),
on `processes` worker processes, through a Dask `LocalCluster` of `processes`
single-threaded worker processes on loopback, and through a Dask cluster whose scheduler
and `processes` single-threaded workers are separate processes started with the `dask
scheduler` / `dask worker` command lines on loopback, as a real cluster is
(`sweep(scheduler=...)` both times). Every run must give the same frame, row for row.
Figures: wall seconds on `processes` processes (target < 60 s), the speed-up over 1
process (target >= 1.8x on 2 cores), the LocalCluster's wall seconds, the command-line
cluster's speed-up over 1 process (target >= 1.7x; its start-up, and a warm-up sweep of one
scenario per worker that imports the kit there as a cluster in use has it, reported apart), and
scenarios per second. The 1-process and `processes` runs alternate `repeats` times, the
command-line cluster's sweep runs `repeats` times on one cluster, and the fastest of each
counts (the build machines are shared: every wall is in the details).
The cluster's processes are stopped (their process groups, TERM then KILL) whatever happens;
should this process die first, the workers leave after 60 s without a scheduler and the
scheduler after 10 minutes idle.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from benchmarks import row

SMOKE: dict[str, Any] = {"n": 8, "processes": 2, "settle_s": 10.0, "delays": (5.0,), "repeats": 1}
TARGET_S = 60.0
TARGET_SPEEDUP = 1.8
TARGET_DASK_SPEEDUP = 1.7

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


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop the processes we started, each with its process group (it leads one): TERM, then
    KILL after 10 s. A group is signalled only while its leader is unreaped, so its id cannot
    have been reused by anything else."""
    for proc in reversed(procs):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    for proc in reversed(procs):
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def cli_cluster(workers: int, timeout_s: float = 120.0) -> Iterator[str]:
    """A Dask cluster on loopback started with the `dask scheduler` and `dask worker` command
    lines (this interpreter's, `python -m dask`), one single-threaded worker per process (no
    nanny: the process we start is the worker, so stopping it leaves nothing behind); yields
    the scheduler's address once every worker has joined, stops them all on exit."""
    from distributed import Client

    folder = Path(tempfile.mkdtemp(prefix="repro-kit-dask-"))
    procs: list[subprocess.Popen] = []

    def start(args: list[str], log: str) -> subprocess.Popen:
        with open(folder / log, "wb") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=folder, start_new_session=True)
        procs.append(proc)
        return proc

    def failed(what: str) -> RuntimeError:
        last = []
        for log in sorted(folder.glob("*.log")):
            lines = log.read_text(errors="replace").strip().splitlines()
            last.append(f"{log.name}: {lines[-1] if lines else 'empty'}")
        return RuntimeError(f"{what} ({'; '.join(last)})")

    try:
        address_file = folder / "scheduler.json"
        scheduler = start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                           "--scheduler-file", str(address_file), "--idle-timeout", "600"], "scheduler.log")
        deadline = time.monotonic() + timeout_s
        address = None
        while address is None:
            if scheduler.poll() is not None:
                raise failed(f"dask scheduler exited with {scheduler.returncode}")
            if time.monotonic() > deadline:
                raise failed(f"dask scheduler did not start within {timeout_s:g} s")
            with contextlib.suppress(OSError, ValueError, KeyError):
                address = json.loads(address_file.read_text())["address"]
            time.sleep(0.05)
        for i in range(workers):
            start(["worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                   "--name", f"repro-kit-{i}", "--local-directory", str(folder), "--death-timeout", "60"],
                  f"worker-{i}.log")
        with Client(address, timeout=timeout_s, set_as_default=False) as client:
            try:
                client.wait_for_workers(workers, timeout=max(1.0, deadline - time.monotonic()))
            except TimeoutError:
                raise failed(f"{workers} dask workers did not join within {timeout_s:g} s") from None
        yield address
    finally:
        _stop(procs)
        shutil.rmtree(folder, ignore_errors=True)


def _on_cli_cluster(todo: list[dict[str, Any]], workers: int, repeats: int = 1) -> dict[str, Any]:
    """The sweep through a command-line Dask cluster, `repeats` times on the same cluster (the
    fastest counts, as for the 1-process and process-pool figures; every frame is returned and
    every wall is in the details); {} details with `skipped` without Dask."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return {"skipped": "dask.distributed is not installed (pip install 'dask[distributed]')"}
    from repro_kit.sweeps import sweep

    started = time.perf_counter()
    frames, walls = [], []
    with cli_cluster(workers) as address:
        start_s = time.perf_counter() - started
        # warm-up: each worker imports the kit on its first scenario, as a cluster in use has
        _, warm_s = _timed(sweep, scenarios(workers, settle_s=10.0, delays=(5.0,)), scheduler=address, progress=False)
        for _ in range(max(1, repeats)):
            frame, wall = _timed(sweep, todo, scheduler=address, progress=False)
            frames.append(frame)
            walls.append(wall)
    return {"frames": frames, "wall_s": min(walls), "walls_s": walls, "cluster_start_s": start_s, "warm_up_s": warm_s}


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
        on_cli = _on_cli_cluster(todo, processes, repeats)
        figure = (f"sweep: speed-up over 1 process, {len(frame):,} scenarios on a {processes}-worker Dask cluster "
                  f"(dask scheduler / dask worker processes on loopback)")
        if "frames" in on_cli:
            for cluster_frame in on_cli.pop("frames"):
                pd.testing.assert_frame_equal(cluster_frame, one)  # row for row, as in this process
            dask_speedup = wall_1 / on_cli["wall_s"]
            rows.append(row(figure, dask_speedup, "x", f">= {TARGET_DASK_SPEEDUP}x", dask_speedup >= TARGET_DASK_SPEEDUP,
                            rows_identical=True, wall_1_process_s=wall_1, **on_cli))
        else:
            rows.append(row(figure, None, "x", f">= {TARGET_DASK_SPEEDUP}x", None, **on_cli))
    return rows
