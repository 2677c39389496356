"""Figures for a run: swimlanes per observer, counts over time, the sequence diagram of
one lost node, and reproducible export.

Every figure draws from an `Analysis` (a Run is analysed once on the way in): no number
is computed here. Built on `matplotlib.figure.Figure` (not pyplot), so no global figure
state leaks between calls and any backend works; notebooks still display the Figure.
"""

from __future__ import annotations

import dataclasses
import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from repro_kit import _checks
from repro_kit._checks import InputError

from .causes import describe_instruction
from .findings import Analysis, Verdict, as_analysis, describe_batches
from .recording import Run

__all__ = ["swimlane", "counts", "timeline_figure", "sequence_diagram", "export", "STATE_COLORS", "FORMATS"]

STATE_COLORS = {"present": "#2e9e4f", "absent": "#d7301f", "not yet known": "#e3e3e3"}
WINDOW_COLOR = "#f5c542"
BATCH_COLOR = "#6a3d9a"
FORMATS = ("png", "svg", "pdf")
_MAX_LABELLED_ROWS = 60
_X_LABEL = "seconds since run start"


# ---------------------------------------------------------------------------------------
# What to mark


def _x_end(a: Analysis) -> float:
    """Right edge of every time axis: the run end (1 s for an empty run)."""
    return a.run.end_s if a.run.end_s > 0 else 1.0


def _mark_window_and_batches(ax: Axes, a: Analysis, *, over: bool = False) -> None:
    """Shade the deploy window and mark its edges and the device's resync batches."""
    window = a.deploy_window
    if window is not None:
        # under the bars; the lanes leave gaps, so the band shows between rows
        ax.axvspan(window[0], window[1], color=WINDOW_COLOR, alpha=0.45 if over else 0.22, lw=0, zorder=0)
        for edge in window:
            ax.axvline(edge, color="#b8860b", lw=0.8, ls="--", zorder=3)
    for t in a.batches["time"]:
        ax.axvline(t, color=BATCH_COLOR, ls=":", lw=1.2, zorder=3)


#: Batches closer than this fraction of the time axis share one label (they are 0.5 s apart).
_BATCH_GROUP_FRACTION = 0.04
#: Room above the highest count, as a fraction of it, for the batch labels (inside the frame).
_COUNT_HEADROOM = 0.22


def _batch_groups(a: Analysis, span: float) -> list[tuple[float, float, list[int]]]:
    """(first time, last time, sizes) of each run of batches close together on the time axis."""
    groups: list[tuple[float, float, list[int]]] = []
    for t, size in zip(a.batches["time"].astype(float), a.batches["batch"].astype(int)):
        if groups and t - groups[-1][1] <= _BATCH_GROUP_FRACTION * span:
            groups[-1] = (groups[-1][0], float(t), groups[-1][2] + [int(size)])
        else:
            groups.append((float(t), float(t), [int(size)]))
    return groups


def _label_batches(ax: Axes, a: Analysis, end: float) -> list:
    """One label per group of batches, "1 batch of 7 documents", inside the frame's top edge
    (the y limit leaves room for it above the lines), clear of the group's dotted lines: right
    of the last, or left of the first near the right edge."""
    labels = []
    for first, last, sizes in _batch_groups(a, end):
        right_edge = last > 0.7 * end
        labels.append(ax.annotate(
            describe_batches(sizes), (first if right_edge else last, 1.0), xycoords=("data", "axes fraction"),
            xytext=(-4 if right_edge else 4, -4), textcoords="offset points", va="top",
            ha="right" if right_edge else "left", fontsize=8, color=BATCH_COLOR, zorder=6, gid="batch-label"))
    return labels


def _window_handles(a: Analysis) -> list[Artist]:
    handles: list[Artist] = []
    if a.deploy_window is not None:
        handles.append(Patch(color=WINDOW_COLOR, alpha=0.4, label="deploy → resume (translation halted)"))
    if len(a.batches):
        handles.append(Line2D([], [], color=BATCH_COLOR, ls=":", lw=1.2, label="re-import batch reaching the device"))
    return handles


# ---------------------------------------------------------------------------------------
# Swimlanes


def _short_labels(ids: Sequence[str]) -> list[str]:
    """Shortest readable labels that stay unique (uuid prefixes, else suffixes)."""
    ids = [str(i) for i in ids]
    for cut in (lambda s: s[:8], lambda s: s[-8:], lambda s: s[-12:]):
        labels = [cut(s) if len(s) > 10 else s for s in ids]
        if len(set(labels)) == len(labels):
            return labels
    return ids


def _row_order(iv: pd.DataFrame) -> list[str]:
    """Node rows in ack order, the same in every panel (intervals come sorted that way)."""
    return list(dict.fromkeys(iv["node_id"].astype(str).tolist()))


def _draw_lanes(ax: Axes, iv: pd.DataFrame, rows: list[str], end_s: float, lost: set[str]) -> None:
    row_of = {n: i for i, n in enumerate(rows)}
    y = iv["node_id"].astype(str).map(row_of).to_numpy(np.float64)
    start = iv["start"].to_numpy(np.float64)
    end = iv["end"].to_numpy(np.float64)
    state = iv["state"].astype(str).to_numpy()
    # before a node is known to this view: from t=0 to its first interval
    firsts = iv.drop_duplicates("node_id")
    fy = firsts["node_id"].astype(str).map(row_of).to_numpy(np.float64)
    fstart = np.zeros(len(firsts))
    fend = firsts["start"].to_numpy(np.float64)
    y = np.concatenate([fy, y])
    start = np.concatenate([fstart, start])
    end = np.concatenate([fend, end])
    state = np.concatenate([np.full(len(firsts), "not yet known", dtype=object), state.astype(object)])
    keep = end > start
    y, start, end, state = y[keep], start[keep], end[keep], state[keep]
    h = 0.3
    verts = np.stack([
        np.column_stack([start, y - h]), np.column_stack([start, y + h]),
        np.column_stack([end, y + h]), np.column_stack([end, y - h]),
    ], axis=1)
    colors = [STATE_COLORS[s] for s in state]
    ax.add_collection(PolyCollection(list(verts), facecolors=colors, edgecolors="none", zorder=2))
    ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)  # first acknowledged node on top
    ax.set_xlim(0.0, end_s)
    ax.set_yticks(np.arange(len(rows)))
    if len(rows) <= _MAX_LABELLED_ROWS:
        ax.set_yticklabels(_short_labels(rows), fontsize=7, family="monospace")
        for label, node in zip(ax.get_yticklabels(), rows):
            if node in lost:
                label.set_color(STATE_COLORS["absent"])
    else:
        ax.set_yticklabels([])
        ax.tick_params(axis="y", length=0)


def swimlane(run: Run | Analysis, ax: Axes | Sequence[Axes] | None = None, observer: str | None = None) -> list[Axes]:
    """One row per node, coloured present / absent / not yet known, one panel per observer.

    `observer` picks one view; otherwise every observer in the run gets a panel. `ax` is
    one Axes (one observer) or a sequence of them (one per observer); a new Figure is
    made when omitted. Returns the Axes drawn on. Lost nodes' labels are red.
    """
    a = as_analysis(run)
    iv = a.intervals
    observers = list(iv["observer"].cat.categories) if len(iv) else ["device"]
    if observer is not None:
        observers = [_checks.choice("observer", observer, observers)]
    if ax is None:
        fig = Figure(figsize=(11, 1.2 + 0.2 * max(1, iv["node_id"].nunique()) * len(observers)), layout="constrained")
        axes = list(np.atleast_1d(fig.subplots(len(observers), 1, sharex=True, squeeze=False)[:, 0]))
    else:
        axes = [ax] if isinstance(ax, Axes) else list(ax)
        if len(axes) != len(observers):
            raise InputError("ax", f"must hold {len(observers)} Axes (one per observer), got {len(axes)}")
    verdict = a.verdict
    rows = _row_order(iv)
    for axis, obs in zip(axes, observers):
        sub = iv[(iv["observer"] == obs).to_numpy(bool)]
        lost = set(verdict.by_observer[obs].lost) if obs in verdict.by_observer else set()
        _mark_window_and_batches(axis, a, over=True)
        _draw_lanes(axis, sub, rows, _x_end(a), lost)
        axis.set_ylabel(f"{obs}\nnodes (ack order)")
        axis.set_title(f"{obs} view: root's children", loc="left", fontsize=9)
    axes[-1].set_xlabel(_X_LABEL)
    handles = [Patch(color=c, label=s) for s, c in STATE_COLORS.items()] + _window_handles(a)
    axes[0].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return axes


# ---------------------------------------------------------------------------------------
# Counts


def _count_series(a: Analysis) -> pd.DataFrame:
    """Counts/poll events with only the rows where a value changed, per observer."""
    ev = a.run.events
    cols = [c for c in ("root_children", "nodes_total") if c in ev.columns]
    kinds = ev["kind"].astype(object)
    sub = ev.loc[kinds.isin(["counts", "poll"]).to_numpy(bool), ["time", "observer", *cols]]
    sub = sub.assign(_seq=np.arange(len(sub))).sort_values(["observer", "time", "_seq"], kind="stable")
    changed = (sub[cols].ne(sub.groupby("observer", observed=True)[cols].shift())).any(axis=1)
    return sub[changed.to_numpy(bool)].drop(columns="_seq")


def counts(run: Run | Analysis, ax: Axes | None = None) -> Axes:
    """The root's children count against total nodes over time, one line style per observer."""
    a = as_analysis(run)
    if ax is None:
        ax = Figure(figsize=(11, 3), layout="constrained").subplots()
    series = _count_series(a)
    styles = {"device": "-", "atlas": "--"}
    colors = {"root_children": "#1f6fb4", "nodes_total": "#555555"}
    names = {"root_children": "root's children", "nodes_total": "total nodes"}
    _mark_window_and_batches(ax, a)
    end = _x_end(a)
    for obs, grp in series.groupby("observer", observed=True, sort=True):
        for col in ("root_children", "nodes_total"):
            if col not in grp.columns:
                continue
            g = grp[["time", col]].dropna()
            if g.empty:
                continue
            x = np.append(g["time"].to_numpy(np.float64), end)
            yv = g[col].to_numpy(np.float64)
            yv = np.append(yv, yv[-1])
            ax.step(x, yv, where="post", color=colors[col], ls=styles.get(str(obs), "-."),
                    lw=1.6 if col == "root_children" else 1.2, label=f"{obs}: {names[col]}", zorder=4)
    verdict_loss = a.verdict.first_loss_at_s
    if verdict_loss is not None:
        ax.axvline(verdict_loss, color=STATE_COLORS["absent"], lw=1.2, ls="-.", zorder=5)
    ax.set_xlim(0.0, end)
    top = float(np.nanmax(series[[c for c in ("root_children", "nodes_total") if c in series.columns]]
                          .to_numpy(np.float64), initial=0.0)) if len(series) else 0.0
    ax.set_ylim(0, max(top, 1.0) * (1 + _COUNT_HEADROOM) + (1 if len(a.batches) else 0))
    _label_batches(ax, a, end)
    ax.set_ylabel("count")
    ax.set_xlabel(_X_LABEL)
    ax.set_title("root's children vs total nodes", loc="left", fontsize=9)
    handles, _ = ax.get_legend_handles_labels()
    if verdict_loss is not None:
        handles.append(Line2D([], [], color=STATE_COLORS["absent"], ls="-.",
                              label=f"first loss ({verdict_loss:.1f} s)"))
    ax.legend(handles=handles + _window_handles(a), loc="upper left", bbox_to_anchor=(1.0, 1.0),
              fontsize=8, frameon=False)
    return ax


# ---------------------------------------------------------------------------------------
# The figure


def _title(a: Analysis) -> str:
    run = a.run
    m = run.meta
    def known(value: Any) -> bool:  # never "None" or "nan" in a title
        return value is not None and not (isinstance(value, float) and not math.isfinite(value))

    parts = [str(m[k]) for k in ("backend", "mode") if known(m.get(k))]
    if known(m.get("encoding")):
        parts.append(f"encoding={m['encoding']}")
    if known(m.get("writes")):
        parts.append(f"{m['writes']} writes")
    if known(m.get("deploy_at_s")):
        parts.append(f"deploy at {m['deploy_at_s']:g} s" if isinstance(m["deploy_at_s"], (int, float))
                     else f"deploy at {m['deploy_at_s']} s")
    elif "deploy_at_s" in m and m["deploy_at_s"] is None:
        parts.append("no deploy")
    if not run.finished:
        parts.append("partial run (not finished)")
    headline = _headline(a.verdict)
    return headline + ("\n" + " · ".join(parts) if parts else "")


def _headline(verdict: Verdict) -> str:
    """The verdict's first sentence and its cause, wrapped to fit a figure's title (never inside
    a rule's hyphenated name)."""
    return "\n".join(textwrap.wrap(verdict.summary(), 125, break_on_hyphens=False))


def timeline_figure(run: Run | Analysis) -> Figure:
    """Swimlanes (one panel per observer) above the counts panel, sharing the time axis;
    titled with the verdict, e.g. "15 of 20 nodes orphaned ..."."""
    a = as_analysis(run)
    iv = a.intervals
    observers = list(iv["observer"].cat.categories) if len(iv) else ["device"]
    n_rows = max(1, iv["node_id"].nunique())
    lane_h = min(max(1.4, 0.17 * n_rows), 6.0)
    fig = Figure(figsize=(12, 1.2 + lane_h * len(observers) + 2.6), layout="constrained")
    axes = fig.subplots(len(observers) + 1, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [lane_h] * len(observers) + [2.6]})[:, 0]
    swimlane(a, ax=list(axes[:-1]))
    for axis in axes[:-1]:
        axis.set_xlabel("")
    counts(a, ax=axes[-1])
    axes[-1].set_xlim(0.0, _x_end(a))
    fig.suptitle(_title(a), fontsize=11, x=0.01, ha="left")
    return fig


# ---------------------------------------------------------------------------------------
# Sequence diagram of one lost node

LANES = ("device", "sync server", "translator", "Atlas")
DISCARD_COLOR = "#c0392b"


def _sequence_items(a: Analysis, node: str) -> list[dict]:
    """What happened to `node`, in time order, as arrows and notes between the lanes.

    Every item comes from the recording: the history (write, ack, deploy, halt, resume),
    the trace (integrated versions, the re-import batch, the discard) and the events
    (when the device and Atlas showed the change)."""
    adds = a._adds.get(node, {})
    items = [*_write_items(a, node, adds), *_deploy_items(a, adds), *_discard_items(a, node),
             *_aftermath_items(a, node)]
    items.sort(key=lambda item: item["t"])
    return items


def _write_items(a: Analysis, node: str, adds: dict[str, float]) -> list[dict]:
    """The device's write, its upload and the server's acknowledgement."""
    if "invoke" not in adds:
        return []
    version = a.evidence.created_in.get(node)
    up = adds.get("ok", adds["invoke"])
    return [
        {"t": adds["invoke"], "kind": "note", "lane": "device",
         "text": f"write node {node[:8]}: CreateObject + ArrayInsert(root.children)"},
        {"t": adds["invoke"] + 1e-6, "kind": "arrow", "src": "device", "dst": "sync server", "text": "upload"},
        {"t": up, "kind": "arrow", "src": "sync server", "dst": "device",
         "text": f"ack (server version {version})" if version is not None else "ack"},
    ]


def _deploy_items(a: Analysis, adds: dict[str, float]) -> list[dict]:
    """The schema deploy, the halt and snapshot it caused, and the write the halt held back."""
    items: list[dict] = []
    for t, value in a.nemesis("deploy"):
        if isinstance(value, dict) and "status" not in value:
            field = f" {value['field']}" if value.get("field") is not None else " a field"
            items.append({"t": t, "kind": "note", "lane": "translator", "text": f"schema deploy: add{field}"})
    halts = a.nemesis("halt")
    for t, value in halts:
        snap = value.get("snapshot_version") if isinstance(value, dict) else None
        items.append({"t": t + 1e-6, "kind": "arrow", "src": "translator", "dst": "Atlas",
                      "text": "halt; snapshot" + (f" at version {snap}" if snap is not None else "")})
    if halts and "invoke" in adds:
        items.append({"t": adds.get("ok", adds["invoke"]) + 2e-6, "kind": "blocked", "src": "sync server",
                      "dst": "translator", "text": "halted: not written to Atlas"})
    return items


def _discard_items(a: Analysis, node: str) -> list[dict]:
    """The changeset that carried the discarding instruction, and the discard (a lost node's)."""
    explanation = a.explain(node) if node in a.verdict.lost else None
    record = explanation.discard if explanation is not None else None
    if explanation is None or explanation.cause is None or record is None:
        return []
    cs = explanation.cause.changeset
    batch = f" {cs['reimport_batch']}" if cs.get("reimport_batch") is not None else ""
    based = f" (based on version {cs['base_version']})" if cs.get("base_version") is not None else ""
    version = f" version {cs['version']}" if cs.get("version") is not None else ""
    label = (f"re-import batch{batch}{based}: {cs.get('instruction')} + ArrayInserts"
             if cs.get("origin") == "re-import" else f"changeset{version}: {cs.get('instruction')}")
    t = float(cs["time"]) if cs.get("time") is not None else float(record.get("time", 0.0))
    src = "translator" if cs.get("origin") in ("re-import", "server") else "device"
    victim = describe_instruction(record.get("instruction") or {}, a.evidence.root_id)
    return [
        {"t": t, "kind": "arrow", "src": src, "dst": "sync server", "text": label},
        {"t": t + 1e-6, "kind": "discard", "lane": "sync server" if record.get("at") == "server" else "device",
         "text": f"{record.get('rule')}: discards {victim}"},
    ]


def _aftermath_items(a: Analysis, node: str) -> list[dict]:
    """When the device showed the loss, and what Atlas held once translation resumed."""
    life = a.lifecycle
    rows: Any = life[(life["node_id"].astype(str) == node).to_numpy(bool)].set_index("observer")
    items: list[dict] = []
    device_lost = ("device" in rows.index and not bool(rows.loc["device", "final_present"])
                   and pd.notna(rows.loc["device", "lost_at"]))
    if device_lost:
        t = float(rows.loc["device", "lost_at"])
        items.append({"t": t, "kind": "arrow", "src": "sync server", "dst": "device", "text": "download the batch"})
        kept = "document kept (orphaned)" if bool(rows.loc["device", "doc_exists_at_end"]) else "document gone"
        items.append({"t": t + 1e-6, "kind": "note", "lane": "device", "text": f"node leaves root's children; {kept}"})
    for t, _value in a.nemesis("resume"):
        atlas_kept = "atlas" in rows.index and bool(rows.loc["atlas", "doc_exists_at_end"])
        text = "resume: flush" + ("; root without the node, its document kept" if atlas_kept else "")
        items.append({"t": t + 2e-6, "kind": "arrow", "src": "translator", "dst": "Atlas", "text": text})
    return items


# The diagram is laid out in inches (y) and lane units (x) on an axes placed by hand, so every
# label can be measured and wrapped to the room it has before anything is drawn.
_SEQ_WIDTH_IN = 11.0
_SEQ_X = (-0.5, len(LANES) - 0.7)   # lane units: the time column on the left, the last lane's header
_SEQ_MARGIN = 0.01                  # figure fraction left and right of the axes
_SEQ_FONT = 8.0
_SEQ_LINE_IN = 1.25 * _SEQ_FONT / 72  # one line of label text, inches
_SEQ_PAD = 0.06                     # lane units between a label and the lifeline or bar it stops at
_SEQ_GAP_IN = 0.16                  # inches between one row's lowest ink and the next row's highest
_SEQ_ARROW_LIFT_IN = 0.07           # an arrow's label sits this far above its arrow
_SEQ_HEADER_IN = 0.55               # room for the lane headers above the first row
_HALT_HALF_WIDTH = 0.05             # lane units: the halt bar on the translator's lifeline


def _wrap_to(text: str, width_in: float, renderer: Any, prop: FontProperties, dpi: float) -> list[str]:
    """Greedy word wrap measured with the renderer; a word wider than the room keeps a line of
    its own (nothing is cut)."""
    def width(line: str) -> float:
        return renderer.get_text_width_height_descent(line, prop, ismath=False)[0] / dpi

    lines: list[str] = []
    for word in text.split():
        if lines and width(f"{lines[-1]} {word}") <= width_in:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def _label_room(item: dict, x: dict[str, int], bar_rows: tuple[float, float] | None,
                k: int) -> tuple[float, float, str]:
    """(left, right, ha) in lane units: where item k's label may go without crossing a lifeline
    or the translator's halt bar (when the bar spans its row)."""
    right_end = _SEQ_X[1]
    bar = x["translator"] if bar_rows is not None and bar_rows[0] <= k <= bar_rows[1] else None
    if item["kind"] in ("arrow", "blocked"):
        lo, hi = sorted((float(x[item["src"]]), float(x[item["dst"]])))
        if bar is not None and lo <= bar <= hi:  # keep to the side of the bar with the most room
            left, right = (lo, bar - _HALT_HALF_WIDTH), (bar + _HALT_HALF_WIDTH, hi)
            lo, hi = left if left[1] - left[0] >= right[1] - right[0] else right
        return lo + _SEQ_PAD, hi - _SEQ_PAD, "center"
    lane = x[item["lane"]]
    nxt: float = min([i for i in x.values() if i > lane], default=right_end)
    lo, hi = lane + 0.08, nxt - _SEQ_PAD
    if bar is not None and lo < bar - _HALT_HALF_WIDTH < hi:
        hi = bar - _HALT_HALF_WIDTH - _SEQ_PAD
    return lo, hi, "left"


def sequence_diagram(run: Run | Analysis, node_id: str | None = None) -> Figure:
    """A sequence diagram of one lost node: lanes device, sync server, translator, Atlas;
    arrows for upload, ack, halt and snapshot, the re-import batch, the download; the
    discarding merge rule marked in red; the translator's halt as a bar on its lifeline. Rows
    follow the order of events (times on the left), so seconds and minutes apart both stay
    readable. Every label is wrapped to the room between the lifelines (and the halt bar) it
    sits between, so none crosses another, a lifeline or the bar.

    `node_id`: a lost node, or a unique prefix of its id (default: the first explained one).
    ValueError if none was lost.
    """
    a = as_analysis(run)
    node_id = _node_to_draw(a, node_id)
    items = _sequence_items(a, node_id)
    x = {lane: i for i, lane in enumerate(LANES)}
    bar_rows = _halt_bar_rows(items)
    fig = Figure(figsize=(_SEQ_WIDTH_IN, 4.0))
    rows, body_in = _layout_rows(items, x, bar_rows, FigureCanvasAgg(fig).get_renderer(), fig.dpi)
    title = (f"Sequence of lost node {node_id[:8]}: " + (a.verdict.cause_sentence() or "").removeprefix("Cause: ")
             if a.verdict.causes else f"Sequence of lost node {node_id[:8]}")
    title_lines = textwrap.wrap(title, 120, break_on_hyphens=False)
    title_in = 0.15 + len(title_lines) * 1.3 * 10 / 72
    fig.set_size_inches(_SEQ_WIDTH_IN, title_in + body_in)
    fig.text(0.005, 1 - 0.08 / (title_in + body_in), "\n".join(title_lines), ha="left", va="top", fontsize=10)
    ax = fig.add_axes((_SEQ_MARGIN, 0.0, 1 - 2 * _SEQ_MARGIN, body_in / (title_in + body_in)))
    ax.set_xlim(*_SEQ_X)
    ax.set_ylim(body_in, 0.0)
    ax.axis("off")
    bottom = body_in - 0.15
    _draw_lifelines(ax, x, bottom)
    if bar_rows is not None:
        top_y = rows[bar_rows[0]].y
        end_y = rows[bar_rows[1]].y if bar_rows[1] < len(rows) else bottom
        ax.add_patch(Rectangle((x["translator"] - _HALT_HALF_WIDTH, top_y), 2 * _HALT_HALF_WIDTH, end_y - top_y,
                               color=WINDOW_COLOR, alpha=0.6, lw=0, zorder=1.5, gid="halt-bar",
                               label="translation halted"))
    for it, row in zip(items, rows):
        ax.text(_SEQ_X[0] + 0.03, row.y, f"{it['t']:.2f} s", ha="left", va="center", fontsize=8, family="monospace",
                color="#444444")
        if it["kind"] in ("arrow", "blocked"):
            _draw_arrow(ax, it, row, x)
        else:
            _draw_note(ax, it, row, x)
    return fig


@dataclasses.dataclass(frozen=True)
class _SeqRow:
    """One row of the sequence diagram: where it sits (inches down) and its wrapped label."""

    y: float
    lines: list[str]
    lo: float
    hi: float
    size: float
    weight: str

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _node_to_draw(a: Analysis, node_id: str | None) -> str:
    """The lost node the diagram is of: `node_id` (or a unique prefix), else the first explained one."""
    lost = a.verdict.lost
    if node_id is None:
        node_id = next((e.node_id for e in a.explanations() if e.explained), lost[0] if lost else None)
        if node_id is None:
            raise InputError("node_id", "the run lost no node, so there is no loss to draw")
    node_id = a.resolve_node(node_id)
    if node_id not in lost:
        raise ValueError(a._not_lost(node_id))
    return node_id


def _halt_bar_rows(items: list[dict]) -> tuple[int, int] | None:
    """The rows the translator's halt bar spans: from the halt to the resume (or the end)."""
    halt = next((k for k, it in enumerate(items) if it["kind"] == "arrow" and it["text"].startswith("halt")), None)
    resume = next((k for k, it in enumerate(items) if it["kind"] == "arrow" and it["text"].startswith("resume")), None)
    return None if halt is None else (halt, resume if resume is not None else len(items))


def _layout_rows(items: list[dict], x: dict[str, int], bar_rows: tuple[int, int] | None, renderer: Any,
                 dpi: float) -> tuple[list[_SeqRow], float]:
    """Every label measured and wrapped to its room, the rows stacked each as tall as its label
    needs; (the rows, the body's height in inches)."""
    inch_per_unit = _SEQ_WIDTH_IN * (1 - 2 * _SEQ_MARGIN) / (_SEQ_X[1] - _SEQ_X[0])
    rows: list[_SeqRow] = []
    y, below_prev = _SEQ_HEADER_IN, 0.0
    for k, it in enumerate(items):
        weight = "bold" if it["kind"] == "discard" else "normal"
        size = 8.5 if it["kind"] == "discard" else _SEQ_FONT
        lo, hi, _ha = _label_room(it, x, bar_rows, k)
        lines = _wrap_to(it["text"], (hi - lo) * inch_per_unit, renderer, FontProperties(size=size, weight=weight), dpi)
        height = len(lines) * _SEQ_LINE_IN * size / _SEQ_FONT
        if it["kind"] in ("arrow", "blocked"):
            above, below = _SEQ_ARROW_LIFT_IN + height, 0.06
        else:
            above = below = max(height / 2, 0.08)
        y += (below_prev + _SEQ_GAP_IN + above) if k else above
        below_prev = below
        rows.append(_SeqRow(y, lines, lo, hi, size, weight))
    return rows, y + below_prev + 0.25


def _draw_lifelines(ax: Axes, x: dict[str, int], bottom: float) -> None:
    for lane, i in x.items():
        ax.plot([i, i], [_SEQ_HEADER_IN * 0.55, bottom], color="#999999", lw=1, zorder=1)
        ax.text(i, _SEQ_HEADER_IN * 0.35, lane, ha="center", va="center", fontsize=9, weight="bold",
                bbox={"boxstyle": "round,pad=0.3", "fc": "#eef2f7", "ec": "#7a8ca3"})


def _draw_arrow(ax: Axes, it: dict, row: _SeqRow, x: dict[str, int]) -> None:
    """An arrow between two lifelines, its label above it; a blocked one stops at the halt bar."""
    x0, x1 = x[it["src"]], x[it["dst"]]
    blocked = it["kind"] == "blocked"
    end: float = x1
    if blocked:
        end = x["translator"] - _HALT_HALF_WIDTH - 0.05 if x1 > x0 else x["translator"] + _HALT_HALF_WIDTH + 0.05
    ax.annotate("", xy=(end, row.y), xytext=(x0, row.y),
                arrowprops={"arrowstyle": "->" if not blocked else "-[, widthB=0.5, lengthB=0.25", "lw": 1.3,
                            "color": "#888888" if blocked else "#1f4e79",
                            "ls": "--" if blocked else "-", "shrinkA": 0, "shrinkB": 0}, zorder=3)
    ax.text((row.lo + row.hi) / 2, row.y - _SEQ_ARROW_LIFT_IN, row.text, ha="center", va="bottom",
            fontsize=row.size, color="#888888" if blocked else "#1f2d3d", linespacing=1.1)


def _draw_note(ax: Axes, it: dict, row: _SeqRow, x: dict[str, int]) -> None:
    """A mark on one lifeline and its label beside it; the discard in red."""
    i = x[it["lane"]]
    discard = it["kind"] == "discard"
    ax.plot([i], [row.y], marker="X" if discard else "o", ms=11 if discard else 5,
            color=DISCARD_COLOR if discard else "#1f4e79", zorder=4)
    ax.text(row.lo, row.y, row.text, ha="left", va="center", fontsize=row.size, linespacing=1.1,
            color=DISCARD_COLOR if discard else "#1f2d3d", weight=row.weight)


# ---------------------------------------------------------------------------------------
# Export

_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}


def export(fig: Figure, stem: str | os.PathLike[str], formats: Sequence[str] = FORMATS) -> list[Path]:
    """Save `fig` as stem.png / stem.svg / stem.pdf with reproducible bytes: no dates or
    creator strings, a fixed SVG hash salt, a fixed DPI. Returns the written paths."""
    if isinstance(formats, str):
        formats = (formats,)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError("formats", f"must be among {FORMATS}, got {list(formats)!r}")
    stem = Path(stem)
    if stem.suffix.lstrip(".").lower() in FORMATS:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    with mpl.rc_context({"svg.hashsalt": "repro_kit", "svg.fonttype": "path", "pdf.compression": 6}):
        for fmt in dict.fromkeys(formats):
            out = stem.with_name(f"{stem.name}.{fmt}")
            fig.savefig(out, format=fmt, dpi=150, metadata=_METADATA[fmt])
            paths.append(out)
    return paths
