"""Reading sweep results: scenario grids, heatmaps of nodes lost, a plain-language conclusion.

Notebook 04 only calls these; the conclusion is computed from the numbers, so it
changes when the model or the grid does, and never claims more than the rows show.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from repro_kit import _checks
from repro_kit._checks import InputError
from repro_kit.sweeps import SCENARIO_DEFAULTS, sweep

__all__ = ["rate_grid", "combine", "heatmap", "effect", "window_writes", "conclusion", "CATEGORICAL", "NUMERIC",
           "ASSUMPTIONS", "sensitivity", "sensitivity_figure", "sensitivity_summary", "OBSERVATIONS"]

CATEGORICAL = ("mode", "encoding", "reimport", "tree", "pause_during_resync")
NUMERIC = ("deploy_at_s", "interval_s", "writes", "resync_delay_s", "resync_batch_size", "settle_s")

_NAMES = {
    "deploy_at_s": "the deploy time",
    "interval_s": "the interval between writes",
    "writes": "the number of writes",
    "resync_delay_s": "the resync delay",
    "resync_batch_size": "the re-import batch size",
    "settle_s": "the settle time",
    "mode": "the App Services mode",
    "encoding": "the translator's list encoding",
    "reimport": "the re-import's scope",
    "tree": "the tree shape",
    "pause_during_resync": "pausing writes during the resync",
}


def rate_grid(deploy_at_s: Iterable[float], interval_s: Iterable[float], duration_s: float = 20.0,
              **common: Any) -> list[dict[str, Any]]:
    """Scenarios crossing deploy time with write rate over the same `duration_s` of writing.

    A faster rate means more writes (writes = duration / interval), so every deploy time
    falls inside every run; combinations where it would not are left out.
    """
    _checks.number("duration_s", duration_s, 0, above=True)
    out = []
    for interval in interval_s:
        _checks.number("interval_s", interval, 0, above=True)
        writes = max(1, round(duration_s / interval))
        for at in deploy_at_s:
            if 0 <= at <= (writes - 1) * interval:
                out.append({**common, "interval_s": float(interval), "writes": writes, "deploy_at_s": float(at)})
    return out


def _complete(df: pd.DataFrame) -> pd.DataFrame:
    """Add every scenario key a frame lacks, at its default (what the sweep ran with)."""
    missing = {k: v for k, v in SCENARIO_DEFAULTS.items() if k not in df.columns}
    return df.assign(**{k: [v] * len(df) for k, v in missing.items()}) if missing else df


def combine(**studies: pd.DataFrame) -> pd.DataFrame:
    """One frame of several sweeps, each labelled in a `study` column, with defaults filled in."""
    if not studies:
        raise InputError("studies", "give at least one named sweep result")
    frames = []
    for name, df in studies.items():
        if not isinstance(df, pd.DataFrame) or "lost_count" not in df.columns:
            raise ValueError(f"{name}: must be a sweep() result (a DataFrame with lost_count)")
        frames.append(_complete(df).assign(study=name))
    return pd.concat(frames, ignore_index=True)


def _inputs(df: pd.DataFrame) -> list[str]:
    """Scenario keys that vary across the frame's rows."""
    return [c for c in SCENARIO_DEFAULTS if c in df.columns and df[c].nunique(dropna=False) > 1]


def _label(df: pd.DataFrame, keys: str | Sequence[str], sep: str = " · ") -> pd.Series:
    keys = [keys] if isinstance(keys, str) else list(keys)
    if not keys:
        raise InputError("keys", "name at least one column")
    for k in keys:
        if k not in df.columns:
            raise InputError("keys", f"{k!r} is not a column (columns: {', '.join(map(str, df.columns))})")
    if len(keys) == 1:
        return df[keys[0]].map(_fmt)
    return df[keys].apply(lambda row: sep.join(f"{k}={_fmt(row[k])}" for k in keys), axis=1)


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "none"
        return f"{value:g}"
    return str(value)


def heatmap(df: pd.DataFrame, x: str | Sequence[str], y: str | Sequence[str], value: str = "lost_count", *,
            ax: Any = None, title: str | None = None, cmap: str = "Reds") -> Any:
    """A heatmap of `value` (mean over repeats) with x and y as columns, or lists of columns
    combined into one axis (a scenario per row); every cell is annotated. Returns the Figure."""
    if value not in df.columns:
        raise InputError("value", f"{value!r} is not a column")
    if df.empty:
        raise InputError("df", "no rows to plot")
    # Combined x labels stack one setting per line, so neighbouring columns never overlap.
    frame = pd.DataFrame({"x": _label(df, x, sep="\n"), "y": _label(df, y),
                          "v": pd.to_numeric(df[value], errors="coerce")})
    x_order = list(dict.fromkeys(frame.sort_values("x", key=_sort_key(df, x)).x)) if isinstance(x, str) \
        else list(dict.fromkeys(frame.x))
    y_order = list(dict.fromkeys(frame.sort_values("y", key=_sort_key(df, y)).y)) if isinstance(y, str) \
        else list(dict.fromkeys(frame.y))
    grid = frame.pivot_table(index="y", columns="x", values="v", aggfunc="mean").reindex(index=y_order,
                                                                                       columns=x_order)
    owned = ax is None
    if ax is None:
        label_in = 0.075 * max(len(str(v)) for v in y_order)  # room for the y labels, in inches
        column_in = max(0.9, 0.085 * max(len(line) for v in x_order for line in str(v).splitlines()))
        fig, ax = plt.subplots(figsize=(max(4.0, column_in * len(x_order) + 2.5 + label_in),
                                        max(2.5, 0.5 * len(y_order) + 1.5)))
    else:
        fig = ax.figure
    data = grid.to_numpy(dtype=float)
    vmax = np.nanmax(data) if np.isfinite(data).any() else 1.0
    image = ax.imshow(data, cmap=cmap, aspect="auto", vmin=0, vmax=max(vmax, 1.0))
    ax.set_xticks(range(len(x_order)), x_order)  # turned by _fit_x_labels only if they cannot fit
    ax.set_yticks(range(len(y_order)), y_order)
    ax.set_xlabel(x if isinstance(x, str) else " · ".join(x))
    ax.set_ylabel(y if isinstance(y, str) else " · ".join(y))
    for (i, j), v in np.ndenumerate(data):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}", ha="center", va="center",
                    color="white" if v > 0.6 * max(vmax, 1.0) else "black", fontsize=9)
    fig.colorbar(image, ax=ax, label=value.replace("_", " "))
    ax.set_title(title or f"{value.replace('_', ' ')} per scenario")
    fig.tight_layout()
    _fit_x_labels(fig, ax, resize=owned)
    return fig


#: Pixels kept between neighbouring x tick labels.
_LABEL_GAP_PX = 6
#: A heatmap widens its own figure up to this many inches to fit its x labels; beyond, they turn.
_MAX_WIDTH_IN = 18.0


def _renderer(fig: Any) -> Any:
    """A renderer for `fig` with every artist placed (the figure's own canvas when it has one)."""
    canvas = fig.canvas if hasattr(fig.canvas, "get_renderer") else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    fig.draw(renderer)  # places the tick labels where they will be drawn
    return renderer


def _x_labels_collide(fig: Any, ax: Any) -> tuple[bool, float]:
    """(do neighbouring x tick labels touch or overlap, the widest label in pixels)."""
    renderer = _renderer(fig)
    boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()), key=lambda b: b.x0)
    widest = max((b.width for b in boxes), default=0.0)
    return any(a.x1 + _LABEL_GAP_PX > b.x0 for a, b in itertools.pairwise(boxes)), widest


def _fit_x_labels(fig: Any, ax: Any, *, resize: bool) -> None:
    """Measure the x tick labels once drawn: if neighbours collide, widen a figure the heatmap
    made itself by what each column lacks (up to _MAX_WIDTH_IN); if they still do, or the
    caller owns the figure, stand them upright, where each takes only a line's height of
    width. Estimating text widths from character counts made two long labels run into one
    ("mode=developmentmode=development")."""
    collide, widest = _x_labels_collide(fig, ax)
    n = len(ax.get_xticklabels())
    if collide and resize and n:
        column = ax.get_window_extent(_renderer(fig)).width / n
        extra_in = (widest + 2 * _LABEL_GAP_PX - column) * n / fig.dpi
        width = fig.get_figwidth() + max(extra_in, 0.1) + 0.2
        if width <= _MAX_WIDTH_IN:
            fig.set_size_inches(width, fig.get_figheight())
            fig.tight_layout()
            collide, _ = _x_labels_collide(fig, ax)
    if collide:
        for label in ax.get_xticklabels():
            label.set_rotation(90)
            label.set_horizontalalignment("center")
        fig.tight_layout()


def _sort_key(df: pd.DataFrame, key: str) -> Callable[[pd.Series], pd.Series]:
    numeric = pd.api.types.is_numeric_dtype(df[key]) and not pd.api.types.is_bool_dtype(df[key])

    def sort(labels: pd.Series) -> pd.Series:
        return df.loc[labels.index, key].astype(float) if numeric else labels

    return sort


def _determined(df: pd.DataFrame, a: str, b: str) -> bool:
    """Does one column fix the other (e.g. writes follows interval in a rate grid)?"""
    return bool(df.groupby(a, dropna=False)[b].nunique(dropna=False).max() <= 1
                or df.groupby(b, dropna=False)[a].nunique(dropna=False).max() <= 1)


def _spearman(a: pd.Series, b: pd.Series) -> float:
    """Rank correlation without scipy: Pearson's r of the ranks."""
    return float(a.astype(float).rank().corr(b.astype(float).rank()))


def effect(df: pd.DataFrame, factor: str, value: str = "lost_count") -> str | None:
    """One sentence on how `factor` changes `value`, other varying inputs held fixed; None if it does not vary."""
    if factor not in df.columns:
        raise InputError("factor", f"{factor!r} is not a column")
    if df[factor].nunique(dropna=False) < 2:
        return None
    name = _NAMES.get(factor, factor)
    others = [c for c in _inputs(df) if c != factor and not _determined(df, factor, c)]
    if factor in NUMERIC:
        trends, changed, used = [], False, []
        for _, group in (df.groupby(others, dropna=False) if others else [(None, df)]):
            if group[value].max() <= 0 or group[factor].nunique() < 2:
                continue
            used.append(group)
            if group[value].nunique() > 1:
                changed = True
                trends.append(_spearman(group[factor], group[value]))
        if not used:
            return None
        means = pd.concat(used).groupby(factor)[value].mean()
        if not changed:
            return f"{name.capitalize()} ({factor}) does not change how many nodes are lost."
        r = float(np.nanmean(trends)) if trends else 0.0
        lo, hi = means.index.min(), means.index.max()
        span = f"on average {means[lo]:.3g} at {factor}={_fmt(lo)} against {means[hi]:.3g} at {factor}={_fmt(hi)}"
        if r <= -0.5:
            return f"The smaller {name} ({factor}), the more nodes are lost: {span}."
        if r >= 0.5:
            return f"The larger {name} ({factor}), the more nodes are lost: {span}."
        return f"{name.capitalize()} ({factor}) changes the loss without a clear trend: {span}."
    by = df.groupby(factor, dropna=False)[value].agg(["mean", "count", _lossy])
    by.columns = ["mean", "count", "lossy"]
    parts = [f"{factor}={_fmt(k)}: {int(r.lossy)} of {int(r['count'])} scenarios lost nodes (mean {r['mean']:.3g})"
             for k, r in by.iterrows()]
    return f"{name.capitalize()}: " + "; ".join(parts) + "."


def _lossy(values: pd.Series) -> int:
    """How many scenarios of a group lost nodes."""
    return int((values > 0).sum())


def window_writes(row: Mapping[str, Any] | pd.Series) -> int:
    """Writes made between the deploy and the re-import (deploy_at_s + resync_delay_s): the deploy window."""
    s = {**SCENARIO_DEFAULTS, **{k: v for k, v in row.items() if k in SCENARIO_DEFAULTS}}
    at = s["deploy_at_s"]
    if at is None or (isinstance(at, float) and math.isnan(at)):
        return 0
    end = at + s["resync_delay_s"]
    return sum(1 for i in range(int(s["writes"])) if at <= i * s["interval_s"] < end)


def conclusion(df: pd.DataFrame) -> str:
    """What the sweep shows, in plain language, computed from its rows."""
    if not isinstance(df, pd.DataFrame) or "lost_count" not in df.columns:
        raise InputError("df", "must be a sweep() result (a DataFrame with lost_count)")
    if df.empty:
        raise InputError("df", "no scenarios to conclude from")
    df = _complete(df)
    lossy = df[df["lost_count"] > 0]
    if lossy.empty:
        lines = [f"No scenario lost a node ({len(df)} scenarios)."]
    else:
        lines = [f"{len(lossy)} of {len(df)} scenarios lost nodes: {int(lossy['lost_count'].sum())} in all, "
                 f"at most {int(lossy['lost_count'].max())} in one scenario."]
        if "orphaned" in lossy.columns and (lossy["orphaned"] == lossy["lost_count"]).all():
            lines.append("Every lost node was orphaned, not deleted: the node count stayed right while the root's "
                         "children list came up short by exactly the lost nodes.")
        lines += [*_choice_lines(df, lossy), *_window_lines(lossy), *_numeric_lines(df)]
    return "\n".join(f"- {line}" for line in lines)


def _choice_lines(df: pd.DataFrame, lossy: pd.DataFrame) -> list[str]:
    """The choices every loss shared, and those under which nothing was lost."""
    needed, safe = [], []
    for key in CATEGORICAL:
        if df[key].nunique(dropna=False) < 2:
            continue
        shared = lossy[key].unique()
        if len(shared) == 1:
            needed.append(f"{key}={_fmt(shared[0])}")
        for v, group in df.groupby(key, dropna=False):
            if (group["lost_count"] == 0).all():
                safe.append(f"{key}={_fmt(v)} ({len(group)} scenarios)")
    lines = []
    if needed:
        lines.append("Every loss happened with " + ", ".join(needed) + ".")
    if safe:
        lines.append("Nothing was lost with " + "; nor with ".join(safe) + ".")
    return lines


def _window_lines(lossy: pd.DataFrame) -> list[str]:
    """Whether the lost count is the number of writes made in the deploy window."""
    match = sum(int(row["lost_count"]) == window_writes(row) for _, row in lossy.iterrows())
    if match == len(lossy):
        return ["In every lossy scenario the number of lost nodes equals the number of writes made between "
                "the deploy and the re-import (deploy_at_s to deploy_at_s + resync_delay_s): the deploy window."]
    if match:
        return [f"In {match} of {len(lossy)} lossy scenarios the lost count equals the writes made in the "
                "deploy window (between the deploy and the re-import)."]
    return []


def _numeric_lines(df: pd.DataFrame) -> list[str]:
    """The effect of each numeric input that varies (and is not derived from one already said)."""
    lines: list[str] = []
    reported: list[str] = []
    for key in NUMERIC:
        if df[key].nunique(dropna=False) < 2 or any(_determined(df, key, k) for k in reported):
            continue  # e.g. writes, when a rate grid derives it from the interval
        sentence = effect(df, key)
        if sentence:
            lines.append(sentence)
            reported.append(key)
    return lines


# ---------------------------------------------------------------------------------------
# Sensitivity: does the report's outcome survive each modelling assumption?

#: Each modelling assumption and the values tried, one at a time, from the report's scenario.
#: (label, scenario key, [(value label, value), ...]); the first value is the kit's default.
ASSUMPTIONS: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...] = (
    ("list encoding", "encoding", (("replace", "replace"), ("diff", "diff"))),
    ("re-import scope", "reimport", (("all", "all"), ("new-values", "new-values"))),
    ("App Services mode", "mode", (("production", "production"), ("development", "development"))),
    ("root at the deploy", "deploy_at_s", (("6 children (deploy 5.5 s)", 5.5), ("empty (deploy 0 s)", 0.0))),
    ("resync delay (s)", "resync_delay_s", (("180", 180.0), ("30", 30.0), ("600", 600.0))),
    ("re-import batch size", "resync_batch_size", (("20", 20), ("1", 1), ("5", 5), ("100", 100))),
    ("device clock skew", "clock_skew_ms", (("0", 0), ("-5 min", -300_000), ("+5 min", 300_000))),
)

#: The report's three observations, as columns of `sensitivity`'s table.
OBSERVATIONS = {
    "post_deploy_notes_lost": "every note written after the deploy lost",
    "loss_minutes_later": "loss a minute or more after the deploy",
    "batches": "re-import batches reach the device",
}


def _writes_after_deploy(s: Mapping[str, Any]) -> int:
    at = s["deploy_at_s"]
    return 0 if at is None else sum(1 for i in range(int(s["writes"])) if i * s["interval_s"] >= at)


def sensitivity(*, processes: int | None = 1, seed: int = 0,
                assumptions: Sequence[tuple[str, str, Sequence[tuple[str, Any]]]] = ASSUMPTIONS) -> pd.DataFrame:
    """One assumption changed at a time from the report's scenario: does its outcome still appear?

    Runs every variant through `sweep` (settling long enough for the re-import to land) and
    judges the report's three observations per row (`OBSERVATIONS`) plus `reproduced`, all
    three at once. Columns: assumption, value, is_default, lost_count, writes_after_deploy,
    first_loss_after_deploy_s, resync_batches, the observations, reproduced.
    """
    scenarios, labels = [], []
    for label, key, values in assumptions:
        if key not in SCENARIO_DEFAULTS:
            raise InputError("assumptions", f"{key!r} is not a scenario key")
        for n, (value_label, value) in enumerate(values):
            scenario = {key: value, "seed": seed}
            delay = value if key == "resync_delay_s" else SCENARIO_DEFAULTS["resync_delay_s"]
            scenario["settle_s"] = max(SCENARIO_DEFAULTS["settle_s"], float(delay) + 120.0)  # let the re-import land
            scenarios.append(scenario)
            labels.append((label, value_label, n == 0))
    rows = sweep(scenarios, processes=processes, progress=False)
    out: list[dict[str, Any]] = []
    for (label, value_label, default), (_, row) in zip(labels, rows.iterrows()):
        s: dict[Any, Any] = {**SCENARIO_DEFAULTS, **row.to_dict()}
        after = _writes_after_deploy(s)
        delay = row["first_loss_at_s"] - s["deploy_at_s"] if pd.notna(row["first_loss_at_s"]) else math.nan
        observed = {
            "post_deploy_notes_lost": bool(after and int(row["lost_count"]) == after),
            "loss_minutes_later": bool(np.isfinite(delay) and delay >= 60.0),
            "batches": bool(row["resync_batches"] > 0),
        }
        out.append({"assumption": label, "value": value_label, "is_default": default,
                    "lost_count": int(row["lost_count"]), "writes_after_deploy": after,
                    "first_loss_after_deploy_s": delay, "resync_batches": int(row["resync_batches"]),
                    **observed, "reproduced": all(observed.values())})
    return pd.DataFrame(out)


def sensitivity_figure(table: pd.DataFrame, *, ax: Any = None) -> Any:
    """A grid: one row per assumption value, one column per observation, green when it appears."""
    columns = [*OBSERVATIONS, "reproduced"]
    missing = [c for c in ["assumption", "value", "lost_count", "writes_after_deploy", *columns]
               if c not in table.columns]
    if missing:
        raise InputError("table", f"not a sensitivity() result (missing {', '.join(missing)})")
    if table.empty:
        raise InputError("table", "no rows to plot")
    if ax is None:
        fig = Figure(figsize=(9.5, 0.42 * len(table) + 1.9))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    data = table[columns].to_numpy(dtype=float)
    ax.imshow(data, cmap=ListedColormap(["#f3c9c3", "#b9e2c2"]), vmin=0, vmax=1, aspect="auto")
    headers = [OBSERVATIONS[c] for c in OBSERVATIONS] + ["the report's outcome"]
    ax.set_xticks(range(len(columns)), [textwrap.fill(h, 20) for h in headers], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(table)), [f"{a}: {v}" + (" (default)" if d else "")
                                      for a, v, d in zip(table["assumption"], table["value"], table["is_default"])],
                  fontsize=8)
    row: Any  # a row's fields are whatever the table holds
    for i, row in enumerate(table.itertuples(index=False)):
        for j, col in enumerate(columns):
            yes = bool(getattr(row, col))
            text = "yes" if yes else "no"
            if col == "post_deploy_notes_lost":
                text += f" ({row.lost_count} of {row.writes_after_deploy})"
            elif col == "loss_minutes_later" and np.isfinite(row.first_loss_after_deploy_s):
                text += f" ({row.first_loss_after_deploy_s:.0f} s)"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, weight="bold" if col == "reproduced" else None)
    for i in range(1, len(table)):
        if table["assumption"].iloc[i] != table["assumption"].iloc[i - 1]:
            ax.axhline(i - 0.5, color="white", lw=3)
    ax.set_title("Does the report's outcome survive each modelling assumption?", fontsize=10, pad=28)
    fig.tight_layout()
    return fig


def _what_differs(row: Mapping[str, Any] | pd.Series) -> list[str]:
    """Each of the report's observations a sensitivity row lacks, said with its own numbers."""
    lost, after = int(row["lost_count"]), int(row["writes_after_deploy"])
    notes = "note" if after == 1 else "notes"
    out = []
    if not row["post_deploy_notes_lost"]:
        if lost == 0:
            out.append(f"none of the {after} {notes} written after the deploy was lost" if after
                       else "no note was written after the deploy, and none was lost")
        elif lost < after:
            out.append(f"only {lost} of the {after} {notes} written after the deploy were lost")
        else:
            out.append(f"{lost} notes were lost, not the {after} written after the deploy")
    if not row["loss_minutes_later"] and lost:
        delay = row["first_loss_after_deploy_s"]
        out.append(f"the loss showed {delay:.0f} s after the deploy, under a minute" if pd.notna(delay)
                   else "when the loss showed is not recorded")
    if not row["batches"]:
        out.append("no re-import batch reached the device")
    return out


def sensitivity_summary(table: pd.DataFrame) -> str:
    """Which assumption values keep the report's outcome and which lose it, from the table's rows."""
    if not isinstance(table, pd.DataFrame) or "reproduced" not in table.columns:
        raise InputError("table", "must be a sensitivity() result")
    kept = table[table["reproduced"]]
    lost = table[~table["reproduced"]]
    lines = [f"The report's outcome (every note written after the deploy lost, a minute or more later, after "
             f"re-import batches) appears in {len(kept)} of {len(table)} variants."]
    for _, row in lost.iterrows():
        lines.append(f"With {row['assumption']} = {row['value']} it does not: {'; '.join(_what_differs(row))}.")
    robust = [str(a) for a, group in table.groupby("assumption", sort=False) if group["reproduced"].all()]
    if robust:
        lines.append("It does not depend on: " + ", ".join(robust) + ".")
    return "\n".join(f"- {line}" for line in lines)
