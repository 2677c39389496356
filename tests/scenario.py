"""The report's scenario through the kit's one driver and judged by its one checker: shared by the
emulator tests.

`report_scenario` runs `repro_kit.driver.run_test` (kept in memory by a `MemoryRecorder`) and
`repro_kit.findings.analyse` on the run, then says what each view showed, a minute after the last
write and at the end, from the run's one history stream (its events and its final read): what a
test asserts is what the recording holds, as for any run the kit reports on.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from repro_kit import findings
from repro_kit._session import Info
from repro_kit.client import connect
from repro_kit.driver import run_test
from repro_kit.recording import MemoryRecorder

WRITES = 20
DEPLOY_AT = 5.5  # "a few seconds in", between the 6th and 7th write
#: When the "pending" views are read: a minute after the last write (the re-import still to come).
PENDING_AT = WRITES - 1 + 60


def report_scenario(settle: float = 300.0, deploy_at: float | None = DEPLOY_AT, **kwargs: Any) -> dict[str, Any]:
    """Append a node every second for 20 s, deploy an optional array field at `deploy_at`, then
    watch for `settle` seconds; return what each view showed along the way, from the recording."""
    session = connect(**kwargs)
    run = run_test(session, writes=WRITES, interval_s=1.0, deploy_at_s=deploy_at, settle_s=settle,
                   recorder=MemoryRecorder, progress=False)
    analysis = findings.analyse(run)
    ids = _written(run.history)
    before = [pk for pk, t in zip(ids, range(WRITES)) if deploy_at is None or t < deploy_at]
    final = _final_read(run.history)
    atlas_end = _view_at(run.events, "atlas", run.end_s)
    return {
        "session": session, "run": run, "analysis": analysis, "ids": ids, "before": before,
        "after": [pk for pk in ids if pk not in before],
        "pending": _pending(run),
        "device": Info(str(run.meta.get("user_id")), final["root_id"], final["nodes_total"], len(final["children"])),
        "atlas": _info(run.meta, atlas_end),
        "device_children": final["children"],
        "atlas_root": {"_id": final["root_id"], "children": atlas_end["children"]},
        "batches": [(float(t), int(size)) for t, size in zip(analysis.batches["time"], analysis.batches["batch"])],
        "records": (run.history.to_json(orient="records"), run.events.to_json(orient="records")),
    }


def _written(history: pd.DataFrame) -> list[str]:
    """The nodes the device wrote, in the order it wrote them."""
    adds = history[(history["f"].astype(str) == "add").to_numpy(bool) & (history["type"].astype(str) == "invoke")
                   .to_numpy(bool)]
    return [str(v) for v in adds["value"]]


def _final_read(history: pd.DataFrame) -> dict[str, Any]:
    """The driver's final read of the device (Jepsen's set-full read)."""
    reads = history[(history["f"].astype(str) == "read").to_numpy(bool) & (history["type"].astype(str) == "ok")
                    .to_numpy(bool)]
    return dict(reads["value"].iloc[-1])


def _view_at(events: pd.DataFrame, observer: str, t: float) -> dict[str, Any]:
    """What `observer`'s events show by run time `t`: the root's children (in the order they
    entered), the documents, and the counts it last reported."""
    seen: dict[str, Any] = {"children": [], "documents": set(), "root_children": 0, "nodes_total": 0}
    mine = events[(events["observer"].astype(str) == observer).to_numpy(bool) & (events["time"] <= t).to_numpy(bool)]
    for kind, node, counts in zip(mine["kind"].astype(str), mine["node_id"],
                                  mine[["root_children", "nodes_total"]].itertuples(index=False)):
        if kind == "enter":
            seen["children"].append(str(node))
        elif kind == "leave":
            seen["children"].remove(str(node))
        elif kind == "doc_insert":
            seen["documents"].add(str(node))
        elif kind == "doc_delete":
            seen["documents"].discard(str(node))
        elif kind in ("counts", "poll") and pd.notna(counts.nodes_total):
            seen["root_children"], seen["nodes_total"] = int(counts.root_children), int(counts.nodes_total)
    return seen


def _info(meta: dict[str, Any], seen: dict[str, Any]) -> Info:
    return Info(str(meta.get("user_id")), meta.get("root_id"), seen["nodes_total"], seen["root_children"])


def _pending(run: Any) -> dict[str, Any]:
    """The views a minute after the last write, while the re-import is still to come."""
    device = _view_at(run.events, "device", PENDING_AT)
    atlas = _view_at(run.events, "atlas", PENDING_AT)
    return {"device": _info(run.meta, device), "atlas": _info(run.meta, atlas),
            "device_children": device["children"], "atlas_ids": atlas["documents"]}
