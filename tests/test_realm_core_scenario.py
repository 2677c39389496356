"""Sync-level conformance: the scenario recorded from realm-core 13.17.1's own sync client and server
(tests/data/realm-core-13.17.1/sync-logs/scenario_steps.log), rerun in the kit's emulator with the
same steps and objects, reaches realm-core's states exactly (final_states.json), and the replay of
the recorded device log agrees with both.

Device A is the emulator's `Device`. Client B works offline from its snapshot, which the emulator's
devices do not model (they are always connected), so B is driven by hand, as a realm-core client
is: its local change is applied to its snapshot, the downloads it missed are rebased past that
change with the kit's `ot` when it reconnects, and its upload goes through
`SyncServer.integrate(peer, changeset, base_version=2)`, the snapshot's server version.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import simpy

from repro_kit.emulator import ot
from repro_kit.emulator.device import Device
from repro_kit.emulator.server import SyncServer
from repro_kit.realm_log import replay

DATA = Path(__file__).parent / "data" / "realm-core-13.17.1" / "sync-logs"
FINAL = json.loads((DATA / "final_states.json").read_text(encoding="utf-8"))
PEER_A, PEER_B = 2, 3  # realm-core's client_file_idents in the recorded run


def as_recorded(state: dict) -> dict:
    """A kit state read as the scenario driver reported it: root's children, objects, orphans."""
    table = ot.visible(state).get("Node", {})
    children = list(table.get("root", {}).get("children", []))
    reachable, todo = {"root"}, list(children)
    while todo:
        pk = todo.pop()
        if pk not in reachable:
            reachable.add(pk)
            todo += table.get(pk, {}).get("children", [])
    order = ["root", "c1", "c2", "c3", "a1", "a2", "a3", "p1"]
    objects = [{"_id": pk, "text": table[pk]["text"]} for pk in order if pk in table]
    return {"root_children": children, "objects": objects,
            "orphans": [pk for pk in order if pk in table and pk not in reachable]}


def node(pk: str, text: str) -> list[dict]:
    return [{"op": "CreateObject", "table": "Node", "object": pk},
            {"op": "Update", "table": "Node", "object": pk, "field": "text", "value": text, "is_default": False}]


def link(pk: str, index: int) -> dict:
    return {"op": "ArrayInsert", "table": "Node", "object": "root", "field": "children", "index": index,
            "value": pk, "prior_size": index}


def settle(env: simpy.Environment) -> None:
    env.run(until=env.now + 1.0)


def test_the_emulator_reaches_realm_cores_states_for_the_recorded_scenario():
    env = simpy.Environment()
    server = SyncServer(env, random.Random(0), 0.005, 0.0)
    a = Device(env, server, PEER_A, "owner", random.Random(1), upload_latency_s=0.005)

    # A: create schema (no data instruction in the kit's format: an empty changeset, server version 1)
    a.write([])
    settle(env)
    # A: root + initial children c1..c3 (server version 2)
    a.write(node("root", "root") + [x for n, c in enumerate(("c1", "c2", "c3")) for x in node(c, f"child {c}") + [link(c, n)]])
    settle(env)
    assert server.version == 2

    # B: bind and download the snapshot, then go offline
    snapshot_version = server.version
    b_state = copy.deepcopy(server.state)
    assert as_recorded(b_state) == FINAL["snapshot_B"]

    # A: append a1, a2, a3, each acknowledged before the next (server versions 3-5)
    for n, pk in enumerate(("a1", "a2", "a3")):
        a.write(node(pk, f"appended {pk}") + [link(pk, 3 + n)])
        settle(env)
    assert server.version == 5 and a.idle

    # B (offline): clear root.children and re-insert the snapshot's children
    b_change = {"origin": PEER_B, "timestamp": int(env.now * 1000),
                "instructions": [{"op": "Clear", "table": "Node", "object": "root", "field": "children"}]
                + [link(c, n) for n, c in enumerate(("c1", "c2", "c3"))]}
    ot.apply(b_state, b_change)
    # B reconnects: the versions it missed are rebased past its change, as a realm-core client does
    missed = [entry for _origin, entry in server.history[snapshot_version:]]
    pending = b_change
    for entry in missed:
        rebased, (pending,) = ot.transform_past(entry, [pending])
        ot.apply(b_state, rebased)
    # ... and uploads it, based on the snapshot's server version (version 6)
    assert server.integrate(PEER_B, b_change, base_version=snapshot_version) == 6
    settle(env)
    assert as_recorded(a.state) == FINAL["after_reimport_A"]
    assert as_recorded(b_state) == FINAL["after_reimport_B"]

    # A: append p1 after the re-import (version 7); B downloads it
    a.write(node("p1", "appended after reimport p1") + [link("p1", len(a.visible_children("root")))])
    settle(env)
    ot.apply(b_state, server.history[6][1])
    assert as_recorded(a.state) == FINAL["final_A"]
    assert as_recorded(b_state) == FINAL["final_B"]
    assert as_recorded(server.state) == FINAL["final_server"]


def test_the_replay_of_the_recorded_device_log_agrees_with_realm_core():
    result = replay(DATA / "device_trace.log")
    assert as_recorded(result.state) == FINAL["final_A"]
    assert result.orphaned == FINAL["final_A"]["orphans"] == ["a1", "a2", "a3"]


def test_the_shipped_copy_of_the_sync_logs_is_the_investigations_evidence():
    """tests/data holds a copy so a clean clone runs these tests; it must not drift from shared/."""
    import pytest

    shared = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "realm-core-13.17.1" / "sync-logs"
    if not shared.is_dir():
        pytest.skip(f"no shared evidence beside the checkout ({shared}): nothing to compare the copy with")
    for name in ("FORMAT_NOTES.md", "changesets.jsonl", "device_trace.log", "final_states.json",
                 "instructions.jsonl", "scenario_steps.log"):
        assert (DATA / name).read_bytes() == (shared / name).read_bytes(), name
    from repro_kit.realm_log import SAMPLE_LOG

    assert SAMPLE_LOG.read_bytes() == (DATA / "device_trace.log").read_bytes()
