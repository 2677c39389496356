"""repro_kit.sweeps: scenario grids on the emulator, one row each, the same whatever the pool."""

from __future__ import annotations

import pandas as pd
import pytest

from repro_kit.sweeps import RESULT_COLUMNS, sweep

# Short scenarios (the loss needs only the deploy window and the resync after it).
FAST = {"writes": 6, "interval_s": 1.0, "deploy_at_s": 2.5, "settle_s": 20.0, "resync_delay_s": 10.0}


def test_grid_is_the_cartesian_product_in_order():
    df = sweep([FAST], encoding=["replace", "diff"], deploy_at_s=[1.5, 2.5], processes=1)
    assert list(zip(df["encoding"], df["deploy_at_s"])) == [
        ("replace", 1.5), ("replace", 2.5), ("diff", 1.5), ("diff", 2.5)]
    assert set(RESULT_COLUMNS) <= set(df.columns)
    assert (df["writes"] == 6).all()


def test_missing_keys_take_defaults_and_dataframe_input_works():
    scenarios = pd.DataFrame([{**FAST, "mode": "development"}, {**FAST, "encoding": "diff"}])
    df = sweep(scenarios, processes=1)
    assert list(df["mode"]) == ["development", "production"]
    assert list(df["encoding"]) == ["replace", "diff"]
    assert df["valid"].all()


def test_same_input_same_frame():
    grid = {"seed": [0, 1, 2], "encoding": ["replace", "diff"]}
    pd.testing.assert_frame_equal(sweep([FAST], processes=1, **grid), sweep([FAST], processes=1, **grid))


def test_one_process_and_two_give_the_same_frame():
    grid = {"seed": [0, 1, 2], "deploy_at_s": [0.5, 2.5, 4.5], "encoding": ["replace", "diff"]}
    pd.testing.assert_frame_equal(sweep([FAST], processes=1, **grid), sweep([FAST], processes=2, **grid))


@pytest.mark.parametrize("kwargs,key", [
    ({"scenarios": [{"colour": "red"}]}, "colour"),
    ({"bogus": [1]}, "bogus"),
    ({"mode": ["staging"]}, "mode"),
    ({"encoding": ["patch"]}, "encoding"),
    ({"resync_batch_size": [0]}, "resync_batch_size"),
    ({"writes": [0]}, "writes"),
    ({"scenarios": [{"writes": 3, "deploy_at_s": 400.0}]}, "deploy_at_s"),  # after the run ends at 302 s
    ({"seed": ["x"]}, "seed"),
    ({"pause_during_resync": [1]}, "pause_during_resync"),
    ({"processes": 0}, "processes"),
])
def test_bad_input_raises_valueerror_naming_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        sweep(**kwargs)


def test_bad_scenario_raises_before_any_work(monkeypatch):
    import repro_kit.sweeps as mod

    ran = []
    monkeypatch.setattr(mod, "run_scenario", lambda s: ran.append(s) or {})
    with pytest.raises(ValueError, match="interval_s"):
        sweep([FAST, {**FAST, "interval_s": -1}], processes=1)
    assert ran == []


def test_grid_overrides_a_base_scenario_and_multiplies_a_list():
    df = sweep([{**FAST, "encoding": "diff"}, {**FAST, "seed": 3}], encoding=["replace"], processes=1)
    assert list(df["encoding"]) == ["replace", "replace"]
    assert list(df["seed"]) == [0, 3]


def test_production_replace_loses_and_each_mitigation_does_not():
    df = sweep([
        {**FAST},
        {**FAST, "encoding": "diff"},
        {**FAST, "mode": "development"},
        {**FAST, "tree": "parent"},
        {**FAST, "pause_during_resync": True},
        {**FAST, "deploy_at_s": None},
    ], processes=1)
    lossy, *safe = df.to_dict("records")
    assert lossy["lost_count"] > 0 and not lossy["valid"]
    assert lossy["first_loss_at_s"] >= FAST["deploy_at_s"] + FAST["resync_delay_s"]
    assert lossy["resync_batches"] >= 1
    assert lossy["nodes_total"] == lossy["nodes_created"] + 1  # documents survive; the root's list does not
    assert lossy["root_children"] == lossy["nodes_created"] - lossy["lost_count"]
    for row in safe:
        assert row["lost_count"] == 0 and row["valid"], row
        assert pd.isna(row["first_loss_at_s"])
        assert row["root_children"] == row["nodes_created"] == FAST["writes"]


def test_a_row_agrees_with_check_on_the_recorded_run(tmp_path):
    from repro_kit.client import connect
    from repro_kit.findings import check
    from repro_kit.driver import run_test

    row = sweep([FAST], processes=1).iloc[0]
    session = connect(resync_delay_s=FAST["resync_delay_s"])
    verdict = check(run_test(session, FAST["writes"], FAST["interval_s"], FAST["deploy_at_s"], FAST["settle_s"],
                             out=tmp_path / "run", progress=False))
    assert row["lost_count"] == len(verdict.lost) > 0
    assert row["first_loss_at_s"] == pytest.approx(verdict.first_loss_at_s)
    assert row["resync_batches"] == len(verdict.resync_batches)
    assert bool(row["valid"]) == verdict.valid


# -- where a sweep runs: a caller's executor, a Dask cluster ------------------------------------

import concurrent.futures as cf

GRID = {"seed": [0, 1, 2], "deploy_at_s": [0.5, 2.5], "encoding": ["replace", "diff"]}  # 12 scenarios


@pytest.fixture(scope="module")
def in_process():
    return sweep([FAST], processes=1, **GRID)


def _within(seconds, fn, *args, **kwargs):
    """fn(...) on a helper thread: a hung cluster fails the test instead of hanging the suite."""
    helper = cf.ThreadPoolExecutor(1)
    try:
        return helper.submit(fn, *args, **kwargs).result(timeout=seconds)
    finally:
        helper.shutdown(wait=False)


def test_a_thread_pool_gives_the_same_frame_and_stays_open(in_process):
    with cf.ThreadPoolExecutor(2) as pool:
        pd.testing.assert_frame_equal(sweep([FAST], executor=pool, **GRID), in_process)
        assert pool.submit(lambda: 42).result() == 42  # not shut down by sweep


def test_a_callers_process_pool_gives_the_same_frame_and_stays_open(in_process):
    with cf.ProcessPoolExecutor(2) as pool:
        pd.testing.assert_frame_equal(_within(300, sweep, [FAST], executor=pool, **GRID), in_process)
        assert pool.submit(abs, -3).result(timeout=60) == 3


def test_batches_cover_every_scenario_once_in_order():
    from repro_kit.sweeps import _batches

    todo = [{"seed": i} for i in range(1000)]
    for workers, floor in ((1, 1), (2, 1), (2, 8), (64, 8), (1000, 8)):
        batches = _batches(todo, workers, floor)
        assert [s for b in batches for s in b] == todo
        assert len(batches) >= min(workers, len(todo))  # every worker has work
    assert len(_batches(todo, 2, 8)) == 63 and len(_batches(todo, 100, 8)) == 125  # no flood of tiny tasks
    assert _batches(todo[:3], 2, 8) == [todo[:2], todo[2:3]]


def test_the_progress_bar_counts_scenarios_on_an_executor(capsys):
    with cf.ThreadPoolExecutor(2) as pool:
        sweep([FAST], executor=pool, progress=True, seed=[0, 1, 2])
    assert "3/3" in capsys.readouterr().err


def test_a_failing_scenario_raises_and_leaves_the_executor_usable(monkeypatch):
    import repro_kit.sweeps as mod

    real = mod.run_scenario

    def flaky(s):
        if s["seed"] == 1:
            raise RuntimeError("boom in scenario seed=1")
        return real(s)

    monkeypatch.setattr(mod, "run_scenario", flaky)
    with cf.ThreadPoolExecutor(2) as pool:
        with pytest.raises(RuntimeError, match="seed=1"):
            sweep([FAST], executor=pool, seed=[0, 1, 2])
        assert pool.submit(lambda: "still open").result() == "still open"


@pytest.mark.parametrize("kwargs,message", [
    ({"executor": "threads"}, "executor: must be a concurrent.futures.Executor"),
    ({"scheduler": "localhost:8786"}, "scheduler: must be a Dask scheduler address"),
    ({"scheduler": 8786}, "scheduler: must be a Dask scheduler address"),
    ({"processes": 2, "scheduler": "tcp://127.0.0.1:1"}, "processes, scheduler: give at most one"),
    ({"executor": cf.ThreadPoolExecutor(1), "scheduler": "tcp://127.0.0.1:1"}, "executor, scheduler"),
])
def test_where_to_run_is_checked_before_any_work(monkeypatch, kwargs, message):
    import repro_kit.sweeps as mod

    ran = []
    monkeypatch.setattr(mod, "run_scenario", lambda s: ran.append(s) or {})
    with pytest.raises(ValueError, match=message) as err:
        sweep([FAST], **kwargs)
    assert "\n" not in str(err.value) and ran == []


def test_a_scheduler_without_dask_installed_is_one_line_before_any_work(monkeypatch):
    import sys

    import repro_kit.sweeps as mod

    ran = []
    monkeypatch.setattr(mod, "run_scenario", lambda s: ran.append(s) or {})
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed: import raises
    with pytest.raises(ValueError, match=r"scheduler: needs dask.distributed.*pip install") as err:
        sweep([FAST], scheduler="tcp://127.0.0.1:8786")
    assert "\n" not in str(err.value) and ran == []
    with pytest.raises(ValueError, match="interval_s"):  # scenarios are still checked first
        sweep([{**FAST, "interval_s": -1}], scheduler="tcp://127.0.0.1:8786")


@pytest.fixture(scope="module")
def dask_cluster():
    """Two single-threaded worker processes on loopback, no dashboard; always closed."""
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "30s", "distributed.scheduler.work-stealing": True}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None, silence_logs=40)
        try:
            yield cluster
        finally:
            cluster.close(timeout=30)


def test_a_dask_cluster_gives_the_same_frame_row_for_row(dask_cluster, in_process):
    """Through a caller's Client executor, then by scheduler address: the in-process frame."""
    from distributed import Client

    with Client(dask_cluster, timeout="30s", set_as_default=False) as client:
        assert len(client.nthreads()) == 2
        via_executor = _within(300, sweep, [FAST], executor=client.get_executor(), **GRID)
        assert client.submit(abs, -1).result(timeout=60) == 1  # the caller's client stays usable
    pd.testing.assert_frame_equal(via_executor, in_process)

    via_address = _within(300, sweep, [FAST], scheduler=dask_cluster.scheduler_address, **GRID)
    pd.testing.assert_frame_equal(via_address, in_process)
    assert dask_cluster.scheduler_address.startswith("tcp://127.0.0.1:")
