"""The checker finds exactly the window's nodes, dates the loss, and keeps every absence."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repro_kit.recording import RunRecorder, load_run
from repro_kit.findings import check
from repro_kit._timeline import final_counts, intervals, lifecycle

from runs import ROOT_ID, node_id, post_deploy_ids, record_scenario


@pytest.fixture
def lossy_run(tmp_path: Path):
    return load_run(record_scenario(tmp_path / "run", vanish=(2, 100.0, 101.0), atlas_late={1: 3.0}))


def test_verdict_lists_exactly_the_post_deploy_nodes(lossy_run) -> None:
    v = check(lossy_run)
    expected = post_deploy_ids()
    assert len(expected) == 15
    assert v.lost == expected
    assert v.orphaned == expected  # documents survive on the device
    assert v.valid is False
    assert v.acknowledged == [node_id(i) for i in range(20)]
    assert v.first_loss_at_s == pytest.approx(185.0)
    assert v.resync_batches == [6]
    assert v.summary().startswith("15 of 20 nodes orphaned")


def test_atlas_view_has_its_own_verdict(lossy_run) -> None:
    atlas = check(lossy_run).by_observer["atlas"]
    # Atlas got the documents after the halt but never had them in the root's children
    assert atlas.lost == post_deploy_ids()
    assert atlas.orphaned == post_deploy_ids()
    assert atlas.first_loss_at_s is None  # never shown, so never "left"


def test_vanish_and_return_is_not_lost_but_its_absence_shows(lossy_run) -> None:
    n = node_id(2)
    assert n not in check(lossy_run).lost
    iv = intervals(lossy_run)
    rows = iv[(iv["node_id"] == n) & (iv["observer"] == "device")]
    assert rows["state"].tolist() == ["present", "absent", "present"]
    assert rows[["start", "end"]].to_numpy().tolist() == [[3.0, 100.0], [100.0, 101.0], [101.0, 200.0]]
    life = lifecycle(lossy_run).set_index(["observer", "node_id"])
    assert life.loc[("device", n), "absences"] == 1
    assert bool(life.loc[("device", n), "final_present"])
    assert life.loc[("device", n), "last_change"] == 101.0


def test_staleness_is_the_delay_from_ack_to_first_present(lossy_run) -> None:
    v = check(lossy_run)
    assert v.stale == [node_id(1)]
    assert v.by_observer["atlas"].stale == [node_id(1)] and v.by_observer["device"].stale == []
    life = lifecycle(lossy_run).set_index(["observer", "node_id"])
    assert life.loc[("atlas", node_id(1)), "stale_s"] == pytest.approx(3.0)
    assert life.loc[("atlas", node_id(0)), "stale_s"] == pytest.approx(0.1)
    iv = intervals(lossy_run)
    late = iv[(iv["node_id"] == node_id(1)) & (iv["observer"] == "atlas")]
    assert late["state"].tolist() == ["absent", "present"]  # the wait shows as an absence
    assert check(lossy_run, stale_threshold_s=5.0).stale == []


def test_lost_node_intervals_end_at_run_end(lossy_run) -> None:
    iv = intervals(lossy_run)
    n = post_deploy_ids()[0]
    rows = iv[(iv["node_id"] == n) & (iv["observer"] == "device")]
    assert rows["state"].tolist() == ["present", "absent"]
    assert rows["end"].iloc[-1] == 200.0
    life = lifecycle(lossy_run).set_index(["observer", "node_id"])
    assert life.loc[("device", n), "lost_at"] == 185.0
    assert bool(life.loc[("device", n), "doc_exists_at_end"])
    assert set(iv.columns) == {"node_id", "observer", "state", "start", "end"}
    assert ROOT_ID not in set(iv["node_id"])  # the root is never one of its own children


def test_development_mode_run_is_valid(tmp_path: Path) -> None:
    v = check(load_run(record_scenario(tmp_path / "run", loss=False)))
    assert v.valid and v.lost == [] and v.orphaned == [] and v.first_loss_at_s is None
    assert v.resync_batches == []
    assert v.summary().startswith("No loss")


def test_lost_without_document_is_not_orphaned(tmp_path: Path) -> None:
    with RunRecorder(tmp_path) as rec:
        rec.ok(0, "add", "a", time=1.0)
        rec.ok(0, "add", "b", time=2.0)
        for n, t in (("a", 1.0), ("b", 2.0)):
            rec.event({"time": t, "observer": "device", "kind": "doc_insert", "node_id": n})
            rec.event({"time": t, "observer": "device", "kind": "enter", "node_id": n})
        rec.event({"time": 3.0, "observer": "device", "kind": "leave", "node_id": "a"})
        rec.event({"time": 3.0, "observer": "device", "kind": "doc_delete", "node_id": "a"})
        rec.event({"time": 4.0, "observer": "device", "kind": "leave", "node_id": "b"})
    v = check(load_run(tmp_path))
    assert v.lost == ["a", "b"] and v.orphaned == ["b"] and v.first_loss_at_s == 3.0
    assert "2 of 2 nodes lost" in v.summary()


def test_acknowledged_but_never_seen_is_lost(tmp_path: Path) -> None:
    with RunRecorder(tmp_path) as rec:
        rec.ok(0, "add", "ghost", time=1.0)
        rec.event({"time": 5.0, "observer": "device", "kind": "counts", "root_children": 0, "nodes_total": 1})
    run = load_run(tmp_path)
    v = check(run)
    assert v.lost == ["ghost"] and v.orphaned == [] and v.first_loss_at_s is None
    iv = intervals(run)
    assert iv[["state", "start", "end"]].values.tolist() == [["absent", 1.0, 5.0]]


def test_duplicate_enters_do_not_split_intervals(tmp_path: Path) -> None:
    with RunRecorder(tmp_path) as rec:
        rec.ok(0, "add", "a", time=1.0)
        for t in (1.0, 2.0, 3.0):
            rec.event({"time": t, "observer": "device", "kind": "enter", "node_id": "a"})
        rec.event({"time": 4.0, "observer": "device", "kind": "leave", "node_id": "a"})
        rec.event({"time": 4.5, "observer": "device", "kind": "leave", "node_id": "a"})
        rec.finish({"duration_s": 6.0})
    iv = intervals(load_run(tmp_path))
    assert iv[["state", "start", "end"]].values.tolist() == [["present", 1.0, 4.0], ["absent", 4.0, 6.0]]


def test_verdict_is_frozen_and_threshold_validated(lossy_run) -> None:
    v = check(lossy_run)
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.valid = True  # type: ignore[misc]
    with pytest.raises(ValueError, match="stale_threshold_s"):
        check(lossy_run, stale_threshold_s=-1)


def test_final_counts_per_view(lossy_run) -> None:
    counts = final_counts(lossy_run)
    assert counts["device"] == {"root_children": 5, "nodes_total": 21}
    assert counts["atlas"] == {"root_children": 5, "nodes_total": 21}


def test_empty_run_checks_clean(tmp_path: Path) -> None:
    RunRecorder(tmp_path).finish()
    run = load_run(tmp_path)
    v = check(run)
    assert v.valid and v.acknowledged == [] and v.lost == []
    assert intervals(run).empty and lifecycle(run).empty


def test_many_events_vectorised(tmp_path: Path) -> None:
    """A large synthetic run checks correctly (the per-node loop would be the slow path)."""
    rng = np.random.default_rng(3)
    n_nodes, n_events = 2000, 200_000
    nodes = np.array([f"n{i}" for i in range(n_nodes)], dtype=object)
    pick = rng.integers(0, n_nodes, n_events)
    times = np.sort(rng.uniform(1.0, 100.0, n_events))
    kinds = np.where(rng.random(n_events) < 0.5, "enter", "leave")
    events = pd.DataFrame({
        "time": times,
        "observer": pd.Categorical(["device"] * n_events, categories=["device", "atlas"]),
        "kind": pd.Categorical(kinds),
        "node_id": pd.array(nodes[pick], dtype="str"),
    })
    history = pd.DataFrame({
        "index": np.arange(n_nodes), "time": np.zeros(n_nodes), "process": 0,
        "type": pd.Categorical(["ok"] * n_nodes), "f": pd.Categorical(["add"] * n_nodes),
        "value": nodes, "node_id": pd.array(nodes, dtype="str"),
    })
    from repro_kit.recording import Run

    run = Run(path=tmp_path, meta={}, history=history, events=events)
    v = check(run)
    # reference answer: the last enter/leave per node decides (pandas, not the checker's code)
    last = events.groupby("node_id", observed=True)["kind"].last().astype(str)
    expected_lost = {n for n in nodes if last.get(n, "leave") == "leave"}
    assert set(v.lost) == expected_lost


def test_the_linear_time_stable_sort_is_numpys_stable_sort() -> None:
    import numpy as np

    from repro_kit._timeline import _stable_argsort

    rng = np.random.default_rng(1)
    for high in (1, 5, 1 << 16, (1 << 16) + 1, 1 << 20, 1 << 32, 1 << 40):
        for n in (0, 1, 7, 1000, 50_000):
            keys = rng.integers(0, high, n)
            assert (_stable_argsort(keys) == np.argsort(keys, kind="stable")).all(), (high, n)
    keys = np.array([3, -1, 3, 0])  # negative keys: numpy's own sort
    assert (_stable_argsort(keys) == np.argsort(keys, kind="stable")).all()
