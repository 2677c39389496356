"""Sweeps: many write-plus-deploy scenarios on the emulator, one DataFrame row each.

An investigation asks "for which deploy times, write rates, resync delays, batch sizes
and encodings are nodes lost?". `sweep` answers with every scenario run in virtual time,
in memory (no run directory), across every core or on a Dask cluster, deterministically:
the same scenarios give the same frame, row for row, whatever executes them.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Executor, Future, ProcessPoolExecutor, wait
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from repro_kit import _checks
from repro_kit._checks import InputError
from repro_kit.driver import run_test
from repro_kit.findings import analyse
from repro_kit.recording import MemoryRecorder
from repro_kit.scenario import Scenario

__all__ = ["sweep", "run_scenario", "SCENARIO_DEFAULTS", "RESULT_COLUMNS"]

#: Keys a scenario may set, with the value used when it does not (`Scenario`'s defaults;
#: deploy_at_s "auto" resolves to 5.5 s for these writes, and follows writes/interval_s).
SCENARIO_DEFAULTS: dict[str, Any] = {
    k: v for k, v in Scenario().flat().items() if k not in ("realtime", "poll_s", "field", "bson_type")
}

#: Columns `sweep` adds after the scenario's inputs.
RESULT_COLUMNS = ("nodes_created", "lost_count", "orphaned", "root_children", "nodes_total", "first_loss_at_s",
                  "resync_batches", "valid", "verdict", "cause")

#: Above this many scenarios, a progress bar shows by default (when stderr is a terminal).
PROGRESS_THRESHOLD = 50

#: Scenarios go to workers in batches, one task each: about this many batches per worker
#: (small enough that the last ones finish together), and on an executor or a Dask cluster at
#: least _MIN_BATCH scenarios a task (a scenario takes tens of milliseconds; a Dask task costs
#: about a millisecond to schedule).
_BATCHES_PER_WORKER = 32
_MIN_BATCH = 8
_SCHEDULER_ADDRESS = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


# -- validation ----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """numpy scalars (from DataFrames and np.arange grids) as the Python values the kit validates."""
    return value.item() if isinstance(value, np.generic) else value


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _normalise(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A scenario with plain values, checked key by key; raises ValueError naming the key."""
    if not isinstance(raw, Mapping):
        raise InputError("scenarios", f"{where} must be a dict, got {type(raw).__name__}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in SCENARIO_DEFAULTS:
            raise InputError(key, f"not a scenario key ({where}; known: {', '.join(sorted(SCENARIO_DEFAULTS))})")
        value = _plain(value)
        if _is_missing(value):
            if key == "deploy_at_s":  # None: no deploy (NaN is how a DataFrame holds it)
                out[key] = None
            continue  # a DataFrame's hole: the default
        out[key] = value
    scenario = _scenario_of(out, where)
    out["deploy_at_s"] = scenario.deploy_at_s  # "auto" resolved: the row says when the deploy happened
    return out


def _scenario_of(values: Mapping[str, Any], where: str) -> Scenario:
    try:
        return Scenario.from_flat({"deploy_at_s": "auto", **values})
    except InputError as err:
        raise InputError(err.field, f"{err.problem} ({where})") from None


def _as_values(key: str, values: Any) -> list[Any]:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        return [values]  # a scalar: the same value in every scenario
    out = list(values)
    if not out:
        raise InputError(key, "needs at least one value, got an empty list")
    return out


def _expand(scenarios: Any, grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Scenarios (list of dicts or DataFrame) times the cartesian product of `grid` (which wins a shared key)."""
    if scenarios is None:
        base: list[Any] = [{}]
    elif isinstance(scenarios, pd.DataFrame):
        base = scenarios.to_dict("records")
    elif isinstance(scenarios, (Mapping, str, bytes)):
        raise InputError("scenarios", f"must be a list of dicts or a DataFrame, got {type(scenarios).__name__}")
    else:
        try:
            base = list(scenarios)
        except TypeError:
            raise InputError("scenarios",
                             f"must be a list of dicts or a DataFrame, got {type(scenarios).__name__}") from None
    for key in grid:
        if key not in SCENARIO_DEFAULTS:
            raise InputError(key, f"not a scenario key (known: {', '.join(sorted(SCENARIO_DEFAULTS))})")
    axes = [(key, _as_values(key, values)) for key, values in grid.items()]
    out: list[dict[str, Any]] = []
    for i, scenario in enumerate(base):
        if not isinstance(scenario, Mapping):
            raise InputError("scenarios", f"scenarios[{i}] must be a dict, got {type(scenario).__name__}")
        for combo in itertools.product(*(values for _, values in axes)):
            out.append({**scenario, **dict(zip((k for k, _ in axes), combo))})
    return out


# -- one scenario --------------------------------------------------------------------------


def run_scenario(scenario: Mapping[str, Any]) -> dict[str, Any]:
    """Run one (validated) scenario on the emulator in virtual time; returns its result columns,
    read from the run's own analysis (`findings.Analysis.figures`), as for any recorded run."""
    sc = _scenario_of(scenario, "scenario")
    run = run_test(sc.connect(), scenario=sc, recorder=MemoryRecorder, progress=False)
    return analyse(run).figures()


def _run_batch(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One task: a batch of scenarios, in order (module level, so any executor can pickle it)."""
    return [run_scenario(s) for s in batch]


def _batches(todo: list[dict[str, Any]], workers: int, floor: int) -> list[list[dict[str, Any]]]:
    size = max(1, math.ceil(len(todo) / (workers * _BATCHES_PER_WORKER)))
    size = max(size, min(floor, math.ceil(len(todo) / workers)))  # never leave a worker idle for the floor
    return [todo[i:i + size] for i in range(0, len(todo), size)]


def _executor_workers(executor: Executor) -> int:
    """How many tasks the executor runs at once, as far as it tells (else this machine's cores)."""
    client = getattr(executor, "_client", None)  # dask.distributed's ClientExecutor
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:
            pass
    workers = getattr(executor, "_max_workers", None)  # the standard library's pools
    return workers if isinstance(workers, int) and workers > 0 else (os.cpu_count() or 1)


def _run_on(executor: Executor, batches: list[list[dict[str, Any]]], bar: Any) -> list[dict[str, Any]]:
    """Every batch through `executor`; results in input order, the bar advanced as batches finish.

    On the first failure the batches not yet started are cancelled and the error raised. The
    executor itself is left as it is (its owner shuts it down)."""
    futures: list[Future] = []
    sizes: dict[Future, int] = {}
    pending: set[Future] = set()
    try:
        for batch in batches:
            future = executor.submit(_run_batch, batch)
            futures.append(future)
            sizes[future] = len(batch)
            pending.add(future)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # raises the batch's error
                if bar is not None:
                    bar.update(sizes[future])
    except BaseException:
        for future in pending:
            future.cancel()
        raise
    return [row for future in futures for row in future.result()]


def _dask_client(scheduler: str) -> Any:
    """A dask.distributed Client for the scheduler at `scheduler` (imported only here)."""
    try:
        from distributed import Client  # noqa: PLC0415 - optional: only a sweep on a Dask cluster needs it
    except ImportError:
        raise InputError("scheduler", "needs dask.distributed, which is not installed "
                         "(pip install 'dask[distributed]')") from None
    return Client(scheduler, set_as_default=False)


# -- the sweep -----------------------------------------------------------------------------


def sweep(scenarios: Any = None, *, processes: int | None = None, executor: Executor | None = None,
          scheduler: str | None = None, progress: bool | None = None, **grid: Any) -> pd.DataFrame:
    """Run every scenario on the emulator; one row per scenario, in input order.

    `scenarios`: a list of dicts or a DataFrame whose keys are among `SCENARIO_DEFAULTS`
    (mode, encoding, reimport, tree, writes, interval_s, deploy_at_s, settle_s, seed,
    pause_during_resync and the `EmulatorParams` fields); `**grid`: lists of values whose
    cartesian product is run (for each scenario, when both are given; a grid key
    overrides the same key in a scenario, so `scenarios` can hold a base). A missing key
    takes its default; `deploy_at_s=None` means no deploy.
    Where they run (at most one of the three):
    `processes`: worker processes on this machine (None: every core; 1: in this process);
    `executor`: any `concurrent.futures.Executor` of the caller's (a thread or process pool,
    `dask.distributed.Client(...).get_executor()`); sweep submits to it and leaves it open;
    `scheduler`: a Dask scheduler's address ("tcp://host:8786"): sweep connects a
    `dask.distributed.Client`, runs on its workers and closes the client (needs
    `dask[distributed]`; the workers need repro_kit installed).
    Scenarios travel in batches, one task per batch. The rows are the same whatever runs them.
    `progress`: a progress bar (None: when over 50 scenarios and stderr is a terminal).
    Returns the inputs (defaults filled in) plus `RESULT_COLUMNS`.
    Raises ValueError naming the first bad key or value, before running anything.
    """
    processes, executor, scheduler, progress = _check_where(processes, executor, scheduler, progress)
    todo = [_normalise(s, f"scenario {i}") for i, s in enumerate(_expand(scenarios, grid))]
    if progress is None:
        progress = len(todo) > PROGRESS_THRESHOLD and sys.stderr.isatty()
    bar = tqdm(total=len(todo), unit="scenario", desc="sweep") if progress else None
    try:
        results = _run_all(todo, processes, executor, scheduler if todo else None, bar)
    finally:
        if bar is not None:
            bar.close()
    return _frame(todo, results)


def _check_where(processes: Any, executor: Any, scheduler: Any, progress: Any) -> tuple[Any, Any, Any, Any]:
    """Where a sweep runs: at most one of processes, executor and scheduler, each well formed."""
    if processes is not None:
        processes = _checks.integer("processes", processes, 1)
    if executor is not None:
        _checks.instance("executor", executor, Executor, "a concurrent.futures.Executor")
    if scheduler is not None and (not isinstance(scheduler, str) or not _SCHEDULER_ADDRESS.match(scheduler)):
        raise InputError("scheduler", f"must be a Dask scheduler address such as 'tcp://host:8786', got {scheduler!r}")
    given = [name for name, value in (("processes", processes), ("executor", executor), ("scheduler", scheduler))
             if value is not None]
    if len(given) > 1:
        raise InputError(", ".join(given), "give at most one of processes, executor and scheduler")
    if progress is not None:
        _checks.flag("progress", progress)
    return processes, executor, scheduler, progress


def _run_all(todo: list[dict[str, Any]], processes: int | None, executor: Executor | None, scheduler: str | None,
             bar: Any) -> list[dict[str, Any]]:
    """Every scenario's result columns, in order: on a Dask cluster, the caller's executor, this
    process, or a pool of this machine's processes."""
    if scheduler is not None:
        client = _dask_client(scheduler)
        try:
            pool = client.get_executor()
            return _run_on(pool, _batches(todo, _executor_workers(pool), _MIN_BATCH), bar)
        finally:
            client.close()
    if executor is not None:
        return _run_on(executor, _batches(todo, _executor_workers(executor), _MIN_BATCH), bar)
    workers = min(processes or os.cpu_count() or 1, max(1, len(todo)))
    if workers == 1:
        results = []
        for s in todo:
            results.append(run_scenario(s))
            if bar is not None:
                bar.update(1)
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return _run_on(pool, _batches(todo, workers, 1), bar)


def _frame(todo: list[dict[str, Any]], results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row a scenario: its inputs (defaults filled in) then its results, typed."""
    columns: dict[str, None] = {}
    if todo:
        columns["deploy_at_s"] = None  # always: "auto" follows writes and interval_s
    for s in todo:
        columns.update(dict.fromkeys(s))
    rows = [{**{k: s.get(k, SCENARIO_DEFAULTS[k]) for k in columns}, **r} for s, r in zip(todo, results)]
    frame = pd.DataFrame(rows, columns=[*columns, *RESULT_COLUMNS])
    frame["first_loss_at_s"] = frame["first_loss_at_s"].astype("float64")
    if "deploy_at_s" in frame.columns:
        frame["deploy_at_s"] = frame["deploy_at_s"].astype("float64")
    for col in ("nodes_created", "lost_count", "orphaned", "root_children", "nodes_total", "resync_batches"):
        frame[col] = frame[col].astype("int64")
    frame["valid"] = frame["valid"].astype("boolean")  # <NA> when a scenario is inconclusive
    return frame
