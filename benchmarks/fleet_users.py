"""A production-sized user base through one deploy: growth by users, not by devices of one user.

Each size: `users` users with 1 device each and 20 notes each beforehand, one write per second
each for 20 s, a deploy at 5.5 s, settled until the re-import is done and every view agrees
(`repro_kit.fleet`, recording and report included), in its own process so its peak memory is
its own. Figures: wall seconds and peak memory of 10,000 users (targets < 30 s, < 1.5 GiB), and
the growth table 100 / 1,000 / 10,000 users as microseconds of wall time per write, whose
largest-to-smallest ratio must stay within 2x of linear. Measuring the compiled build, the largest
fleet is measured again in pure Python, the reference, beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import build_in_use, row

SMOKE: dict[str, Any] = {"sizes": (10, 20), "budget_s": 300.0}
TARGET_S = 30.0
TARGET_MIB = 1536.0
LINEAR_WITHIN = 2.0

_CHILD = """
import json, sys, tempfile, time
from pathlib import Path
from repro_kit.fleets import fleet
users = int(sys.argv[1])
with tempfile.TemporaryDirectory(prefix="repro-kit-fleet-") as tmp:
    started = time.perf_counter()
    a = fleet(users=users, notes_per_user=20, writes_per_user=20, write_every_s=1.0, deploy_at_s=5.5,
              out=Path(tmp) / "run", progress=False)
    wall = time.perf_counter() - started
    figures = a.figures()
peak = 0.0
try:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
except OSError:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"users": users, "wall_s": wall, "peak_mib": peak, **figures}))
"""


def _measure(users: int, budget_s: float, pure: bool = False) -> dict[str, Any]:
    """One fleet in its own process: this process's build, or pure Python (`pure`)."""
    from repro_kit import _compiled  # noqa: PLC0415 - loaded with the build the harness chose

    env = {k: v for k, v in os.environ.items() if not (pure and k == _compiled.ENV)}
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(users)], capture_output=True, text=True,
                              timeout=budget_s, cwd=Path(__file__).resolve().parent.parent, env=env)
    except subprocess.TimeoutExpired:
        return {"users": users, "over_budget": True, "wall_s": time.perf_counter() - started}
    if proc.returncode != 0:
        return {"users": users, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(sizes: tuple[int, ...] = (100, 1_000, 10_000), budget_s: float = 600.0) -> list[dict[str, Any]]:
    rows, per_write = [], {}
    for users in sizes:
        r = _measure(users, budget_s)
        if "error" in r or r.get("over_budget"):
            rows.append(row(f"fleet: {users:,} users", None, "s", "error" if "error" in r else "over budget", False, **r))
            continue
        writes = users * 20
        per_write[users] = 1e6 * r["wall_s"] / writes
        rows.append(row(f"fleet growth: {users:,} users, per write", per_write[users], "us",
                        "", None, **r))
    largest = max(sizes)
    top = next((r for r in rows if r["details"].get("users") == largest and "wall_s" in r["details"]
                and "error" not in r["details"]), None)
    if top is not None and not top["details"].get("over_budget"):
        d = top["details"]
        rows.append(row(f"fleet: {largest:,} users through one deploy, wall", d["wall_s"], "s",
                        f"< {TARGET_S:.0f} s, converged", d["wall_s"] < TARGET_S and bool(d.get("converged")), **d))
        rows.append(row(f"fleet: {largest:,} users, peak memory", d["peak_mib"], "MiB", f"< {TARGET_MIB:,.0f} MiB",
                        d["peak_mib"] < TARGET_MIB))
        if build_in_use() != "pure Python":  # the reference beside the compiled build's figure (no target)
            ref = _measure(largest, budget_s, pure=True)
            if "wall_s" in ref and "error" not in ref and not ref.get("over_budget"):
                rows.append(row(f"fleet: {largest:,} users, wall, pure Python (the reference)", ref["wall_s"], "s",
                                "", None, **ref))
            else:
                rows.append(row(f"fleet: {largest:,} users, pure Python (the reference)", None, "s", "", None, **ref))
    if len(per_write) >= 2:
        smallest = min(per_write)
        ratio = per_write[max(per_write)] / per_write[smallest]
        rows.append(row(f"fleet: cost per write, {max(per_write):,} vs {smallest:,} users", ratio, "x",
                        f"<= {LINEAR_WITHIN:g}x (linear)", ratio <= LINEAR_WITHIN, per_write_us=per_write))
    return rows
