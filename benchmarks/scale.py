"""Many devices of one owner appending to the same root through a deploy.

Each of `devices` devices writes `writes` nodes, one every `interval_s` (devices
staggered evenly within the interval); the schema deploy lands a quarter of the way
through and the resync comes `resync_delay_s` later, before the writes end. The run
must converge: every device, the server and Atlas agree on the root's children; with
`encoding="replace"` exactly the nodes written inside the deploy window are lost and
every other node survives; with "diff" nothing is lost.

Figures: wall time of 100 devices x 100 nodes (target < 3 s), and the growth table
10 / 100 / 1,000 devices, each in its own process under a wall budget (a size over the
budget is reported as such rather than waited for). The run settles until the re-import has
ended and the queues have drained (bounded), however long the owner's collection makes it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import row

SMOKE: dict[str, Any] = {"devices": 3, "writes": 8, "growth": (2, 3), "budget_s": 120.0, "encodings": ("replace", "diff")}
TARGET_S = 3.0
#: Margin around the deploy window within which a node may go either way (latency, translator lag).
MARGIN_S = 1.0


def scenario(devices: int, writes: int, encoding: str = "replace", interval_s: float = 1.0, seed: int = 1) -> dict[str, Any]:
    """Run one size in this process; returns its figures. Raises AssertionError if it did not converge."""
    return scenario_session(devices, writes, encoding, interval_s, seed)[1]


def scenario_session(devices: int, writes: int, encoding: str = "replace", interval_s: float = 1.0, seed: int = 1
                     ) -> tuple[Any, dict[str, Any]]:
    """`scenario`, returning the session too (its final state: `benchmarks.outcomes`)."""
    from repro_kit.client import connect
    from repro_kit.emulator import session as _emulator  # noqa: F401  (loaded before the clock: the model's
    #                                                      import is the fresh-process figure's, not the scale's)

    span = writes * interval_s
    deploy_at = round(0.25 * span, 3)
    delay = round(0.3 * span, 3)
    started = time.perf_counter()
    session = connect(mode="production", encoding=encoding, seed=seed, resync_delay_s=delay)
    with session.world.uninterrupted():  # the collector paused between waits too (EmulatedWorld)
        return session, _drive(session, devices, writes, encoding, interval_s, started, deploy_at, delay)


def _drive(session: Any, devices: int, writes: int, encoding: str, interval_s: float, started: float,
           deploy_at: float, delay: float) -> dict[str, Any]:
    span = writes * interval_s
    devs = [session.device] + [session.add_device() for _ in range(devices - 1)]
    t0 = session.now() + 1.0
    schedule = sorted([(t0 + k * interval_s + j * interval_s / devices, 0, j) for k in range(writes) for j in range(devices)]
                      + [(t0 + deploy_at, 1, -1)])
    written: dict[str, float] = {}
    for at, kind, j in schedule:
        session.wait_until(at)
        if kind:
            session.deploy_schema_change("tags", "array<string>")
        else:
            written[devs[j].add_to_root(f"d{j} n{len(written)}")] = at - t0
    # Settle until the re-import has ended and every queue has drained: the re-import takes
    # longer the more documents the owner has, so a fixed wait would cut large runs short.
    bound = t0 + span + deploy_at + delay + SETTLE_BOUND_S
    while session.now() < bound and not (session.settled() and session.now() > t0 + deploy_at):
        session.wait_until(min(bound, session.now() + 5.0))
    wall = time.perf_counter() - started
    assert session.settled(), f"not settled within {SETTLE_BOUND_S:.0f} s after the resync began"

    root = session.device.root_id()
    views = {tuple(d.visible_children(d.root_id())) for d in devs}
    server_nodes = session.server.state["Node"]
    server_view = tuple(c for c in server_nodes[root]["children"] if c in server_nodes)
    atlas_root = session.collection.get(root)
    atlas_view = tuple(atlas_root["children"]) if atlas_root else ()
    assert len(views) == 1, f"{len(views)} different device views of the root's children"
    (device_view,) = views
    assert device_view == server_view, "the devices and the server disagree"
    assert device_view == atlas_view, "Atlas and the server disagree"
    assert all(len(d.owned_ids()) == len(written) + 1 for d in devs), "a device lacks node documents"
    present = set(device_view)
    lost = {pk: t for pk, t in written.items() if pk not in present}
    window = (deploy_at - MARGIN_S, deploy_at + delay + MARGIN_S)
    outside = [t for t in lost.values() if not window[0] <= t <= window[1]]
    assert not outside, f"{len(outside)} nodes lost outside the deploy window {window}"
    if encoding == "replace":
        inside = [pk for pk, t in written.items() if window[0] + 2 * MARGIN_S <= t <= window[1] - 2 * MARGIN_S]
        assert inside and all(pk in lost for pk in inside), "a node written inside the deploy window survived"
    else:
        assert not lost, f"{len(lost)} nodes lost with encoding={encoding!r}"
    return {"devices": devices, "writes": writes, "encoding": encoding, "wall_s": wall, "nodes": len(written),
            "lost": len(lost), "converged": True, "server_versions": session.server.version}


#: Longest wait after the resync begins for the re-import to end and the queues to drain.
SETTLE_BOUND_S = 7200.0



def _in_subprocess(devices: int, writes: int, encoding: str, budget_s: float) -> dict[str, Any]:
    """One size in a fresh process (a clean heap, and a timeout that cannot hang the suite)."""
    code = ("import json, sys; from benchmarks.scale import scenario; "
            f"print(json.dumps(scenario({devices}, {writes}, {encoding!r})))")
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=budget_s,
                              cwd=Path(__file__).resolve().parent.parent)
    except subprocess.TimeoutExpired:
        return {"devices": devices, "encoding": encoding, "over_budget": True, "wall_s": time.perf_counter() - started}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"devices": devices, "encoding": encoding, "error": last, "wall_s": time.perf_counter() - started}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(devices: int = 100, writes: int = 100, growth: tuple[int, ...] = (10, 100, 1000), budget_s: float = 120.0,
        encodings: tuple[str, ...] = ("replace", "diff")) -> list[dict[str, Any]]:
    rows = []
    for encoding in encodings:
        r = _in_subprocess(devices, writes, encoding, budget_s)
        ok = r.get("converged", False)
        met = ok and r["wall_s"] < TARGET_S
        value = r["wall_s"] if ok else None
        rows.append(row(f"scale: {devices} devices x {writes} nodes ({encoding})", value, "s",
                        f"< {TARGET_S:.0f} s, converged", met, **r))
    previous = None
    for n in growth:
        r = r_main if (n == devices and (r_main := _find(rows, encodings[0]))) else _in_subprocess(n, writes, encodings[0], budget_s)
        if r.get("over_budget"):  # a growth measurement, not a target: n devices of one owner cost n^2 downloads
            label, value = f"over budget ({budget_s:.0f} s): every changeset reaches all {n:,} devices", None
        elif "error" in r:
            label, value = "error", None
        else:
            value = r["wall_s"]
            label = f"x{value / previous:.1f} vs previous" if previous else "base"
        rows.append(row(f"scale growth: {n:,} devices", value, "s", label,
                        False if "error" in r else None, **r))
        previous = value if value is not None else None
    return rows


def _find(rows: list[dict[str, Any]], encoding: str) -> dict[str, Any] | None:
    for r in rows:
        if r["details"].get("encoding") == encoding and r["details"].get("converged"):
            return r["details"]
    return None


if __name__ == "__main__":
    print(json.dumps(scenario(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "replace")))
