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
    from repro_kit.writer import run_test

    row = sweep([FAST], processes=1).iloc[0]
    session = connect(resync_delay_s=FAST["resync_delay_s"])
    verdict = check(run_test(session, FAST["writes"], FAST["interval_s"], FAST["deploy_at_s"], FAST["settle_s"],
                             out=tmp_path / "run", progress=False))
    assert row["lost_count"] == len(verdict.lost) > 0
    assert row["first_loss_at_s"] == pytest.approx(verdict.first_loss_at_s)
    assert row["resync_batches"] == len(verdict.resync_batches)
    assert bool(row["valid"]) == verdict.valid
