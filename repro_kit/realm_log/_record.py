"""A replay recorded as a kit run directory, so the kit's one checker judges it like any run.

Why: `findings.analyse(load_run(dir))` gives the lost nodes and their causes from history,
events and trace alone, and `repro-kit report dir` draws the timeline and the sequence diagram;
a replay written in the same files needs no checker of its own. What goes where:
- meta.json: kind "replay", backend "replay", root_id, mode "unknown", encoding ("replace" when
  another peer wrote the root's list wholesale, else "unknown"), the log's name and sha256 (the
  log itself is not copied: it can hold user data), and `inconclusive_reason` when the log lacks
  history the device had;
- history.jsonl: an `add` invoke/ok per object appended to the root's list: process 0 for the
  device's own appends (ok when a batch summary acknowledged them), the origin's file ident for
  another peer's (known when the device integrated it);
- events.jsonl: the device's view after each integrated changeset (doc_insert, enter, leave,
  doc_delete, counts);
- trace.jsonl: `integrate` per server version the log shows, and every `discarded`/`rewritten`
  record of the device's own rebases ("device") and of the reconstructed server merge ("server").
Times are seconds since the log's first line.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from repro_kit.recording import RunRecorder

from ._replay import Replay, log_digest

__all__ = ["write_run"]


def write_run(replay: Replay, out: Path) -> Path:
    """Write `replay` into the run directory `out` (ValueError if it already holds a run)."""
    log = replay.log
    started = log.start.isoformat(timespec="milliseconds") if log.start is not None else None
    meta = {
        "kind": "replay",
        "backend": "replay",
        "mode": "unknown",
        "encoding": replay.encoding,
        "root_id": replay.root_id,
        "writes": sum(1 for a in replay.appends.values() if a["by"] == "device"),
        "deploy_at_s": None,
        "server_trace": True,
        "log": Path(log.source).name,
        "client_file_ident": replay.client_file_ident,
        "changesets": len(replay.steps),
        "verdict": replay.verdict,
    }
    with contextlib.suppress(OSError):  # a log given as text has no file to digest
        meta["log_sha256"] = log_digest(log.source)
    if started is not None:
        meta["started_at"] = started
    if replay.inconclusive:
        meta["inconclusive_reason"] = "; ".join(replay.inconclusive)
    recorder = RunRecorder(out, meta=meta)
    with recorder:
        for op in replay.ops:
            recorder.op(op["process"], op["type"], op["f"], op["value"], time=max(0.0, op["time"]))
        for event in replay.events:
            recorder.event({**event, "time": max(0.0, event["time"])})
        for record in sorted(replay.trace, key=lambda r: (r["time"], r["kind"] != "integrate")):
            recorder.trace({**record, "time": max(0.0, record["time"])})
    return out
