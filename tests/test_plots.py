"""Figures show one lane per node, the verdict in the title, and export reproducibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from repro_kit import plots
from repro_kit.findings import analyse
from repro_kit.recording import RunRecorder, load_run

from runs import record_scenario


@pytest.fixture
def run(tmp_path: Path):
    return load_run(record_scenario(tmp_path / "run", vanish=(2, 100.0, 101.0)))


def test_timeline_figure_has_one_row_per_node_and_the_verdict(run) -> None:
    fig = plots.timeline_figure(run)
    assert isinstance(fig, Figure)
    device, atlas, counts = fig.axes
    for lane in (device, atlas):
        assert len(lane.get_yticks()) == 20
        assert len(lane.get_yticklabels()) == 20
    assert "15 of 20 nodes orphaned" in fig._suptitle.get_text()
    assert counts.get_xlabel() == "seconds since run start"
    assert device.get_shared_x_axes().joined(device, counts)
    assert device.get_legend() is not None and counts.get_legend() is not None


def test_swimlane_colours_lost_lanes_absent_at_the_end(run) -> None:
    (ax,) = plots.swimlane(run, observer="device")
    bars = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bars) == 1
    # device: 20 not-yet-known slivers + 20 first intervals + 15 losses + vanish-and-return (2 more)
    assert len(bars[0].get_paths()) == 20 + 20 + 15 + 2
    red = [l.get_text() for l in ax.get_yticklabels() if l.get_color() == plots.STATE_COLORS["absent"]]
    assert len(red) == 15


def test_swimlane_validates_arguments(run) -> None:
    with pytest.raises(ValueError, match="observer"):
        plots.swimlane(run, observer="phone")
    ax = Figure().subplots()
    with pytest.raises(ValueError, match="ax: must hold 2"):
        plots.swimlane(run, ax=ax)


def test_counts_plots_both_views(run) -> None:
    ax = plots.counts(run)
    labels = [line.get_label() for line in ax.get_lines()]
    for lbl in ("device: root's children", "device: total nodes", "atlas: root's children", "atlas: total nodes"):
        assert lbl in labels
    root = next(line for line in ax.get_lines() if line.get_label() == "device: root's children")
    assert root.get_ydata()[-1] == 5  # 20 appended, 15 orphaned


def deploy_window(run):
    return analyse(run).deploy_window


def test_deploy_window_spans_deploy_to_resume(run, tmp_path: Path) -> None:
    assert deploy_window(run) == (5.5, 185.5)
    with RunRecorder(tmp_path / "no-resume") as rec:
        rec.invoke("nemesis", "deploy", {"field": "x"}, time=2.0)
        rec.event({"time": 50.0, "observer": "device", "kind": "batch", "batch": 20})
        rec.event({"time": 51.0, "observer": "device", "kind": "batch", "batch": 3})
    assert deploy_window(load_run(tmp_path / "no-resume")) == (2.0, 51.0)
    assert deploy_window(load_run(record_scenario(tmp_path / "none", deploy_at_s=None))) is None


def test_export_writes_reproducible_files(run, tmp_path: Path) -> None:
    first = plots.export(plots.timeline_figure(run), tmp_path / "a" / "timeline")
    second = plots.export(plots.timeline_figure(run), tmp_path / "b" / "timeline.png", formats=("png", "svg"))
    assert [p.name for p in first] == ["timeline.png", "timeline.svg", "timeline.pdf"]
    assert [p.name for p in second] == ["timeline.png", "timeline.svg"]
    for a, b in zip(first, second):
        assert a.stat().st_size > 1000
        if a.suffix in (".png", ".svg"):
            assert a.read_bytes() == b.read_bytes(), a.name
    assert first[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in first[1].read_bytes()[:1000]
    assert first[2].read_bytes()[:5] == b"%PDF-"


def test_export_rejects_unknown_formats(run, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="formats"):
        plots.export(Figure(), tmp_path / "x", formats=("png", "gif"))


def test_plots_of_an_empty_run(tmp_path: Path) -> None:
    RunRecorder(tmp_path).finish()
    fig = plots.timeline_figure(load_run(tmp_path))
    assert "No loss" in fig._suptitle.get_text()


def test_partial_run_says_so_in_the_title(tmp_path: Path) -> None:
    fig = plots.timeline_figure(load_run(record_scenario(tmp_path / "run", finish=False)))
    assert "partial run" in fig._suptitle.get_text()


def test_sequence_diagram_of_a_lost_node_draws_the_lanes_and_marks_the_discard(tmp_path: Path) -> None:
    from repro_kit.client import connect
    from repro_kit.driver import run_test

    run = run_test(connect(seed=3), out=tmp_path / "run")
    a = analyse(run)
    fig = plots.sequence_diagram(a, a.verdict.lost[0])
    texts = [t.get_text() for t in fig.axes[0].texts]
    for lane in plots.LANES:
        assert lane in texts
    texts = [" ".join(t.split()) for t in texts]  # labels are wrapped to their room
    assert any(t.startswith("clear-vs-array-insert: discards ArrayInsert(root.children") for t in texts)
    for needle in ("upload", "download the batch"):
        assert any(needle in t for t in texts), needle
    assert any(t.startswith("re-import batch 1 (based on version") for t in texts)
    assert any(t.startswith("halt; snapshot at version") for t in texts)
    png, svg = plots.export(fig, tmp_path / "sequence", formats=("png", "svg"))
    assert png.stat().st_size > 0 and svg.stat().st_size > 0


def test_sequence_diagram_needs_a_lost_node(run, tmp_path: Path) -> None:
    clean = load_run(record_scenario(tmp_path / "clean", loss=False))
    with pytest.raises(ValueError, match="lost no node"):
        plots.sequence_diagram(clean)
    with pytest.raises(ValueError, match="no node of this run"):
        plots.sequence_diagram(run, "nope")
    with pytest.raises(ValueError, match="not a lost node"):
        plots.sequence_diagram(run, analyse(run).verdict.acknowledged[0])


# -- layout: measured with the renderer, so a label that overlaps shows as a failing box ---------


def _drawn(fig: Figure):
    """The figure drawn once with Agg; its renderer (every box below is in display pixels)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _labels(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.fixture(scope="module")
def lost_runs(tmp_path_factory):
    """Emulator runs whose sequence diagrams differ: the report's defaults, a late deploy, a
    prefilled user with three re-import batches."""
    from repro_kit.client import connect
    from repro_kit.driver import run_test

    base = tmp_path_factory.mktemp("lost")
    return [analyse(run_test(connect(seed=3, **kw), out=base / str(i), **run_kw))
            for i, (kw, run_kw) in enumerate([({}, {}), ({}, {"deploy_at_s": 12.5}), ({"prefill": 45}, {})])]


def test_sequence_labels_stay_clear_of_the_halt_bar_each_other_and_the_lifelines(lost_runs) -> None:
    for a in lost_runs:
        for node in (a.verdict.lost[0], a.verdict.lost[-1]):
            fig = plots.sequence_diagram(a, node)
            renderer = _drawn(fig)
            (ax,) = fig.axes
            (bar,) = [p for p in ax.patches if isinstance(p, Rectangle)
                      and to_hex(p.get_facecolor(), keep_alpha=False) == plots.WINDOW_COLOR]
            bar_box = bar.get_window_extent(renderer)
            lifelines = [line.get_window_extent(renderer) for line in ax.get_lines()
                         if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2]
            assert len(lifelines) == len(plots.LANES)
            frame = fig.bbox
            labels = _labels(fig)
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
            for text, box in boxes:
                assert not box.overlaps(bar_box), f"{text!r} overlaps the halt bar"
                assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text
                if text not in plots.LANES:  # a lane's header sits on its lifeline; nothing else does
                    crossed = [life for life in lifelines if box.x0 < life.x0 < box.x1
                               and box.y0 < life.y1 and life.y0 < box.y1]
                    assert not crossed, f"{text!r} crosses a lifeline"
            for i, (text, box) in enumerate(boxes):
                for other, other_box in boxes[i + 1:]:
                    assert not box.overlaps(other_box), f"{text!r} overlaps {other!r}"


def test_the_batch_label_stays_inside_the_counts_frame_above_the_lines(run, lost_runs) -> None:
    cases = [(analyse(run), "1 batch of 6 documents"), (lost_runs[0], "1 batch of 7 documents"),
             (lost_runs[2], "3 batches of 20, 20 and 12 documents")]
    for a, words in cases:
        for ax in (plots.counts(a), plots.timeline_figure(a).axes[-1]):
            renderer = _drawn(ax.figure)
            frame = ax.get_window_extent(renderer)
            (label,) = [t for t in ax.texts if "batch" in t.get_text()]
            assert label.get_text() == words
            box = label.get_window_extent(renderer)
            assert frame.x0 + 1 < box.x0 and box.x1 < frame.x1 - 1, "the label must not touch the frame's sides"
            assert frame.y0 + 1 < box.y0 and box.y1 < frame.y1 - 1, "the label must not touch the frame's top"
            highest = max(ax.transData.transform((0, y))[1] for line in ax.get_lines()
                          for y in np.asarray(line.get_ydata(), float) if np.isfinite(y) and line.get_label()[0] != "_")
            assert box.y0 > highest, "the label must sit above every count line"
            batch_xs = [ax.transData.transform((t, 0))[0] for t in a.batches["time"]]
            assert not [x for x in batch_xs if box.x0 <= x <= box.x1], "the label must not sit on a batch line"
