"""report.html: the run's report as one self-contained page that opens offline, from file://.

The timeline is an interactive Plotly chart (hover a node's bar for its lifecycle in each view
and, when lost, its cause and causal chain; buttons zoom into the deploy, the deploy window and
the re-import; drag to zoom anywhere), above the cause table and the sequence diagram. Plotly's
own plotly.min.js, from the `plotly` package, is inlined, as are the sequence diagram (SVG, as a
data URI) and the chart's data: the page loads nothing, from no server.

Plotly was chosen over Vega-Lite: its Python package is pure Python and carries the minified
library as a plain file (Vega-Lite's offline bundle needs vl-convert's native binary), and hover,
zoom and pan come built in. Only the file is read; plotly's Python API is not imported.

Every number comes from the one `Analysis` (verdict, intervals, lifecycle, causes, explanations,
deploy window, batches) and the report dict built from it: nothing is recomputed here.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from .causes import changeset_label
from .findings import Analysis
from .plots import BATCH_COLOR, STATE_COLORS, WINDOW_COLOR, _count_series, _short_labels, _x_end

__all__ = ["render_html", "plotly_js"]

#: The chart's element id (the browser test looks it up).
CHART_ID = "timeline"
_COUNT_COLORS = {"root_children": "#1f6fb4", "nodes_total": "#555555"}
_COUNT_NAMES = {"root_children": "root's children", "nodes_total": "total nodes"}
_DASH = {"device": "solid", "atlas": "dash"}


def plotly_js() -> str:
    """plotly.min.js as the installed `plotly` package ships it (no network, no CDN)."""
    try:
        return resources.files("plotly").joinpath("package_data", "plotly.min.js").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:  # pragma: no cover - a broken install
        raise RuntimeError(f"report.html needs the plotly package's plotly.min.js ({exc}); "
                           "pip install 'plotly>=5.5'") from None


def _e(value: Any) -> str:
    return html.escape("–" if value is None else str(value))


def _s(t: Any) -> str:
    """Seconds as shown everywhere in the report."""
    return "–" if t is None or (isinstance(t, float) and math.isnan(t)) else f"{float(t):.2f} s"


def _node_texts(a: Analysis) -> dict[str, str]:
    """Each node's hover text: its lifecycle in every view, and, when lost, cause and chain."""
    verdict = a.verdict
    explanations = {e.node_id: e for e in a.explanations()}
    texts: dict[str, list[str]] = {}
    row: Any  # a row's fields are whatever the frame holds
    for row in a.lifecycle.itertuples(index=False):
        node = str(row.node_id)
        lines = texts.setdefault(node, [])
        if not lines:
            status = ("LOST" + (" (orphaned: document kept)" if node in verdict.orphaned else "")
                      if node in verdict.lost else "kept" if node in verdict.acknowledged else "not acknowledged")
            adds = a._adds.get(node, {})
            lines.append(f"<b>node {html.escape(node)}</b>: {status}")
            if "invoke" in adds or "ok" in adds:
                lines.append(f"written at {_s(adds.get('invoke'))}, acknowledged at {_s(adds.get('ok'))}")
        if pd.isna(row.first_present):
            shown = "never in the root's children"
        else:
            end = "still there at the end" if row.final_present else f"left at {_s(row.lost_at)}"
            shown = f"in the root's children from {_s(row.first_present)}, {end}"
        doc = "document kept" if row.doc_exists_at_end else "document gone"
        lines.append(f"{html.escape(str(row.observer))} view: {shown}; {doc}")
    for node, lines in texts.items():
        exp = explanations.get(node)
        if exp is None:
            continue
        if exp.cause is not None:
            lines.append(f"<b>cause</b>: {html.escape(exp.cause.describe())}")
        else:
            lines.append("<b>cause</b>: unexplained (the trace shows no instruction that removed it)")
        lines.append("<b>chain</b>:")
        lines += [html.escape(str(step).strip()) for step in exp.steps]
    return {node: "<br>".join(lines) for node, lines in texts.items()}


#: The counts panel's share of the chart's height, and the gap above each view's panel.
_COUNTS_H = 0.22
_GAP = 0.04


def _figure(a: Analysis) -> dict[str, Any]:
    """The chart as Plotly's JSON (data, layout): one swimlane panel per view, the counts below."""
    iv = a.intervals
    observers = list(iv["observer"].cat.categories) if len(iv) else ["device"]
    rows = list(dict.fromkeys(iv["node_id"].astype(str).tolist()))
    end_s = _x_end(a)
    n = len(observers)
    data: list[dict[str, Any]] = []
    layout: dict[str, Any] = {
        "height": int(220 + max(len(rows), 1) * 15 * n + 220),
        "margin": {"l": 90, "r": 30, "t": 110, "b": 50},
        "barmode": "overlay",
        "hovermode": "closest",
        "hoverlabel": {"align": "left", "font": {"size": 12}},
        "legend": {"orientation": "h", "x": 0.0, "xanchor": "left", "y": 1.0, "yanchor": "top",
                   "yref": "container"},
        "xaxis": {"title": {"text": "seconds since run start"}, "range": [0, end_s], "anchor": f"y{n + 1}",
                  "showgrid": True},
        "shapes": [],
        "annotations": [],
    }
    lanes = _Lanes(rows, dict(zip(rows, _short_labels(rows))), _node_texts(a), (1 - _COUNTS_H - _GAP * n) / n)
    for k, obs in enumerate(observers, 1):
        data += _lane_panel(a, iv, obs, k, lanes, layout)
    data += _count_panel(a, n, end_s, layout)
    _window_and_batch_marks(a, layout)
    layout["updatemenus"] = [{"type": "buttons", "direction": "right", "x": 1.0, "xanchor": "right", "y": 1.0,
                              "yanchor": "bottom", "pad": {"b": 24}, "showactive": False,
                              "buttons": _zoom_buttons(a, end_s)}]
    return {"data": data, "layout": layout}


@dataclasses.dataclass(frozen=True)
class _Lanes:
    """What every view's panel shares: the nodes in row order, their short labels and hover
    texts, and each panel's height (a fraction of the chart)."""

    rows: list[str]
    label: dict[str, str]
    hover: dict[str, str]
    height: float


def _lane_panel(a: Analysis, iv: pd.DataFrame, obs: str, k: int, lanes: _Lanes,
                layout: dict[str, Any]) -> list[dict[str, Any]]:
    """View number `k`'s swimlanes: its axis and title into `layout`; returns its bars, one trace a state."""
    top = 1 - (k - 1) * (lanes.height + _GAP)
    label, rows = lanes.label, lanes.rows
    lost = set(a.verdict.by_observer[obs].lost) if obs in a.verdict.by_observer else set()
    # lost nodes' labels red, as in timeline.png
    ticks = [f"<span style='color:{STATE_COLORS['absent']}'>{label[r]}</span>" if r in lost else label[r]
             for r in rows]
    layout["yaxis" if k == 1 else f"yaxis{k}"] = {
        "domain": [top - lanes.height, top], "type": "category", "autorange": "reversed",
        "categoryorder": "array", "categoryarray": [label[r] for r in rows],
        "tickvals": [label[r] for r in rows], "ticktext": ticks,
        "tickfont": {"family": "monospace", "size": 10}, "fixedrange": True}
    layout["annotations"].append({"text": f"<b>{html.escape(obs)} view</b>: root's children ({len(lost)} lost)",
                                  "xref": "paper", "yref": "paper", "x": 0, "y": top, "xanchor": "left",
                                  "yanchor": "bottom", "showarrow": False, "font": {"size": 12}})
    bars = _bars(iv[(iv["observer"] == obs).to_numpy(bool)])
    traces = []
    for state, color in STATE_COLORS.items():
        b = bars[(bars["state"] == state).to_numpy(bool)]
        if b.empty:
            continue
        traces.append({
            "type": "bar", "orientation": "h", "name": state, "legendgroup": state, "showlegend": k == 1,
            "marker": {"color": color}, "width": 0.7,
            "y": [label[x] for x in b["node_id"]], "base": b["start"].round(6).tolist(),
            "x": (b["end"] - b["start"]).round(6).tolist(), "xaxis": "x", "yaxis": f"y{'' if k == 1 else k}",
            "customdata": [[x, lanes.hover.get(x, x), f"{state} {s:.2f}–{e:.2f} s"]
                           for x, s, e in zip(b["node_id"], b["start"], b["end"])],
            "hovertemplate": "%{customdata[1]}<br><i>this bar: " + html.escape(obs)
                             + " view, %{customdata[2]}</i><extra></extra>",
        })
    return traces


def _bars(sub: pd.DataFrame) -> pd.DataFrame:
    """One view's intervals as bars (node_id, state, start, end), "not yet known" before each
    node's first; empty bars dropped."""
    firsts = sub.drop_duplicates("node_id")
    parts = [pd.DataFrame({"node_id": firsts["node_id"].astype(str), "state": "not yet known",
                           "start": 0.0, "end": firsts["start"].astype(float)}),
             pd.DataFrame({"node_id": sub["node_id"].astype(str), "state": sub["state"].astype(str),
                           "start": sub["start"].astype(float), "end": sub["end"].astype(float)})]
    bars = pd.concat(parts, ignore_index=True)
    return bars[(bars["end"] > bars["start"]).to_numpy(bool)]


def _count_panel(a: Analysis, n: int, end_s: float, layout: dict[str, Any]) -> list[dict[str, Any]]:
    """The counts below the lanes: its axis into `layout`; returns one step line per view and count."""
    series = _count_series(a)
    cols = [c for c in ("root_children", "nodes_total") if c in series.columns]
    top_count = float(np.nanmax(series[cols].to_numpy(np.float64), initial=0.0)) if len(series) and cols else 0.0
    # headroom above the lines for the batch label
    layout[f"yaxis{n + 1}"] = {"domain": [0, _COUNTS_H], "title": {"text": "count"},
                               "range": [0, max(top_count, 1.0) * 1.3 + 1], "fixedrange": True}
    traces = []
    for obs, grp in series.groupby("observer", observed=True, sort=True):
        for col in cols:
            g = grp[["time", col]].dropna()
            if g.empty:
                continue
            xs = [*g["time"].astype(float).round(6).tolist(), end_s]
            ys = g[col].astype(float).tolist()
            traces.append({"type": "scatter", "mode": "lines",
                           "line": {"shape": "hv", "color": _COUNT_COLORS[col], "dash": _DASH.get(str(obs), "dot")},
                           "name": f"{obs}: {_COUNT_NAMES[col]}", "x": xs, "y": [*ys, *ys[-1:]],
                           "xaxis": "x", "yaxis": f"y{n + 1}",
                           "hovertemplate": f"{html.escape(str(obs))}: {_COUNT_NAMES[col]} %{{y}} at %{{x:.2f}} s"
                                            "<extra></extra>"})
    return traces


def _window_and_batch_marks(a: Analysis, layout: dict[str, Any]) -> None:
    """The deploy window shaded, each re-import batch a dotted line, and the batches in words."""
    window = a.deploy_window
    if window is not None:
        layout["shapes"].append({"type": "rect", "xref": "x", "yref": "paper", "x0": window[0], "x1": window[1],
                                 "y0": 0, "y1": 1, "fillcolor": WINDOW_COLOR, "opacity": 0.25, "line": {"width": 0},
                                 "layer": "below"})
    for t in a.batches["time"].astype(float):
        layout["shapes"].append({"type": "line", "xref": "x", "yref": "paper", "x0": t, "x1": t, "y0": 0, "y1": 1,
                                 "line": {"color": BATCH_COLOR, "dash": "dot", "width": 1.5}})
    if len(a.batches):
        layout["annotations"].append({"text": html.escape(a.verdict.batches_phrase()) + " reached the device",
                                      "xref": "x", "yref": "paper", "x": float(a.batches["time"].iloc[-1]),
                                      "y": _COUNTS_H, "xanchor": "left", "yanchor": "top", "showarrow": False,
                                      "font": {"size": 11, "color": BATCH_COLOR}})


def _zoom_buttons(a: Analysis, end_s: float) -> list[dict[str, Any]]:
    """Whole run; the deploy window; seconds around the deploy and around the re-import."""
    def view(label: str, lo: float, hi: float) -> dict[str, Any]:
        return {"label": label, "method": "relayout",
                "args": [{"xaxis.range": [round(max(lo, 0.0), 3), round(min(hi, end_s), 3)], "xaxis.autorange": False}]}

    buttons = [view("whole run", 0.0, end_s)]
    window = a.deploy_window
    if window is not None:
        span = max(window[1] - window[0], 1.0)
        buttons.append(view("deploy window", window[0] - 0.05 * span, window[1] + 0.05 * span))
        buttons.append(view("the deploy (±10 s)", window[0] - 10.0, window[0] + 10.0))
    if len(a.batches):
        first, last = float(a.batches["time"].min()), float(a.batches["time"].max())
        buttons.append(view("the re-import (±2 s)", first - 2.0, last + 2.0))
    return buttons


def _cause_tables(a: Analysis) -> str:
    verdict = a.verdict
    if not verdict.lost:
        return "<p>Nothing was lost: every acknowledged node is in the root's children at the end.</p>"
    if not a.trace_available:
        return (f"<p>This backend ({_e(a.meta.get('backend'))}) cannot see the sync server's merge, so the run "
                "holds no trace to explain the loss from.</p>")
    out = ["<table class='causes'><thead><tr><th>nodes</th><th>rule</th><th>discarding instruction</th>"
           "<th>carried by</th></tr></thead><tbody>"]
    for cause in verdict.causes:
        out.append(f"<tr><td>{len(cause.nodes)}</td><td><code>{_e(cause.rule)}</code></td>"
                   f"<td><code>{_e(cause.changeset.get('instruction'))}</code></td>"
                   f"<td>{_e(changeset_label(cause.changeset))}</td></tr>")
    if verdict.unexplained:
        out.append(f"<tr><td>{len(verdict.unexplained)}</td><td colspan='3'>unexplained: the trace shows no "
                   "instruction that removed them (nothing is guessed)</td></tr>")
    out.append("</tbody></table>")
    out.append("<table class='nodes'><thead><tr><th>#</th><th>node id</th><th>rule</th><th>discarding "
               "instruction</th><th>what it discarded</th><th>left the root's children (device)</th></tr>"
               "</thead><tbody>")
    life = a.lifecycle
    dev = life[(life["observer"].astype(str) == "device").to_numpy(bool)].set_index("node_id")
    for i, exp in enumerate(a.explanations(), 1):
        lost_at = _s(dev.loc[exp.node_id, "lost_at"]) if exp.node_id in dev.index else "–"
        if exp.cause is None:
            out.append(f"<tr><td>{i}</td><td><code>{_e(exp.node_id)}</code></td><td colspan='3'>unexplained</td>"
                       f"<td>{lost_at}</td></tr>")
            continue
        where = (exp.discard or {}).get("instruction_in")
        what = f"its ArrayInsert from version {where}" if isinstance(where, int) else "its unacknowledged ArrayInsert"
        out.append(f"<tr><td>{i}</td><td><details><summary><code>{_e(exp.node_id)}</code></summary><pre>"
                   f"{_e(str(exp))}</pre></details></td><td><code>{_e(exp.cause.rule)}</code></td>"
                   f"<td>{_e(exp.cause.changeset.get('instruction'))} in version "
                   f"{_e(exp.cause.changeset.get('version'))}</td><td>{_e(what)}</td><td>{lost_at}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: #1f2d3d; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.verdict { padding: .7em 1em; border-radius: 6px; background: #fdecea; border-left: 6px solid #d7301f; }
.verdict.clean { background: #e8f5ec; border-color: #2e9e4f; }
.verdict.inconclusive { background: #fff6e0; border-color: #f5c542; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #d5dbe3; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #eef2f7; }
pre { font-size: .85em; white-space: pre-wrap; margin: .3em 0; }
.hint { color: #555; font-size: .92em; }
img.sequence { max-width: 100%; border: 1px solid #d5dbe3; }
"""


def render_html(a: Analysis, report: dict[str, Any], sequence_svg: bytes | None = None) -> str:
    """The page: verdict, the interactive timeline, the cause tables, the sequence diagram.

    `report` is report.json's content (`report.build_report(a)`); `sequence_svg` the sequence
    diagram's SVG bytes, inlined as a data URI (None: no lost node was explained)."""
    verdict = a.verdict
    fig = _figure(a)
    # JSON inside <script>: "</" would end the element early
    spec = json.dumps(fig, separators=(",", ":"), default=_json_default).replace("</", "<\\/")
    setup = ", ".join(str(report[k]) if k != "encoding" else f"encoding={report[k]}"
                      for k in ("backend", "mode", "encoding") if report.get(k) is not None)
    params = [("writes", report.get("writes")), ("deploy at (s)", report.get("deploy_at_s")),
              ("nodes created", report.get("nodes_created")), ("lost", report.get("lost_count")),
              ("first loss at (s)", report.get("first_loss_at_s")),
              ("re-import", verdict.batches_phrase()),
              ("device: root's children / total nodes", f"{report.get('root_children')} / {report.get('nodes_total')}"),
              ("Atlas: root's children / total nodes",
               f"{report.get('atlas_root_children')} / {report.get('atlas_nodes_total')}")]
    window = a.deploy_window
    if window is not None:
        params.append(("deploy window (deploy invoked → translation resumed)",
                       f"{window[0]:.2f} s → {window[1]:.2f} s"))
    if sequence_svg:
        data = base64.b64encode(sequence_svg).decode("ascii")
        sequence = (f"<img class='sequence' alt='sequence diagram of one lost node' "
                    f"src='data:image/svg+xml;base64,{data}'>")
    else:
        sequence = "<p>No lost node to draw.</p>"
    name = a.run.path.name if a.run.path is not None else "(in memory)"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Schema-deploy data-loss run ({_e(setup)})</title>
<style>{_CSS}</style>
<script>{plotly_js()}</script>
</head>
<body>
<h1>Schema-deploy data-loss run ({_e(setup)})</h1>
<p class="verdict {_e(verdict.outcome)}"><b>Verdict ({_e(verdict.outcome)}):</b> {_e(verdict.summary())}</p>
<table class="params"><tbody>
{"".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in params)}
</tbody></table>
<h2>Timeline</h2>
<p class="hint">One row per node (acknowledgement order), one panel per view of the root's children: green while
the node is in it, red once it has left, grey before the view knew the node. The shaded band is the deploy
window (translation halted); dotted lines are re-import batches reaching the device. Hover a bar for the
node's lifecycle and, for a lost node, its cause and causal chain; drag to zoom, double-click to reset, or use
the buttons to zoom into the deploy, the deploy window or the re-import.</p>
<div id="{CHART_ID}"></div>
<h2>Why these nodes were lost</h2>
{_cause_tables(a)}
<h2>Sequence diagram of one lost node</h2>
{sequence}
<p class="hint">Times are seconds since run start. Generated by repro_kit from run <code>{_e(name)}</code>;
the figures are drawn from this page alone (no network).</p>
<script>
(function () {{
  var fig = {spec};
  Plotly.newPlot("{CHART_ID}", fig.data, fig.layout,
                 {{displaylogo: false, responsive: true, scrollZoom: false}});
}})();
</script>
</body>
</html>
"""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
