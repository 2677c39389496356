"""The report's scenario, driven directly on a session (no recorder): shared by emulator tests."""

from __future__ import annotations

from typing import Any

from repro_kit._history import Event
from repro_kit.client import connect

WRITES = 20
DEPLOY_AT = 5.5  # "a few seconds in", between the 6th and 7th write


def report_scenario(settle: float = 300.0, deploy_at: float | None = DEPLOY_AT, **kwargs: Any) -> dict[str, Any]:
    """Append a node every second for 20 s, deploy an optional array field at `deploy_at`,
    then wait; return what each view showed along the way."""
    session = connect(**kwargs)
    records: list[Any] = []
    session.history(records.append)
    t0 = session.now()
    ids: list[str] = []
    deployed = False
    for i in range(WRITES):
        if deploy_at is not None and not deployed and i > deploy_at:
            session.wait_until(t0 + deploy_at)
            session.deploy_schema_change("tags", "array<string>")
            deployed = True
        session.wait_until(t0 + i)
        ids.append(session.add_to_root(f"node {i + 1}"))
    session.wait_until(t0 + WRITES - 1 + 60)  # a minute after the last write: resync still pending
    pending = {"device": session.info(), "atlas": session.atlas.info(),
               "device_children": [n["_id"] for n in session.nodes()[1:]],
               "atlas_ids": {d["_id"] for d in session.atlas.nodes()}}
    session.wait_until(t0 + WRITES - 1 + settle)
    before = [pk for pk, t in zip(ids, range(WRITES)) if deploy_at is None or t < deploy_at]
    after = [pk for pk in ids if pk not in before]
    return {
        "session": session, "ids": ids, "before": before, "after": after, "pending": pending,
        "device": session.info(), "atlas": session.atlas.info(),
        "device_children": [n["_id"] for n in session.nodes()[1:]],
        "atlas_root": session.atlas.root(),
        "batches": [(e.time - t0, e.fields["batch"]) for e in records
                    if isinstance(e, Event) and e.kind == "batch" and e.observer == "device"],
        "records": records,
    }
