"""Reading the sync server's trace: instructions described, discards indexed, causes grouped."""

from __future__ import annotations

from repro_kit.causes import Evidence, describe_instruction, group_causes

ROOT = "root-0000-0000"


def ins(value, index=0):
    return {"op": "ArrayInsert", "table": "Node", "object": ROOT, "field": "children", "index": index,
            "value": value, "prior_size": index}


CLEAR = {"op": "Clear", "table": "Node", "object": ROOT, "field": "children"}


def test_describe_instruction_names_the_root():
    assert describe_instruction(CLEAR, ROOT) == "Clear(root.children)"
    assert describe_instruction(ins("85776e9a-dd84-439e-b154-5a137a1d5006", 6), ROOT) == \
        "ArrayInsert(root.children[6] = 85776e9a)"
    assert describe_instruction({"op": "EraseObject", "object": "abc"}) == "EraseObject(abc)"


def trace():
    return [
        {"time": 6.0, "kind": "integrate", "version": 8, "origin": 2, "base_version": 7,
         "instructions": [{"op": "CreateObject", "object": "n1"}, ins("n1", 6)]},
        {"time": 7.0, "kind": "integrate", "version": 9, "origin": 2, "base_version": 8,
         "instructions": [{"op": "CreateObject", "object": "n2"}, ins("n2", 7)]},
        {"time": 185.5, "kind": "discarded", "at": "server", "version": 10, "rule": "clear-vs-array-insert",
         "instruction": ins("n1", 6), "by": CLEAR, "instruction_in": 8, "by_in": 10},
        {"time": 185.5, "kind": "integrate", "version": 10, "origin": 1, "base_version": 7, "reimport_batch": 1,
         "reimport_batches": 1, "instructions": [CLEAR]},
    ]


def test_causes_group_discards_and_leave_the_rest_unexplained():
    ev = Evidence(trace(), ROOT)
    assert ev.created_in == {"n1": 8, "n2": 9} and ev.linked_in == {"n1": 8, "n2": 9}
    causes, unexplained = group_causes(ev, ["n1", "n2"])
    (cause,) = causes
    assert cause.nodes == ("n1",) and unexplained == ("n2",)
    assert cause.changeset == {"version": 10, "origin": "re-import", "reimport_batch": 1, "reimport_batches": 1,
                               "base_version": 7, "time": 185.5, "instruction": "Clear(root.children)"}
    assert cause.describe() == ("1 node lost to one Clear(root.children) in re-import batch 1 of 1 (server version "
                                "10, based on version 7, at 185.50 s), rule clear-vs-array-insert")


def test_the_servers_discard_is_preferred_to_a_devices():
    records = trace()
    device = {**records[2], "at": "device", "peer": 2, "instruction_in": "local", "by_in": 10}
    ev = Evidence([device, *records], ROOT)
    assert ev.discard_of("n1")["at"] == "server"
    assert Evidence([device], ROOT).discard_of("n1")["at"] == "device"
