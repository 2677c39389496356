"""Speed and scale figures of repro_kit, each printed beside its target (issue 6).

`python -m benchmarks` (or `make bench`) runs every figure, prints a table and writes
`benchmarks/results.json`. Each module has `run(**sizes) -> list[dict]` (rows made by
`row`) and `SMOKE`, tiny sizes that `tests/test_benchmarks_smoke.py` runs so the
benchmarks cannot rot. Figures are ratios or rates, never bare timings to compare
across machines without their target.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["row", "format_table", "write_results", "ROW_KEYS", "MODULES", "COMPILED_DIR", "build_in_use"]

#: Benchmark modules in the order `python -m benchmarks` runs them.
MODULES = ("virtual_time", "sweep_scenarios", "scale", "fleet_users", "analysis", "fresh_process", "realtime")

ROW_KEYS = ("figure", "value", "unit", "target", "met", "details")
#: Where `make compiled` and `python -m benchmarks` keep the compiled build (`repro_kit._compiled`).
COMPILED_DIR = Path(__file__).resolve().parent.parent / "build" / "compiled"


def build_in_use() -> str:
    """"compiled (mypyc)" when this process's repro_kit takes its modules from a compiled build
    (`REPRO_KIT_COMPILED`), else "pure Python" (the reference)."""
    from repro_kit import _compiled  # noqa: PLC0415 - imported when asked: the harness loads the kit late

    return "compiled (mypyc)" if _compiled.active() else "pure Python"


def row(figure: str, value: float | None, unit: str, target: str, met: bool | None, **details: Any) -> dict[str, Any]:
    """One line of the table. `met` is None for a figure without a target (e.g. growth rows)."""
    return {"figure": figure, "value": value, "unit": unit, "target": target, "met": met, "details": details}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def format_table(rows: list[dict[str, Any]]) -> str:
    """figure | measured | target | met, as aligned plain text."""
    cells = [("figure", "measured", "target", "met")]
    for r in rows:
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        cells.append((r["figure"], _fmt(r["value"], r["unit"]), r["target"], met))
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "build": build_in_use()}


def write_results(rows: list[dict[str, Any]], path: str | Path) -> Path:
    p = Path(path)
    p.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2, default=str) + "\n", encoding="utf-8")
    return p
