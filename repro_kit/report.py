"""The bug-report bundle: report.json (DESIGN.md keys, exactly) and a report.md a person
pastes into a GitHub issue, with the timeline image beside it.

Only whitelisted meta keys are reported, and parameter values go through the same
redaction as the recorder, so credentials never reach a report.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .recording import Run, _redact, _SECRET_KEY
from .timeline import Verdict, acknowledged_adds, check, final_counts, lifecycle, resync_batches

__all__ = ["REPORT_KEYS", "build_report", "write_report", "render_markdown"]

REPORT_KEYS = (
    "backend", "mode", "encoding", "writes", "deploy_at_s", "nodes_created", "nodes_total",
    "root_children", "atlas_nodes_total", "atlas_root_children", "orphaned", "lost_count",
    "first_loss_at_s", "resync_batches", "valid",
)
# meta keys a report may quote; anything else (user ids, URIs, keys) stays in the run dir
_META_WHITELIST = (
    "backend", "mode", "encoding", "reimport", "writes", "interval_s", "deploy_at_s", "settle_s", "seed",
    "realtime", "started_at", "duration_s", "finished", "root_id",
)


def _plain(value: Any) -> Any:
    """JSON-safe scalars: numpy -> python, NaN -> None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _seconds(value: Any) -> float | None:
    value = _plain(value)
    return None if value is None else round(float(value), 3)


def build_report(run: Run, verdict: Verdict | None = None) -> dict[str, Any]:
    """report.json's content: exactly REPORT_KEYS, in that order (device view unless 'atlas_')."""
    verdict = verdict if verdict is not None else check(run)
    counts = final_counts(run)
    device = counts.get("device", {})
    atlas = counts.get("atlas", {})
    meta = run.meta
    writes = _plain(meta.get("writes"))
    report = {
        "backend": meta.get("backend"),
        "mode": meta.get("mode"),
        "encoding": meta.get("encoding"),
        "writes": int(writes) if isinstance(writes, (int, float)) and not isinstance(writes, bool) else writes,
        "deploy_at_s": _seconds(meta.get("deploy_at_s")) if isinstance(meta.get("deploy_at_s"), (int, float)) else None,
        "nodes_created": len(verdict.acknowledged),
        "nodes_total": device.get("nodes_total"),
        "root_children": device.get("root_children"),
        "atlas_nodes_total": atlas.get("nodes_total"),
        "atlas_root_children": atlas.get("root_children"),
        "orphaned": [str(n) for n in verdict.orphaned],
        "lost_count": len(verdict.lost),
        "first_loss_at_s": _seconds(verdict.first_loss_at_s),
        "resync_batches": [int(b) for b in verdict.resync_batches],
        "valid": bool(verdict.valid),
    }
    return report


# ---------------------------------------------------------------------------------------
# Markdown


def _md(value: Any) -> str:
    """A table-cell-safe rendering."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return out


def _safe_params(params: Any) -> list[list[Any]]:
    """Emulator/backend parameters fit to publish: scalars only, secrets and URIs' userinfo removed."""
    if not isinstance(params, dict):
        return []
    rows = []
    for key, value in sorted(_redact(params).items()):
        if _SECRET_KEY.search(str(key)) or isinstance(value, (dict, list)):
            continue
        if isinstance(value, str) and ("@" in value or len(value) > 120):
            continue
        rows.append([f"`{key}`", value])
    return rows


def _nemesis_rows(run: Run) -> list[list[Any]]:
    h = run.history
    if h.empty:
        return []
    nem = h[(h["process"].astype(str) == "nemesis").to_numpy(bool)]
    rows = []
    for t, typ, f, value in zip(nem["time"], nem["type"].astype(str), nem["f"].astype(str), nem["value"]):
        shown = json.dumps(_redact(value), sort_keys=True, default=str) if value is not None else None
        rows.append([f"{t:.2f}", f, typ, shown and f"`{shown}`"])
    return rows


def render_markdown(run: Run, verdict: Verdict, report: dict[str, Any], image: str | None = "timeline.png") -> str:
    """report.md: what a maintainer needs to see the bug, in paste-able GitHub markdown."""
    life = lifecycle(run)
    meta = run.meta
    setup = ", ".join(str(meta[k]) for k in ("backend", "mode", "encoding") if meta.get(k) is not None)
    lines = [f"# Schema-deploy data-loss run" + (f" ({setup})" if setup else ""), ""]
    lines += [f"**Verdict:** {verdict.summary()} `valid: {str(verdict.valid).lower()}`", ""]
    if image:
        lines += [f"![timeline of the run]({image})", ""]

    lines += ["## Parameters", ""]
    lines += _table(["parameter", "value"], [[k, meta[k]] for k in _META_WHITELIST if k in meta])
    params = _safe_params(meta.get("params"))
    if params:
        lines += ["", "Model/backend parameters:", ""] + _table(["parameter", "value"], params)

    lines += ["", "## What each view held at the end", ""]
    counts = final_counts(run)
    rows = []
    for obs, v in verdict.by_observer.items():
        sub = life[(life["observer"] == obs).to_numpy(bool) & life["acknowledged"].to_numpy(bool)]
        present = int(sub["final_present"].sum())
        rows.append([
            obs, counts.get(obs, {}).get("root_children"), counts.get(obs, {}).get("nodes_total"),
            f"{present} of {len(verdict.acknowledged)}", len(v.lost), len(v.orphaned), len(v.stale),
            None if v.first_loss_at_s is None else round(v.first_loss_at_s, 3),
        ])
    lines += _table(
        ["view", "root's children", "total nodes", "acknowledged in root's children", "lost", "orphaned",
         f"stale (> {verdict.stale_threshold_s:g} s)", "first loss (s)"],
        rows,
    )
    batches = resync_batches(run)
    if len(batches):
        shown = ", ".join(f"{int(b)} at {t:.2f} s" for t, b in zip(batches["time"], batches["batch"]))
        lines += ["", f"Resync batches seen by the device: {shown}."]
    window = plots.deploy_window(run)
    if window is not None:
        lines += ["", f"Deploy window (deploy invoked → translation resumed): {window[0]:.2f} s → {window[1]:.2f} s."]

    lines += ["", f"## Lost nodes ({len(verdict.lost)})", ""]
    if verdict.lost:
        dev = life[(life["observer"] == "device").to_numpy(bool)].set_index("node_id")
        acks = acknowledged_adds(run)
        ack = dict(zip(acks["node_id"].astype(str), acks["ack_at"]))
        rows = [[i + 1, f"`{n}`", round(ack[n], 3), _seconds(dev.loc[n, "lost_at"]), bool(dev.loc[n, "doc_exists_at_end"])]
                for i, n in enumerate(verdict.lost)]
        lines += _table(["#", "node id", "acknowledged at (s)", "left the root's children at (s)",
                         "document still exists"], rows)
    else:
        lines += ["None: every acknowledged node is in the root's children at the end."]

    nemesis = _nemesis_rows(run)
    if nemesis:
        lines += ["", "## Control-plane operations", ""] + _table(["time (s)", "op", "type", "value"], nemesis)

    versions = meta.get("versions") if isinstance(meta.get("versions"), dict) else {}
    if versions:
        lines += ["", "## Versions", ""] + _table(["component", "version"], [[k, v] for k, v in sorted(versions.items())])

    lines += ["", "<details><summary>report.json</summary>", "", "```json",
              json.dumps(report, indent=2), "```", "", "</details>", ""]
    if run.warnings or not meta.get("finished", False):
        notes = list(run.warnings) + ([] if meta.get("finished", False) else ["the run did not finish (partial run)"])
        lines += ["> Note: " + "; ".join(notes), ""]
    lines += [f"Times are seconds since run start. Generated by repro_kit from run `{run.path.name}`.", ""]
    return "\n".join(lines)


def write_report(run: Run, out_dir: str | os.PathLike[str] | None = None,
                 verdict: Verdict | None = None) -> dict[str, Path]:
    """Write report.json, report.md, timeline.png and timeline.svg into `out_dir` (default:
    the run directory). Returns {"json", "md", "png", "svg"} -> path."""
    out = Path(out_dir) if out_dir is not None else Path(run.path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir is not a directory: {out}")
    out.mkdir(parents=True, exist_ok=True)
    verdict = verdict if verdict is not None else check(run)
    report = build_report(run, verdict)
    png, svg = plots.export(plots.timeline_figure(run, verdict), out / "timeline", formats=("png", "svg"))
    paths = {"json": out / "report.json", "md": out / "report.md", "png": png, "svg": svg}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(run, verdict, report, image=png.name), encoding="utf-8")
    return paths
