"""Sweep-reading helpers: grids, heatmaps, and a conclusion that follows the numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from repro_kit import sweep_analysis as analysis


def frame(rows):
    """A sweep-shaped frame: given inputs plus result columns consistent with them."""
    out = []
    for r in rows:
        created = r.get("writes", 20)
        lost = r["lost_count"]
        out.append({**r, "nodes_created": created, "orphaned": lost, "root_children": created - lost,
                    "nodes_total": created + 1,
                    "first_loss_at_s": 185.0 if lost else None, "resync_batches": 1, "valid": lost == 0})
    return pd.DataFrame(out)


def test_rate_grid_keeps_every_deploy_inside_the_run():
    grid = analysis.rate_grid([0.5, 12.0], [0.5, 2.0], duration_s=10.0)
    assert {"interval_s": 0.5, "writes": 20, "deploy_at_s": 12.0} not in grid  # last write at 9.5 s
    assert {"interval_s": 2.0, "writes": 5, "deploy_at_s": 0.5} in grid
    assert all(g["deploy_at_s"] <= (g["writes"] - 1) * g["interval_s"] for g in grid)
    with pytest.raises(ValueError, match="duration_s"):
        analysis.rate_grid([1.0], [1.0], duration_s=0)


def test_conclusion_names_the_conditions_every_loss_needed_and_the_safe_settings():
    df = frame([
        {"mode": "production", "encoding": "replace", "lost_count": 14},
        {"mode": "production", "encoding": "diff", "lost_count": 0},
        {"mode": "development", "encoding": "replace", "lost_count": 0},
        {"mode": "development", "encoding": "diff", "lost_count": 0},
    ])
    text = analysis.conclusion(df)
    assert "1 of 4 scenarios lost nodes" in text
    assert "Every loss happened with mode=production, encoding=replace." in text
    assert "Nothing was lost with mode=development (2 scenarios); nor with encoding=diff (2 scenarios)." in text
    assert "orphaned, not deleted" in text


def test_conclusion_when_nothing_is_lost():
    df = frame([{"encoding": "diff", "lost_count": 0}, {"encoding": "replace", "lost_count": 0}])
    assert analysis.conclusion(df) == "- No scenario lost a node (2 scenarios)."


def test_numeric_trends_and_non_effects_follow_the_numbers():
    rising = frame([{"resync_delay_s": d, "resync_batch_size": b, "lost_count": n}
                    for d, n in ((5.0, 5), (30.0, 14)) for b in (1, 20)])
    assert analysis.effect(rising, "resync_delay_s") == (
        "The larger the resync delay (resync_delay_s), the more nodes are lost: "
        "on average 5 at resync_delay_s=5 against 14 at resync_delay_s=30.")
    assert "does not change how many nodes are lost" in analysis.effect(rising, "resync_batch_size")
    falling = frame([{"deploy_at_s": d, "lost_count": n} for d, n in ((0.5, 19), (5.5, 14), (10.5, 9))])
    assert analysis.effect(falling, "deploy_at_s").startswith("The smaller the deploy time (deploy_at_s)")


def test_writes_derived_from_the_interval_is_not_reported_twice():
    df = frame([{**g, "lost_count": n} for g, n in zip(analysis.rate_grid([0.5], [0.5, 1.0, 2.0]), (39, 19, 9))])
    text = analysis.conclusion(df)
    assert "interval_s" in text and "(writes)" not in text


def test_window_writes_counts_writes_between_deploy_and_reimport():
    assert analysis.window_writes({"writes": 20, "interval_s": 1.0, "deploy_at_s": 5.5, "resync_delay_s": 180.0}) == 14
    assert analysis.window_writes({"writes": 20, "interval_s": 1.0, "deploy_at_s": 5.5, "resync_delay_s": 3.0}) == 3
    assert analysis.window_writes({"deploy_at_s": None}) == 0


def test_the_emulators_losses_are_the_deploy_window(tmp_path):
    from repro_kit.sweeps import sweep

    df = sweep(deploy_at_s=[2.5, 8.5], resync_delay_s=[4.0, 30.0], settle_s=40.0, processes=1)
    assert "equals the number of writes made between the deploy and the re-import" in analysis.conclusion(df)


def test_heatmap_annotates_every_cell_and_combines_columns():
    df = frame([{"mode": m, "encoding": e, "tree": "children", "lost_count": n}
                for (m, e), n in zip([("production", "replace"), ("production", "diff"),
                                      ("development", "replace"), ("development", "diff")], (14, 0, 0, 0))])
    fig = analysis.heatmap(df, "encoding", "mode")
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["0", "0", "0", "14"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["development", "production"]
    fig2 = analysis.heatmap(df, ["mode", "encoding"], "tree", title="per scenario")
    assert fig2.axes[0].get_title() == "per scenario"
    assert "mode=production\nencoding=replace" in [t.get_text() for t in fig2.axes[0].get_xticklabels()]
    with pytest.raises(ValueError, match="keys"):
        analysis.heatmap(df, "nope", "mode")


def test_heatmap_x_labels_never_run_into_each_other():
    """Notebook 04's mode x encoding heatmap: measured, neighbouring labels keep apart (they
    once read "mode=developmentmode=development"), on a figure the heatmap makes and on an
    Axes the caller gives (there they turn instead)."""
    from matplotlib.figure import Figure

    from repro_kit.sweep_analysis import _LABEL_GAP_PX, _renderer

    rows = [{"mode": m, "encoding": e, "tree": t, "pause_during_resync": pz, "lost_count": 0}
            for m in ("production", "development") for e in ("replace", "diff")
            for t in ("children", "parent") for pz in (False, True)]
    own = analysis.heatmap(frame(rows), ["mode", "encoding"], ["tree", "pause_during_resync"])
    small = Figure(figsize=(9, 3))
    given = analysis.heatmap(frame(rows), ["mode", "encoding"], ["tree", "pause_during_resync"], ax=small.subplots())
    for fig in (own, given):
        ax = fig.axes[0]
        renderer = _renderer(fig)
        boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels()), key=lambda b: b.x0)
        assert len(boxes) == 4
        for left, right in zip(boxes, boxes[1:]):
            assert left.x1 + _LABEL_GAP_PX <= right.x0, (left, right)
        assert all(fig.bbox.x0 <= b.x0 and b.x1 <= fig.bbox.x1 for b in boxes)
    assert own.axes[0].get_xticklabels()[0].get_rotation() == 0  # widened, not turned
    assert given.axes[0].get_xticklabels()[0].get_rotation() == 90  # the caller's size is kept


def test_sensitivity_summary_says_what_is_missing_in_words():
    table = pd.DataFrame([
        {"assumption": "list encoding", "value": "diff", "is_default": False, "lost_count": 0,
         "writes_after_deploy": 14, "first_loss_after_deploy_s": float("nan"), "resync_batches": 1,
         "post_deploy_notes_lost": False, "loss_minutes_later": False, "batches": True, "reproduced": False},
        {"assumption": "re-import scope", "value": "new-values", "is_default": False, "lost_count": 0,
         "writes_after_deploy": 14, "first_loss_after_deploy_s": float("nan"), "resync_batches": 0,
         "post_deploy_notes_lost": False, "loss_minutes_later": False, "batches": False, "reproduced": False},
        {"assumption": "resync delay (s)", "value": "30", "is_default": False, "lost_count": 14,
         "writes_after_deploy": 14, "first_loss_after_deploy_s": 30.05, "resync_batches": 1,
         "post_deploy_notes_lost": True, "loss_minutes_later": False, "batches": True, "reproduced": False},
        {"assumption": "x", "value": "y", "is_default": False, "lost_count": 3,
         "writes_after_deploy": 14, "first_loss_after_deploy_s": 181.0, "resync_batches": 1,
         "post_deploy_notes_lost": False, "loss_minutes_later": True, "batches": True, "reproduced": False},
    ])
    text = analysis.sensitivity_summary(table)
    assert "With list encoding = diff it does not: none of the 14 notes written after the deploy was lost." in text
    assert ("With re-import scope = new-values it does not: none of the 14 notes written after the deploy was "
            "lost; no re-import batch reached the device.") in text
    assert "With resync delay (s) = 30 it does not: the loss showed 30 s after the deploy, under a minute." in text
    assert "With x = y it does not: only 3 of the 14 notes written after the deploy were lost." in text
    assert "no every" not in text and "no loss a minute" not in text


def test_combine_labels_studies_and_fills_defaults():
    a = frame([{"encoding": "diff", "lost_count": 0}])
    b = frame([{"resync_delay_s": 5.0, "lost_count": 5}])
    both = analysis.combine(enc=a, resync=b)
    assert list(both["study"]) == ["enc", "resync"]
    assert list(both["resync_delay_s"]) == [180.0, 5.0] and list(both["encoding"]) == ["diff", "replace"]
    with pytest.raises(ValueError, match="lost_count"):
        analysis.combine(bad=pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="df"):
        analysis.conclusion(pd.DataFrame({"x": [1]}))


def test_sensitivity_judges_the_reports_outcome_for_each_assumption():
    table = analysis.sensitivity(processes=1)
    by = {(a, v): row for a, v, row in zip(table["assumption"], table["value"], table.to_dict("records"))}
    default = by[("list encoding", "replace")]
    assert default["reproduced"] and default["lost_count"] == 14 and default["writes_after_deploy"] == 14
    assert default["first_loss_after_deploy_s"] > 60 and default["resync_batches"] == 1
    assert not by[("list encoding", "diff")]["post_deploy_notes_lost"]
    assert by[("list encoding", "diff")]["batches"]
    scope = by[("re-import scope", "new-values")]
    assert (scope["lost_count"], scope["resync_batches"], scope["reproduced"]) == (0, 0, False)
    empty = by[("root at the deploy", "empty (deploy 0 s)")]
    assert empty["lost_count"] == 0 and empty["batches"] and not empty["reproduced"]
    assert not by[("resync delay (s)", "30")]["loss_minutes_later"]
    assert by[("resync delay (s)", "600")]["reproduced"]  # settled long enough for the late re-import
    assert all(by[("device clock skew", v)]["reproduced"] for v in ("-5 min", "+5 min"))
    text = analysis.sensitivity_summary(table)
    assert "appears in 13 of 18 variants" in text
    assert "It does not depend on: re-import batch size, device clock skew." in text
    fig = analysis.sensitivity_figure(table)
    assert len(fig.axes[0].texts) == 4 * len(table)


def test_sensitivity_figure_rejects_other_frames():
    with pytest.raises(ValueError, match="sensitivity"):
        analysis.sensitivity_figure(pd.DataFrame({"x": [1]}))


def test_conclusion_keeps_every_lost_node_orphaned_with_prefilled_notes():
    """Known bug, fixed: the sweep guessed orphaning from counts, which prefill breaks."""
    from repro_kit.sweeps import sweep

    df = sweep(prefill=[0, 5], encoding=["replace", "diff"], processes=1)
    lossy = df[df["lost_count"] > 0]
    assert len(lossy) == 2 and (lossy["orphaned"] == lossy["lost_count"]).all()
    assert "Every lost node was orphaned, not deleted" in analysis.conclusion(df)
