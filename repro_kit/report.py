"""The bug-report bundle: report.json (DESIGN.md keys, exactly), a report.md a person
pastes into a GitHub issue, with the timeline image beside it, and report.html, the same
report as one page that opens offline (`_report_html`).

Only whitelisted meta keys are reported, and parameter values go through the same
redaction as the recorder, so credentials never reach a report.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from repro_kit._checks import InputError
from repro_kit._redaction import is_secret_key, redact

from ._timeline import acknowledged_adds
from .causes import Explanation
from .findings import Analysis, as_analysis
from .recording import Run

__all__ = ["REPORT_KEYS", "build_report", "write_report", "render_markdown", "embed_images"]

REPORT_KEYS = (
    "backend", "mode", "encoding", "writes", "deploy_at_s", "nodes_created", "nodes_total",
    "root_children", "atlas_nodes_total", "atlas_root_children", "orphaned", "lost_count",
    "first_loss_at_s", "resync_batches", "valid", "verdict", "inconclusive_reason", "causes",
)
# meta keys a report may quote; anything else (user ids, URIs, keys) stays in the run dir
_META_WHITELIST = (
    "backend", "mode", "encoding", "reimport", "tree", "writes", "interval_s", "deploy_at_s", "settle_s", "seed",
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


def build_report(run: Run | Analysis) -> dict[str, Any]:
    """report.json's content: exactly REPORT_KEYS, in that order (device view unless 'atlas_')."""
    a = as_analysis(run)
    verdict = a.verdict
    counts = a.final_counts
    device = counts.get("device", {})
    atlas = counts.get("atlas", {})
    meta = a.meta
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
        "valid": verdict.valid,
        "verdict": verdict.outcome,
        "inconclusive_reason": verdict.inconclusive_reason if verdict.outcome == "inconclusive" else None,
        "causes": [c.as_dict() for c in verdict.causes],
    }
    return report


# ---------------------------------------------------------------------------------------
# Markdown


def _md(value: Any) -> str:
    """A table-cell-safe rendering: never "None" or "nan" (an unknown shows as a dash)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
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
    for key, value in sorted(redact(params).items()):
        if is_secret_key(str(key)) or isinstance(value, (dict, list)):
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
        shown = json.dumps(redact(value), sort_keys=True, default=str) if value is not None else None
        rows.append([f"{t:.2f}", f, typ, shown and f"`{shown}`"])
    return rows


def _causes_lines(a: Analysis) -> list[str]:
    """"Why these nodes were lost": the grouped causes, then one line per node."""
    verdict = a.verdict
    lines = ["", "## Why these nodes were lost", ""]
    if not a.trace_available:
        backend = f" ({a.meta['backend']})" if a.meta.get("backend") is not None else ""
        lines += [f"This backend{backend} cannot see the sync server's merge, so the run holds no "
                  "trace to explain the loss from; `repro-kit run` on the emulator records one."]
        return lines
    for cause in verdict.causes:
        lines.append(f"- **{cause.describe()}.**")
    if verdict.unexplained:
        lines.append(f"- **{len(verdict.unexplained)} nodes unexplained:** the trace shows no instruction that "
                     "removed them (nothing is guessed).")
    lines += [""]
    rows = [_cause_row(i, exp) for i, exp in enumerate(a.explanations(), 1)]
    lines += _table(["#", "node id", "rule", "discarding instruction", "what it discarded"], rows)
    first = next((e for e in a.explanations() if e.explained), None)
    if first is not None:
        lines += ["", f"The chain for node `{first.node_id}`, from the recording:", "", "```text",
                  *(str(step) for step in first.steps), "```"]
    return lines


def _cause_row(i: int, exp: Explanation) -> list[Any]:
    """One lost node's line of the causes table: the rule, the instruction, what it discarded."""
    if exp.cause is None:
        return [i, f"`{exp.node_id}`", "unexplained", "–", "–"]
    where = (exp.discard or {}).get("instruction_in")
    version = exp.cause.changeset.get("version")
    instruction = f"{exp.cause.changeset.get('instruction')}" + (
        f" in version {version}" if version is not None else "")
    discarded = f"its ArrayInsert from version {where}" if isinstance(where, int) else "its unacknowledged ArrayInsert"
    return [i, f"`{exp.node_id}`", f"`{exp.cause.rule}`", instruction, discarded]


def render_markdown(run: Run | Analysis, report: dict[str, Any] | None = None, image: str | None = "timeline.png",
                    sequence_image: str | None = None) -> str:
    """report.md: what a maintainer needs to see the bug, in paste-able GitHub markdown."""
    a = as_analysis(run)
    report = report if report is not None else build_report(a)
    return "\n".join([
        *_head_lines(a, image), *_parameter_lines(a.run.meta), *_view_lines(a),
        *_lost_lines(a, sequence_image), *_appendix_lines(a.run, report),
    ])


def _head_lines(a: Analysis, image: str | None) -> list[str]:
    """The title (the set-up), the verdict, the timeline."""
    meta, verdict = a.run.meta, a.verdict
    setup = ", ".join(str(meta[k]) for k in ("backend", "mode", "encoding") if meta.get(k) is not None)
    lines = ["# Schema-deploy data-loss run" + (f" ({setup})" if setup else ""), ""]
    valid = "null" if verdict.valid is None else str(verdict.valid).lower()
    lines += [f"**Verdict ({verdict.outcome}):** {verdict.summary()} `valid: {valid}`", ""]
    if image:
        lines += [f"![timeline of the run]({image})", ""]
    return lines


def _parameter_lines(meta: dict[str, Any]) -> list[str]:
    """The run's parameters (the whitelisted ones), then the model's, fit to publish."""
    lines = ["## Parameters", ""]
    shown = [[k, "none (no deploy)" if k == "deploy_at_s" and meta[k] is None else meta[k]]
             for k in _META_WHITELIST if k in meta]
    lines += _table(["parameter", "value"], shown) if shown else [
        "Unknown: the run directory has no meta.json (or it names no parameter)."]
    params = _safe_params(meta.get("params"))
    if params:
        lines += ["", "Model/backend parameters:", "", *_table(["parameter", "value"], params)]
    return lines


def _view_lines(a: Analysis) -> list[str]:
    """What each view held at the end, the re-import batches, the deploy window, and why the
    run is inconclusive when it is."""
    verdict, life, counts = a.verdict, a.lifecycle, a.final_counts
    rows = []
    for obs, v in verdict.by_observer.items():
        sub = life[(life["observer"] == obs).to_numpy(bool) & life["acknowledged"].to_numpy(bool)]
        present = int(sub["final_present"].sum())
        rows.append([
            obs, counts.get(obs, {}).get("root_children"), counts.get(obs, {}).get("nodes_total"),
            f"{present} of {len(verdict.acknowledged)}", len(v.lost), len(v.orphaned), len(v.stale),
            None if v.first_loss_at_s is None else round(v.first_loss_at_s, 3),
        ])
    lines = ["", "## What each view held at the end", "", *_table(
        ["view", "root's children", "total nodes", "acknowledged in root's children", "lost", "orphaned",
         f"stale (> {verdict.stale_threshold_s:g} s)", "first loss (s)"],
        rows,
    )]
    if len(a.batches):
        times = [f"{t:.2f}" for t in a.batches["time"]]
        when = times[0] if len(times) == 1 else ", ".join(times[:-1]) + f" and {times[-1]}"
        lines += ["", f"Re-import batches seen by the device: {verdict.batches_phrase()} (at {when} s)."]
    window = a.deploy_window
    if window is not None:
        lines += ["", f"Deploy window (deploy invoked → translation resumed): {window[0]:.2f} s → {window[1]:.2f} s."]
    if verdict.outcome == "inconclusive" or verdict.inconclusive_reason:
        reason = verdict.inconclusive_reason or "the recording cannot show the outcome"
        advice = (" Run longer (`--settle`) to see the re-import's outcome."
                  if "re-import" in reason or "halted" in reason else "")
        lines += ["", f"> **Inconclusive:** {reason}.{advice}"]
    return lines


def _lost_lines(a: Analysis, sequence_image: str | None) -> list[str]:
    """The lost nodes (when acknowledged, when they left the root's children), then why."""
    verdict, life = a.verdict, a.lifecycle
    lines = ["", f"## Lost nodes ({len(verdict.lost)})", ""]
    if not verdict.lost:
        return [*lines, "No node was lost: every acknowledged node is in the root's children at the end."]
    dev = life[(life["observer"] == "device").to_numpy(bool)].set_index("node_id")
    acks = acknowledged_adds(a.run)
    ack = dict(zip(acks["node_id"].astype(str), acks["ack_at"]))
    rows = [[i + 1, f"`{n}`", round(ack[n], 3), _seconds(dev.loc[n, "lost_at"]), bool(dev.loc[n, "doc_exists_at_end"])]
            for i, n in enumerate(verdict.lost)]
    lines += _table(["#", "node id", "acknowledged at (s)", "left the root's children at (s)",
                     "document still exists"], rows)
    lines += _causes_lines(a)
    if sequence_image:
        lines += ["", f"![sequence diagram of one lost node]({sequence_image})"]
    return lines


def _appendix_lines(run: Run, report: dict[str, Any]) -> list[str]:
    """The control plane's operations, the versions, report.json, and notes on a partial run."""
    meta = run.meta
    lines: list[str] = []
    nemesis = _nemesis_rows(run)
    if nemesis:
        lines += ["", "## Control-plane operations", "", *_table(["time (s)", "op", "type", "value"], nemesis)]
    versions = meta.get("versions") if isinstance(meta.get("versions"), dict) else {}
    if versions:
        rows = [[k, v] for k, v in sorted(versions.items())]
        lines += ["", "## Versions", "", *_table(["component", "version"], rows)]
    lines += ["", "<details><summary>report.json</summary>", "", "```json",
              json.dumps(report, indent=2), "```", "", "</details>", ""]
    if run.warnings or not meta.get("finished", False):
        notes = list(run.warnings) + ([] if meta.get("finished", False) else ["the run did not finish (partial run)"])
        lines += ["> Note: " + "; ".join(notes), ""]
    name = run.path.name if run.path is not None else "(in memory)"
    lines += [f"Times are seconds since run start. Generated by repro_kit from run `{name}`.", ""]
    return lines


def write_report(run: Run | Analysis | str | os.PathLike[str],
                 out_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Write report.json, report.md, report.html (one self-contained page: the interactive
    timeline, the causes, the sequence diagram; it opens offline), timeline.png and
    timeline.svg (and, when a lost node is explained, sequence.png and sequence.svg) into
    `out_dir` (default: the run directory). `run` may also be a run directory's path.
    Returns {"json", "md", "html", "png", "svg"[, "sequence_png", "sequence_svg"]} -> path."""
    # figures only (every number comes from the analysis); matplotlib takes ~0.7 s to import
    # (python -X importtime), which build_report and render_markdown alone do not need
    from . import _report_html, plots  # noqa: PLC0415

    a = as_analysis(run)
    where = out_dir if out_dir is not None else a.run.path
    if where is None:
        raise InputError("out_dir", "an in-memory run has no directory; name one")
    out = Path(where)
    if out.exists() and not out.is_dir():
        raise InputError("out_dir", f"{out} is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(a)
    png, svg = plots.export(plots.timeline_figure(a), out / "timeline", formats=("png", "svg"))
    paths = {"json": out / "report.json", "md": out / "report.md", "png": png, "svg": svg}
    explained = next((e for e in a.explanations() if e.explained), None) if a.verdict.lost else None
    sequence = None
    if explained is not None:
        sequence_png, sequence_svg = plots.export(plots.sequence_diagram(a, explained.node_id), out / "sequence",
                                                  formats=("png", "svg"))
        paths["sequence_png"], paths["sequence_svg"] = sequence_png, sequence_svg
        sequence = sequence_png.name
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(a, report, image=png.name, sequence_image=sequence), encoding="utf-8")
    svg_bytes = paths["sequence_svg"].read_bytes() if "sequence_svg" in paths else None
    paths["html"] = out / "report.html"
    paths["html"].write_text(_report_html.render_html(a, report, svg_bytes), encoding="utf-8")
    return paths


_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")


def embed_images(markdown: str, folder: str | os.PathLike[str]) -> str:
    """`markdown` with its relative PNG links inlined as data URIs, so a notebook displaying a
    report.md from another folder shows its images (JupyterLab resolves links against the
    notebook's folder). Links that are absolute, remote or missing are left as they are."""
    base = Path(folder)

    def inline(match: re.Match[str]) -> str:
        alt, target = match.group(1), match.group(2)
        if "://" in target or target.startswith("/"):
            return match.group(0)
        path = base / target
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"![{alt}](data:image/png;base64,{data})"

    return _IMAGE.sub(inline, markdown)
