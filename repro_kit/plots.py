"""Figures for a run: swimlanes per observer, counts over time, and reproducible export.

Built on `matplotlib.figure.Figure` (not pyplot), so no global figure state leaks
between calls and any backend works; notebooks still display the returned Figure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .recording import Run
from .timeline import Verdict, check, intervals, resync_batches

__all__ = ["swimlane", "counts", "timeline_figure", "export", "deploy_window", "STATE_COLORS", "FORMATS"]

STATE_COLORS = {"present": "#2e9e4f", "absent": "#d7301f", "not yet known": "#e3e3e3"}
WINDOW_COLOR = "#f5c542"
BATCH_COLOR = "#6a3d9a"
FORMATS = ("png", "svg", "pdf")
_MAX_LABELLED_ROWS = 60
_X_LABEL = "seconds since run start"


# ---------------------------------------------------------------------------------------
# What to mark


def deploy_window(run: Run) -> tuple[float, float] | None:
    """(deploy invoke time, resume time) from the history; without a "resume" op, the
    window ends at the last device resync batch, or at the run end. None: no deploy."""
    h = run.history
    if h.empty:
        return None
    f = h["f"].astype(object)
    deploys = h.loc[((f == "deploy") & (h["type"].astype(object) == "invoke")).to_numpy(bool), "time"]
    if deploys.empty:
        return None
    start = float(deploys.min())
    resumes = h.loc[((f == "resume") & (h["time"] >= start)).to_numpy(bool), "time"]
    if not resumes.empty:
        return start, float(resumes.min())
    batches = resync_batches(run)
    batches = batches[batches["time"] >= start]
    end = float(batches["time"].max()) if len(batches) else run.end_s
    return start, max(end, start)


def _x_end(run: Run) -> float:
    """Right edge of every time axis: the run end (1 s for an empty run)."""
    return run.end_s if run.end_s > 0 else 1.0


def _mark_window_and_batches(ax: Axes, run: Run, *, annotate: bool = False, over: bool = False) -> None:
    """Shade the deploy window and mark its edges and the device's resync batches."""
    window = deploy_window(run)
    if window is not None:
        # under the bars; the lanes leave gaps, so the band shows between rows
        ax.axvspan(window[0], window[1], color=WINDOW_COLOR, alpha=0.45 if over else 0.22, lw=0, zorder=0)
        for edge in window:
            ax.axvline(edge, color="#b8860b", lw=0.8, ls="--", zorder=3)
    batches = resync_batches(run)
    for t, size in zip(batches["time"], batches["batch"]):
        ax.axvline(t, color=BATCH_COLOR, ls=":", lw=1.2, zorder=3)
        if annotate:
            ax.annotate(f"{int(size)} docs", (t, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -3), textcoords="offset points", va="top", ha="left",
                        fontsize=8, color=BATCH_COLOR)


def _window_handles(run: Run) -> list:
    handles = []
    if deploy_window(run) is not None:
        handles.append(Patch(color=WINDOW_COLOR, alpha=0.4, label="deploy → resume (translation halted)"))
    if len(resync_batches(run)):
        handles.append(Line2D([], [], color=BATCH_COLOR, ls=":", lw=1.2, label="resync batch (device)"))
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
    ax.add_collection(PolyCollection(verts, facecolors=colors, edgecolors="none", zorder=2))
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


def swimlane(run: Run, ax: Axes | Sequence[Axes] | None = None, observer: str | None = None,
             *, verdict: Verdict | None = None) -> list[Axes]:
    """One row per node, coloured present / absent / not yet known, one panel per observer.

    `observer` picks one view; otherwise every observer in the run gets a panel. `ax` is
    one Axes (one observer) or a sequence of them (one per observer); a new Figure is
    made when omitted. Returns the Axes drawn on. Lost nodes' labels are red.
    """
    iv = intervals(run)
    observers = list(iv["observer"].cat.categories) if len(iv) else ["device"]
    if observer is not None:
        if observer not in observers:
            raise ValueError(f"observer must be one of {observers}, got {observer!r}")
        observers = [observer]
    if ax is None:
        fig = Figure(figsize=(11, 1.2 + 0.2 * max(1, iv["node_id"].nunique()) * len(observers)), layout="constrained")
        axes = list(np.atleast_1d(fig.subplots(len(observers), 1, sharex=True, squeeze=False)[:, 0]))
    else:
        axes = [ax] if isinstance(ax, Axes) else list(ax)
        if len(axes) != len(observers):
            raise ValueError(f"ax must hold {len(observers)} Axes (one per observer), got {len(axes)}")
    verdict = verdict if verdict is not None else check(run)
    rows = _row_order(iv)
    for a, obs in zip(axes, observers):
        sub = iv[(iv["observer"] == obs).to_numpy(bool)]
        lost = set(verdict.by_observer[obs].lost) if obs in verdict.by_observer else set()
        _mark_window_and_batches(a, run, over=True)
        _draw_lanes(a, sub, rows, _x_end(run), lost)
        a.set_ylabel(f"{obs}\nnodes (ack order)")
        a.set_title(f"{obs} view: root's children", loc="left", fontsize=9)
    axes[-1].set_xlabel(_X_LABEL)
    handles = [Patch(color=c, label=s) for s, c in STATE_COLORS.items()] + _window_handles(run)
    axes[0].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return axes


# ---------------------------------------------------------------------------------------
# Counts


def _count_series(run: Run) -> pd.DataFrame:
    """Counts/poll events with only the rows where a value changed, per observer."""
    ev = run.events
    cols = [c for c in ("root_children", "nodes_total") if c in ev.columns]
    kinds = ev["kind"].astype(object)
    sub = ev.loc[kinds.isin(["counts", "poll"]).to_numpy(bool), ["time", "observer", *cols]]
    sub = sub.assign(_seq=np.arange(len(sub))).sort_values(["observer", "time", "_seq"], kind="stable")
    changed = (sub[cols].ne(sub.groupby("observer", observed=True)[cols].shift())).any(axis=1)
    return sub[changed.to_numpy(bool)].drop(columns="_seq")


def counts(run: Run, ax: Axes | None = None, *, verdict: Verdict | None = None) -> Axes:
    """The root's children count against total nodes over time, one line style per observer."""
    if ax is None:
        ax = Figure(figsize=(11, 3), layout="constrained").subplots()
    series = _count_series(run)
    styles = {"device": "-", "atlas": "--"}
    colors = {"root_children": "#1f6fb4", "nodes_total": "#555555"}
    names = {"root_children": "root's children", "nodes_total": "total nodes"}
    _mark_window_and_batches(ax, run, annotate=True)
    end = _x_end(run)
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
    verdict_loss = (verdict if verdict is not None else check(run)).first_loss_at_s
    if verdict_loss is not None:
        ax.axvline(verdict_loss, color=STATE_COLORS["absent"], lw=1.2, ls="-.", zorder=5)
    ax.set_xlim(0.0, end)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("count")
    ax.set_xlabel(_X_LABEL)
    ax.set_title("root's children vs total nodes", loc="left", fontsize=9)
    handles, _ = ax.get_legend_handles_labels()
    if verdict_loss is not None:
        handles.append(Line2D([], [], color=STATE_COLORS["absent"], ls="-.", label=f"first loss ({verdict_loss:.1f} s)"))
    ax.legend(handles=handles + _window_handles(run), loc="upper left", bbox_to_anchor=(1.0, 1.0),
              fontsize=8, frameon=False)
    return ax


# ---------------------------------------------------------------------------------------
# The figure


def _title(run: Run, verdict: Verdict) -> str:
    m = run.meta
    parts = [str(m[k]) for k in ("backend", "mode") if m.get(k) is not None]
    if m.get("encoding") is not None:
        parts.append(f"encoding={m['encoding']}")
    if m.get("writes") is not None:
        parts.append(f"{m['writes']} writes")
    if m.get("deploy_at_s") is not None:
        parts.append(f"deploy at {m['deploy_at_s']} s")
    if not run.finished:
        parts.append("partial run (not finished)")
    return verdict.summary() + ("\n" + " · ".join(parts) if parts else "")


def timeline_figure(run: Run, verdict: Verdict | None = None) -> Figure:
    """Swimlanes (one panel per observer) above the counts panel, sharing the time axis;
    titled with the verdict, e.g. "15 of 20 nodes orphaned ..."."""
    verdict = verdict if verdict is not None else check(run)
    iv = intervals(run)
    observers = list(iv["observer"].cat.categories) if len(iv) else ["device"]
    n_rows = max(1, iv["node_id"].nunique())
    lane_h = min(max(1.4, 0.17 * n_rows), 6.0)
    fig = Figure(figsize=(12, 1.2 + lane_h * len(observers) + 2.6), layout="constrained")
    axes = fig.subplots(len(observers) + 1, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [lane_h] * len(observers) + [2.6]})[:, 0]
    swimlane(run, ax=list(axes[:-1]), verdict=verdict)
    for a in axes[:-1]:
        a.set_xlabel("")
    counts(run, ax=axes[-1], verdict=verdict)
    axes[-1].set_xlim(0.0, _x_end(run))
    fig.suptitle(_title(run, verdict), fontsize=11, x=0.01, ha="left")
    return fig


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
        raise ValueError(f"formats must be among {FORMATS}, got {list(formats)!r}")
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
