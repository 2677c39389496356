"""Merge rules of the OT model: one test per row of DESIGN.md's "Merge rules" table,
the mechanism of the bug, apply/visible/transform behaviour, bad input, and Hypothesis
properties (TP1; every peer converges to the server for any server order)."""

from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repro_kit.emulator.ot import LIST_FIELDS, apply, converge, order_key, transform, visible

# --------------------------------------------------------------------------- helpers


def node(pk: str, children: list[str] | None = None, **fields) -> dict:
    return {"_id": pk, "children": list(children or []), **fields}


def make_state(root_children: list[str], others: tuple[str, ...] = ("a", "b", "c", "x", "y")) -> dict:
    state = {"Node": {pk: node(pk, text=pk) for pk in others}}
    state["Node"]["r"] = node("r", root_children, isRoot=True)
    return state


def cs(origin: int, timestamp: int, *instructions: dict) -> dict:
    return {"origin": origin, "timestamp": timestamp, "instructions": list(instructions)}


def create(pk: str) -> dict:
    return {"op": "CreateObject", "table": "Node", "object": pk}


def erase_object(pk: str) -> dict:
    return {"op": "EraseObject", "table": "Node", "object": pk}


def update(pk: str, field: str, value, is_default: bool = False) -> dict:
    return {"op": "Update", "table": "Node", "object": pk, "field": field, "value": value, "is_default": is_default}


def set_element(pk: str, index: int, value: str) -> dict:
    return {"op": "Update", "table": "Node", "object": pk, "field": "children", "index": index, "value": value}


def insert(pk: str, index: int, value: str, prior_size: int) -> dict:
    return {
        "op": "ArrayInsert", "table": "Node", "object": pk, "field": "children",
        "index": index, "value": value, "prior_size": prior_size,
    }


def array_erase(pk: str, index: int, prior_size: int) -> dict:
    return {"op": "ArrayErase", "table": "Node", "object": pk, "field": "children", "index": index, "prior_size": prior_size}


def clear(pk: str) -> dict:
    return {"op": "Clear", "table": "Node", "object": pk, "field": "children"}


def simulate(base: dict, changesets: list[dict], order: list[int]) -> tuple[dict, list[dict]]:
    """Server and every peer, explicitly: returns (server raw state, [peer raw state per changeset]).

    The server integrates changesets[order[0]], changesets[order[1]], ..., each transformed
    against the history entries before it. Peer i starts at apply(base, C_i) and receives
    every other entry in server order: before its own is integrated it rebases each entry
    past its pending changeset with transform(entry, pending); afterwards it applies entries.
    """
    history: list[dict] = []
    author: list[int] = []
    for i in order:
        incoming = changesets[i]
        for entry in history:
            incoming, _ = transform(incoming, entry)
        history.append(incoming)
        author.append(i)
    server = copy.deepcopy(base)
    for entry in history:
        apply(server, entry)
    peers = []
    for i, own in enumerate(changesets):
        state = apply(copy.deepcopy(base), own)
        pending: dict | None = own
        for entry, origin in zip(history, author):
            if origin == i:
                pending = None  # acknowledged: the server's entry is what we already applied
                continue
            if pending is not None:
                entry, pending = transform(entry, pending)
            apply(state, entry)
        peers.append(state)
    return server, peers


def converged_both_orders(base: dict, first: dict, second: dict) -> dict:
    """converge on both server orders, asserting they agree and that every peer agrees."""
    forward = converge(base, [first, second])
    backward = converge(base, [second, first])
    assert forward == backward
    for order in ([0, 1], [1, 0]):
        server, peers = simulate(base, [first, second], order)
        assert all(visible(peer) == visible(server) == forward for peer in peers)
    return forward


def children(state: dict, pk: str = "r") -> list[str]:
    return state["Node"][pk]["children"]


# --------------------------------------------------------------------------- one test per DESIGN row


def test_row_array_insert_vs_array_insert_same_list_higher_index_shifts():
    base = make_state(["a", "b"])
    early = cs(1, 100, insert("r", 2, "x", 2))
    late = cs(2, 200, insert("r", 0, "y", 2))
    assert children(converged_both_orders(base, early, late)) == ["y", "a", "b", "x"]


def test_row_array_insert_vs_array_insert_same_index_earlier_timestamp_first():
    base = make_state(["a", "b"])
    early = cs(2, 100, insert("r", 1, "x", 2))
    late = cs(1, 200, insert("r", 1, "y", 2))  # lower peer id, but later: still goes second
    assert children(converged_both_orders(base, early, late)) == ["a", "x", "y", "b"]


def test_row_array_insert_vs_array_insert_same_timestamp_peer_id_breaks_tie():
    base = make_state([])
    low, high = cs(1, 100, insert("r", 0, "x", 0)), cs(2, 100, insert("r", 0, "y", 0))
    assert children(converged_both_orders(base, low, high)) == ["x", "y"]


def test_row_array_insert_vs_array_insert_no_deduplication():
    base = make_state(["a"])
    one, two = cs(1, 100, insert("r", 1, "x", 1)), cs(2, 200, insert("r", 1, "x", 1))
    assert children(converged_both_orders(base, one, two)) == ["a", "x", "x"]


@pytest.mark.parametrize(
    "element_op",
    [insert("r", 1, "x", 2), array_erase("r", 0, 2), set_element("r", 1, "y")],
    ids=["ArrayInsert", "ArrayErase", "Update(index)"],
)
@pytest.mark.parametrize("clear_is_later", [False, True], ids=["clear-earlier", "clear-later"])
def test_row_clear_vs_element_op_discards_element_op_regardless_of_timestamp(element_op, clear_is_later):
    base = make_state(["a", "b"])
    clearing = cs(1, 300 if clear_is_later else 100, clear("r"), insert("r", 0, "c", 0))
    editing = cs(2, 200, element_op)
    assert children(converged_both_orders(base, clearing, editing)) == ["c"]


def test_row_clear_vs_clear_lower_order_key_clear_is_discarded():
    base = make_state(["a", "b"])
    early = cs(2, 100, clear("r"), insert("r", 0, "x", 0))
    late = cs(1, 200, clear("r"), insert("r", 0, "y", 0))
    # The later Clear wins and also discards the earlier side's insert into the list it clears.
    assert children(converged_both_orders(base, early, late)) == ["y"]
    early2, late2 = transform(early, late)
    assert early2["instructions"] == [] and late2["instructions"] == late["instructions"]


def test_row_update_vs_update_same_field_last_writer_wins():
    base = make_state([])
    early = cs(2, 100, update("a", "text", "early"))
    late = cs(1, 200, update("a", "text", "late"))
    assert converged_both_orders(base, early, late)["Node"]["a"]["text"] == "late"


def test_row_update_vs_update_is_default_loses_regardless_of_time():
    base = make_state([])
    real = cs(1, 100, update("a", "text", "user"))
    default = cs(2, 200, update("a", "text", "", is_default=True))
    assert converged_both_orders(base, real, default)["Node"]["a"]["text"] == "user"


def test_row_update_vs_update_different_fields_both_apply():
    base = make_state([])
    one, two = cs(1, 100, update("a", "text", "t")), cs(2, 200, update("a", "tags", ["k"]))
    result = converged_both_orders(base, one, two)["Node"]["a"]
    assert (result["text"], result["tags"]) == ("t", ["k"])


def test_row_update_index_vs_update_index_last_writer_wins():
    base = make_state(["a", "b"])
    early, late = cs(1, 100, set_element("r", 1, "x")), cs(2, 200, set_element("r", 1, "y"))
    assert children(converged_both_orders(base, early, late)) == ["a", "y"]


def test_row_update_index_vs_array_insert_at_or_before_shifts_update():
    base = make_state(["a", "b"])
    setting, inserting = cs(1, 100, set_element("r", 1, "x")), cs(2, 200, insert("r", 1, "c", 2))
    assert children(converged_both_orders(base, setting, inserting)) == ["a", "c", "x"]


def test_row_update_index_vs_array_erase():
    base = make_state(["a", "b", "c"])
    same = converged_both_orders(base, cs(1, 300, set_element("r", 1, "x")), cs(2, 200, array_erase("r", 1, 3)))
    assert children(same) == ["a", "c"]  # update of a removed element is discarded, even when later
    lower = converged_both_orders(base, cs(1, 100, set_element("r", 2, "x")), cs(2, 200, array_erase("r", 0, 3)))
    assert children(lower) == ["b", "x"]


@pytest.mark.parametrize(
    ("insert_index", "expected"),
    [(0, ["x", "a", "c"]), (1, ["a", "x", "c"]), (2, ["a", "x", "c"]), (3, ["a", "c", "x"])],
)
def test_row_array_erase_vs_array_insert_neither_discarded_indices_shift(insert_index, expected):
    base = make_state(["a", "b", "c"])
    erasing = cs(1, 100, array_erase("r", 1, 3))  # removes "b"
    inserting = cs(2, 200, insert("r", insert_index, "x", 3))
    assert children(converged_both_orders(base, erasing, inserting)) == expected


def test_row_array_erase_vs_array_erase_same_index_both_discarded():
    base = make_state(["a", "b", "c"])
    one, two = cs(1, 100, array_erase("r", 1, 3)), cs(2, 200, array_erase("r", 1, 3))
    assert children(converged_both_orders(base, one, two)) == ["a", "c"]
    one2, two2 = transform(one, two)
    assert one2["instructions"] == [] and two2["instructions"] == []


def test_row_array_erase_vs_array_erase_different_index_higher_shifts():
    base = make_state(["a", "b", "c"])
    one, two = cs(1, 100, array_erase("r", 2, 3)), cs(2, 200, array_erase("r", 0, 3))
    assert children(converged_both_orders(base, one, two)) == ["b"]


@pytest.mark.parametrize(
    "other_op",
    [
        create("a"),
        update("a", "text", "later edit"),
        insert("a", 0, "b", 0),
        clear("a"),
    ],
    ids=["CreateObject", "Update", "ArrayInsert", "Clear"],
)
def test_row_erase_object_vs_any_op_on_that_object_erase_wins(other_op):
    base = make_state([])
    erasing = cs(1, 100, erase_object("a"))
    later_edit = cs(2, 200, other_op)
    result = converged_both_orders(base, erasing, later_edit)
    assert "a" not in result["Node"]
    _, edit2 = transform(erasing, later_edit)
    assert edit2["instructions"] == []


def test_row_erase_object_vs_erase_object_the_most_recent_erase_is_kept():
    base = make_state(["a"])
    one, two = cs(1, 100, erase_object("a")), cs(2, 200, erase_object("a"))
    result = converged_both_orders(base, one, two)
    assert "a" not in result["Node"] and children(result) == []
    # realm-core transform.cpp: "We keep the most recent erase".
    one2, two2 = transform(one, two)
    assert one2["instructions"] == [] and two2["instructions"] == [erase_object("a")]


def test_row_erase_object_vs_erase_object_a_later_erase_beats_an_older_recreate():
    base = make_state(["a"])
    recreate = cs(1, 100, erase_object("a"), create("a"), update("a", "text", "again"))
    plain = cs(2, 200, erase_object("a"))
    assert "a" not in converged_both_orders(base, recreate, plain)["Node"]


def test_row_erase_object_vs_erase_object_recreate_on_one_side_survives():
    base = make_state(["a"])
    plain = cs(1, 100, erase_object("a"))
    recreate = cs(2, 200, erase_object("a"), create("a"), update("a", "text", "again"))
    assert converged_both_orders(base, plain, recreate)["Node"]["a"] == node("a", text="again")


def test_row_create_object_vs_create_object_idempotent_by_primary_key():
    base = make_state(["a"])
    one = cs(1, 100, create("n"), update("n", "text", "one"), insert("r", 1, "n", 1))
    two = cs(2, 200, create("n"), update("n", "text", "two"))
    result = converged_both_orders(base, one, two)
    assert result["Node"]["n"] == node("n", text="two")
    assert children(result) == ["a", "n"]


def test_row_array_insert_of_link_vs_erase_object_of_target_dangles_and_is_hidden():
    base = make_state(["a"])
    linking = cs(1, 200, insert("r", 1, "x", 1))
    erasing = cs(2, 100, erase_object("x"))
    assert children(converged_both_orders(base, linking, erasing)) == ["a"]
    server, _ = simulate(base, [linking, erasing], [0, 1])
    assert children(server) == ["a", "x"]  # the link is kept in the raw list


# --------------------------------------------------------------------------- the mechanism (DESIGN)


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_resync_clear_plus_inserts_orphans_concurrent_appends_but_keeps_documents(order):
    """The bug: a re-insert written as Clear + ArrayInserts is concurrent with an append."""
    base = make_state(["a", "b"])
    resync = cs(0, 100, clear("r"), insert("r", 0, "a", 0), insert("r", 1, "b", 1))
    device = cs(7, 200, create("n"), insert("r", 2, "n", 2))
    result = converge(base, [[resync, device][i] for i in order])
    assert children(result) == ["a", "b"]
    assert "n" in result["Node"]  # the node document survives: count right, link lost


def test_resync_with_diff_encoding_loses_nothing():
    base = make_state(["a", "b"])
    resync = cs(0, 100, update("a", "text", "a"))  # per-field diff: no Clear
    device = cs(7, 200, create("n"), insert("r", 2, "n", 2))
    assert children(converged_both_orders(base, resync, device)) == ["a", "b", "n"]


# --------------------------------------------------------------------------- three changesets


def test_three_changesets_server_order_changes_list_order_but_every_peer_agrees():
    """DESIGN keeps this realm-core behaviour: concurrent inserts around an erase (no TP2)."""
    base = make_state(["a", "b"])
    changesets = [
        cs(1, 100, insert("r", 1, "x", 2)),  # x between a and b
        cs(2, 200, insert("r", 0, "y", 2)),  # y before a
        cs(3, 300, array_erase("r", 0, 2)),  # remove a
    ]
    outcomes = set()
    for order in itertools.permutations(range(3)):
        server, peers = simulate(base, changesets, list(order))
        assert all(peer == server for peer in peers)
        result = converge(base, [changesets[i] for i in order])
        assert result == visible(server)
        outcomes.add(tuple(children(result)))
    assert outcomes == {("y", "x", "b"), ("x", "y", "b")}


# --------------------------------------------------------------------------- apply / visible / transform


def test_apply_create_object_is_idempotent_and_returns_state():
    state = make_state(["a"])
    state["Node"]["a"]["text"] = "kept"
    assert apply(state, cs(1, 1, create("a"), create("n"))) is state
    assert state["Node"]["a"]["text"] == "kept"
    assert state["Node"]["n"] == {"_id": "n", "text": "", "children": []}  # column default


def test_apply_erase_object_leaves_dangling_links_that_visible_hides():
    state = make_state(["a", "b"])
    apply(state, cs(1, 1, erase_object("a")))
    assert children(state) == ["a", "b"]
    assert children(visible(state)) == ["b"]
    assert children(state) == ["a", "b"]  # visible copies


def test_apply_ignores_ops_on_missing_objects():
    state = make_state([])
    before = copy.deepcopy(state)
    apply(state, cs(1, 1, update("ghost", "text", "t"), insert("ghost", 5, "a", 9), clear("ghost"), erase_object("ghost")))
    assert state == before


@pytest.mark.parametrize(
    "bad",
    [insert("r", 2, "x", 2), array_erase("r", 0, 1), set_element("r", 0, "x")],
    ids=["insert-past-end", "erase-empty", "set-empty"],
)
def test_apply_out_of_range_raises_and_changes_nothing(bad):
    state = make_state(["a"])
    if bad["op"] != "ArrayInsert":
        state["Node"]["r"]["children"] = []
    before = copy.deepcopy(state)
    with pytest.raises(ValueError, match="index|prior_size"):
        apply(state, cs(1, 1, create("n"), bad))
    assert state == before


def test_apply_prior_size_mismatch_raises():
    with pytest.raises(ValueError, match="prior_size"):
        apply(make_state(["a"]), cs(1, 1, insert("r", 0, "x", 3)))


def test_transform_does_not_mutate_inputs_and_keeps_origin_and_timestamp():
    a = cs(1, 100, insert("r", 0, "x", 1), update("a", "text", "t"))
    b = cs(2, 200, insert("r", 0, "y", 1), update("a", "text", "u"))
    a_copy, b_copy = copy.deepcopy(a), copy.deepcopy(b)
    a2, b2 = transform(a, b)
    assert (a, b) == (a_copy, b_copy)
    assert (a2["origin"], a2["timestamp"], b2["origin"], b2["timestamp"]) == (1, 100, 2, 200)
    assert a2["instructions"] == [insert("r", 0, "x", 2)]  # its Update lost to b's later one
    assert b2["instructions"] == [insert("r", 1, "y", 2), update("a", "text", "u")]


def test_transform_is_symmetric():
    a = cs(1, 100, insert("r", 0, "x", 1), array_erase("r", 1, 2))
    b = cs(2, 50, array_erase("r", 0, 1), insert("r", 0, "y", 0))
    a2, b2 = transform(a, b)
    assert transform(b, a) == (b2, a2)


def test_order_key_is_timestamp_then_origin():
    assert order_key(cs(9, 100)) == (100, 9)
    assert order_key(cs(1, 101)) > order_key(cs(9, 100))


def test_converge_does_not_mutate_inputs():
    base = make_state(["a"])
    changesets = [cs(1, 1, erase_object("a")), cs(2, 2, insert("r", 0, "x", 1))]
    base_copy, changesets_copy = copy.deepcopy(base), copy.deepcopy(changesets)
    converge(base, changesets)
    assert (base, changesets) == (base_copy, changesets_copy)


def test_list_fields_is_children():
    assert LIST_FIELDS == frozenset({"children"})


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("instruction", "message"),
    [
        ({"op": "Frobnicate", "table": "Node", "object": "a"}, "unknown op"),
        ({"op": "CreateObject", "table": "Node"}, "missing key"),
        ({"op": "ArrayInsert", "table": "Node", "object": "r", "field": "children", "index": 0, "value": "a"}, "prior_size"),
        ({**insert("r", 0, "a", 0), "field": "text"}, "list field"),
        ({**array_erase("r", 0, 1), "field": "text"}, "list field"),
        ({**clear("r"), "field": "text"}, "list field"),
        ({**insert("r", 0, "a", 0), "index": -1}, "index"),
        ({**insert("r", 0, "a", 0), "index": 2}, "out of range"),
        ({**array_erase("r", 0, 1), "index": 1}, "out of range"),
        ({**insert("r", 0, "a", 0), "value": 5}, "value"),
        (update("r", "children", []), "whole list"),
        ({**update("r", "text", "t"), "index": 0}, "list field"),
        (update("r", "_id", "other"), "primary key"),
        ({**update("r", "text", "t"), "is_default": "yes"}, "is_default"),
        ({"op": "EraseObject", "table": "Node", "object": 3}, "object"),
        ("CreateObject", "must be a dict"),
    ],
)
def test_bad_instruction_raises_value_error_naming_the_problem(instruction, message):
    state = make_state([])
    with pytest.raises(ValueError, match=message):
        apply(state, cs(1, 1, instruction))
    with pytest.raises(ValueError, match=message):
        transform(cs(1, 1, instruction), cs(2, 2))
    with pytest.raises(ValueError, match=message):
        converge(state, [cs(1, 1, instruction)])


@pytest.mark.parametrize(
    ("changeset", "message"),
    [
        ({"timestamp": 1, "instructions": []}, "origin"),
        ({"origin": 1, "timestamp": "soon", "instructions": []}, "timestamp"),
        ({"origin": True, "timestamp": 1, "instructions": []}, "origin"),
        ({"origin": 1, "timestamp": 1}, "instructions"),
        ([], "must be a dict"),
    ],
)
def test_bad_changeset_raises_value_error(changeset, message):
    with pytest.raises(ValueError, match=message):
        apply(make_state([]), changeset)
    with pytest.raises(ValueError, match=message):
        order_key(changeset)


def test_bad_state_and_changesets_raise_value_error():
    with pytest.raises(ValueError, match="state"):
        apply([], cs(1, 1))
    with pytest.raises(ValueError, match="state"):
        visible({"Node": []})
    with pytest.raises(ValueError, match="changesets"):
        converge(make_state([]), cs(1, 1))


def test_transform_rejects_changesets_not_based_on_the_same_state():
    with pytest.raises(ValueError, match="same state"):
        transform(cs(1, 1, insert("r", 0, "x", 1)), cs(2, 2, insert("r", 0, "y", 2)))


def test_transform_rejects_equal_order_keys_when_they_must_decide():
    with pytest.raises(ValueError, match="order key"):
        transform(cs(1, 5, update("a", "text", "p")), cs(1, 5, update("a", "text", "q")))


# --------------------------------------------------------------------------- Hypothesis: TP1 and convergence

OTHER_PKS = ("a", "b", "c", "d")
FRESH_PKS = ("n1", "n2")  # shared by all changesets, so concurrent CreateObjects can collide


@st.composite
def base_states(draw) -> dict:
    """A root with 0-4 children plus 1-4 other objects (some of them with children too)."""
    others = draw(st.lists(st.sampled_from(OTHER_PKS), min_size=1, max_size=4, unique=True))
    state = {"Node": {pk: node(pk, text=pk) for pk in others}}
    state["Node"]["r"] = node("r", draw(st.lists(st.sampled_from(others), max_size=4)), isRoot=True)
    state["Node"][others[0]]["children"] = draw(st.lists(st.sampled_from(others + ["r"]), max_size=2))
    return state


@st.composite
def instructions_on(draw, state: dict) -> dict:
    """One instruction valid on `state`: existing objects, in-range indices, or a fresh CreateObject."""
    objects = state["Node"]
    existing = sorted(objects)
    kinds = ["create"]
    if existing:
        kinds += ["erase_object", "update", "insert", "insert", "insert", "clear"]
        if any(objects[pk]["children"] for pk in existing):
            kinds += ["array_erase", "array_erase", "set_element"]
    kind = draw(st.sampled_from(kinds))
    if kind == "create":
        return create(draw(st.sampled_from(FRESH_PKS + tuple(existing[:1]))))
    if kind in ("array_erase", "set_element"):
        target = draw(st.sampled_from([pk for pk in existing if objects[pk]["children"]]))
    else:
        target = draw(st.sampled_from(existing + ["r"] * 3 if "r" in objects else existing))
    size = len(objects[target]["children"])
    if kind == "erase_object":
        return erase_object(target)
    if kind == "update":
        return update(target, "text", draw(st.sampled_from(["p", "q"])), is_default=draw(st.booleans()))
    if kind == "clear":
        return clear(target)
    if kind == "insert":
        return insert(target, draw(st.integers(0, size)), draw(st.sampled_from(existing)), size)
    index = draw(st.integers(0, size - 1))
    if kind == "array_erase":
        return array_erase(target, index, size)
    instr = set_element(target, index, draw(st.sampled_from(existing)))
    if draw(st.booleans()):
        instr["prior_size"] = size
    return instr


@st.composite
def changesets_on(draw, base: dict, origin: int, max_instructions: int = 4) -> dict:
    """A changeset of 1..max_instructions instructions, each valid after the ones before it."""
    state = copy.deepcopy(base)
    instructions = []
    for _ in range(draw(st.integers(1, max_instructions))):
        instr = draw(instructions_on(state))
        apply(state, cs(origin, 0, instr))
        instructions.append(instr)
    return cs(origin, draw(st.integers(0, 3)), *instructions)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.data())
def test_tp1_for_every_pair_of_single_instruction_changesets(data):
    base = data.draw(base_states())
    a = data.draw(changesets_on(base, origin=1, max_instructions=1))
    b = data.draw(changesets_on(base, origin=2, max_instructions=1))
    a2, b2 = transform(a, b)
    after_b = apply(apply(copy.deepcopy(base), b), a2)
    after_a = apply(apply(copy.deepcopy(base), a), b2)
    assert after_b == after_a
    assert transform(b, a) == (b2, a2)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.data())
def test_every_peer_converges_to_the_server_for_any_server_order(data):
    base = data.draw(base_states())
    count = data.draw(st.integers(2, 4))
    changesets = [data.draw(changesets_on(base, origin=i + 1)) for i in range(count)]
    order = data.draw(st.permutations(range(count)))
    server, peers = simulate(base, changesets, list(order))
    for peer in peers:
        assert visible(peer) == visible(server)
        assert peer == server  # TP1 keeps even the raw lists (dangling links included) equal
    assert converge(base, [changesets[i] for i in order]) == visible(server)


@settings(max_examples=100, derandomize=True, deadline=None)
@given(st.data())
def test_with_two_changesets_converge_does_not_depend_on_server_order(data):
    base = data.draw(base_states())
    a = data.draw(changesets_on(base, origin=1))
    b = data.draw(changesets_on(base, origin=2))
    assert converge(base, [a, b]) == converge(base, [b, a])


def _all_single_instructions(state: dict) -> list[dict]:
    """Every instruction the generators above can produce on `state` (values from a small pool)."""
    objects = state["Node"]
    out = [create(pk) for pk in FRESH_PKS[:1] + ("r",)]
    for pk in sorted(objects):
        size = len(objects[pk]["children"])
        out += [erase_object(pk), clear(pk), update(pk, "text", "p"), update(pk, "text", "q", is_default=True)]
        out += [insert(pk, i, "a", size) for i in range(size + 1)]
        out += [array_erase(pk, i, size) for i in range(size)]
        out += [set_element(pk, i, "b") for i in range(size)]
    return out


def test_tp1_exhaustively_on_a_small_state():
    """Complements the Hypothesis draw: every ordered pair of single instructions, both time orders."""
    base = {"Node": {"r": node("r", ["a", "b"]), "a": node("a", ["b"]), "b": node("b")}}
    instructions = _all_single_instructions(base)
    for x, y in itertools.product(instructions, repeat=2):
        for tx, ty in ((1, 2), (2, 1)):
            a, b = cs(1, tx, x), cs(2, ty, y)
            a2, b2 = transform(a, b)
            assert apply(apply(copy.deepcopy(base), b), a2) == apply(apply(copy.deepcopy(base), a), b2), (a, b)


# --------------------------------------------------------------------------- the "wide" kinds
# Cases of the same kinds as tests/data/realm-core-13.17.1/public-wide: every node has a
# children list, element updates, whole-list re-imports written as Clear + ArrayInserts or
# as a per-element diff, primary keys created by several peers, erase + re-create of one pk.

WIDE_PKS = ("r", "a", "b", "c")


@st.composite
def wide_base_states(draw) -> dict:
    state = {"Node": {pk: node(pk, text="t") for pk in WIDE_PKS}}
    for pk in WIDE_PKS:
        state["Node"][pk]["children"] = draw(st.lists(st.sampled_from(WIDE_PKS), max_size=3))
    return state


def _reimport(pk: str, old: list[str], new: list[str], replace: bool) -> list[dict]:
    """A whole list written back, as the translator encodes it (the object store's two ways)."""
    from repro_kit.emulator.translator import _list_diff

    if replace:
        head = [clear(pk)] if old else []  # realm-core's Lst::clear emits nothing on an empty list
        return head + [insert(pk, i, v, i) for i, v in enumerate(new)]
    return _list_diff({"table": "Node", "object": pk}, old, new)


@st.composite
def wide_steps(draw, state: dict) -> list[dict]:
    """One step (one or several instructions) valid on `state`."""
    objects = state["Node"]
    existing = sorted(objects)
    kind = draw(st.sampled_from(["single", "single", "single", "reimport", "erase_recreate", "create_shared"]))
    if kind == "reimport" and existing:
        pk = draw(st.sampled_from(existing))
        new = draw(st.lists(st.sampled_from(existing), max_size=4))
        return _reimport(pk, list(objects[pk]["children"]), new, replace=draw(st.booleans()))
    if kind == "erase_recreate" and existing:
        pk = draw(st.sampled_from(existing))
        return [erase_object(pk), create(pk), update(pk, "text", draw(st.sampled_from(["r0", "r1"])))]
    if kind == "create_shared":
        pk = draw(st.sampled_from(FRESH_PKS))
        out = [create(pk), update(pk, "text", draw(st.sampled_from(["s0", "s1"])))]
        if "r" in objects:
            size = len(objects["r"]["children"])
            out.append(insert("r", draw(st.integers(0, size)), pk, size))
        return out
    return [draw(instructions_on(state))]


@st.composite
def wide_changesets_on(draw, base: dict, origin: int) -> dict:
    state = copy.deepcopy(base)
    instructions: list[dict] = []
    for _ in range(draw(st.integers(1, 4))):
        step = draw(wide_steps(state))
        apply(state, cs(origin, 0, *step))
        instructions.extend(step)
    return cs(origin, draw(st.integers(0, 5)), *instructions)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.data())
def test_wide_cases_every_peer_equals_the_server_for_any_order(data):
    base = data.draw(wide_base_states())
    count = data.draw(st.integers(2, 3))
    changesets = [data.draw(wide_changesets_on(base, origin=i + 2)) for i in range(count)]
    order = list(data.draw(st.permutations(range(count))))
    server, peers = simulate(base, changesets, order)
    for peer in peers:
        assert peer == server
    assert converge(base, [changesets[i] for i in order]) == visible(server)


# --------------------------------------------------------------------------- the merge's own evidence


def test_trace_names_the_rule_that_discarded_each_instruction():
    resync = cs(1, 100, clear("r"), insert("r", 0, "a", 0))
    device = cs(2, 200, create("n"), insert("r", 1, "n", 1))
    records = []
    transform(resync, device, trace=records.append)
    (record,) = records
    assert record["effect"] == "discarded" and record["side"] == "b"
    assert record["rule"] == "clear-vs-array-insert"
    assert record["instruction"] == insert("r", 1, "n", 1) and record["by"] == clear("r")


def test_trace_reports_rewritten_indices_and_erase_object_vs_any():
    one = cs(1, 100, insert("r", 0, "x", 1), update("a", "text", "p"))
    two = cs(2, 200, insert("r", 0, "y", 1), erase_object("a"))
    records = []
    transform(one, two, trace=records.append)
    rules = {(r["effect"], r["rule"]) for r in records}
    assert ("rewritten", "array-insert-vs-array-insert") in rules
    assert ("discarded", "erase-object-vs-any") in rules
    moved = next(r for r in records if r["effect"] == "rewritten")
    assert moved["after"]["index"] == moved["instruction"]["index"] + 1


def test_trace_costs_nothing_to_the_result():
    a = cs(1, 100, clear("r"), insert("r", 0, "a", 0))
    b = cs(2, 200, insert("r", 2, "c", 2), array_erase("r", 0, 2))
    assert transform(a, b, trace=lambda r: None) == transform(a, b)


# -- what an emulator `ot.Changeset` keeps: the same effects as a plain dict's, rebased or not -----

def _random_changeset(rng, origin: int, timestamp: int, size: int) -> dict:
    """Creates (with field updates) of fresh nodes, inserted in r's list, r's list cleared, a node erased."""
    out, n = [], size
    for k in range(rng.randint(1, 4)):
        pk = f"{origin}-{timestamp}-{k}"
        out += [create(pk), update(pk, "text", f"t{k}"), update(pk, "owner_id", "u")]
        choice = rng.random()
        if choice < 0.6:
            out.append(insert("r", rng.randint(0, n), pk, n))
            n += 1
        elif choice < 0.8:
            out.append(clear("r"))
            n = 0
        elif choice < 0.9:
            out.append(erase_object(pk))
    return cs(origin, timestamp, *out)


@pytest.mark.parametrize("seed", range(40))
def test_a_kept_compiled_form_applies_as_a_fresh_one_after_a_rebase(seed):
    """`ot.Changeset`s compiled by a first apply, rebased past each other (their steps derived from
    their sources'), apply exactly as plain dicts of the same instructions, key order included."""
    import json
    import random

    from repro_kit.emulator.ot import Changeset, transform_past

    rng = random.Random(seed)
    base = {"Node": {"r": {"_id": "r", "text": "", "children": [f"x{i}" for i in range(3)]}}}
    while True:  # a draw the merge accepts (two clears can leave lists the model refuses to pair)
        a = Changeset(_random_changeset(rng, 2, 10, 3))
        others = [Changeset(_random_changeset(rng, 3 + k, 11 + k, 3)) for k in range(rng.randint(1, 3))]
        try:
            transform_past(dict(a), [dict(b) for b in others])
            break
        except ValueError:
            continue
    for changeset in (a, *others):
        apply(json.loads(json.dumps(base)), changeset)  # compiled, and kept on the changeset
    a2, others2 = transform_past(a, others)
    for kept in (a2, *others2):
        fresh = json.loads(json.dumps(kept))
        s1, s2 = json.loads(json.dumps(base)), json.loads(json.dumps(base))
        apply(s1, kept, validate=False)
        apply(s2, fresh, validate=False)
        assert json.dumps(s1) == json.dumps(s2)  # insertion order of keys too


# -- created objects shared between states (copy-on-write) ------------------------------------------

def _created(pk: str = "n", text: str = "hi") -> dict:
    from repro_kit.emulator.ot import Changeset

    return Changeset(cs(2, 10, create(pk), update(pk, "text", text), update(pk, "owner_id", "u")))


def test_states_that_apply_one_changeset_share_its_object_until_one_changes_it():
    """Every device applies every download: they hold one object, and a change in one state (here an
    insert into its list, then a field) never shows in another."""
    made = _created()
    a, b = {"Node": {}}, {"Node": {}}
    apply(a, made)
    apply(b, made, validate=False)
    assert a["Node"]["n"] is b["Node"]["n"]
    apply(a, cs(3, 11, insert("n", 0, "x", 0)))
    apply(a, cs(3, 12, update("n", "text", "changed")))
    assert a["Node"]["n"] == {"_id": "n", "text": "changed", "children": ["x"], "owner_id": "u"}
    assert b["Node"]["n"] == {"_id": "n", "text": "hi", "children": [], "owner_id": "u"}
    assert list(b["Node"]["n"]) == ["_id", "text", "children", "owner_id"]  # key order as built


def test_a_copy_of_a_state_owns_its_objects():
    """What readers get (a deep copy, a pickle, a shallow copy of an object) is plain and independent."""
    import pickle

    made = _created()
    state = {"Node": {}}
    apply(state, made)
    for copied in (copy.deepcopy(state), pickle.loads(pickle.dumps(state))):
        obj = copied["Node"]["n"]
        assert type(obj) is dict and obj == state["Node"]["n"]
        obj["children"].append("y")
        assert state["Node"]["n"]["children"] == []
    shallow = copy.copy(state["Node"]["n"])
    assert type(shallow) is dict
    shallow["children"].append("z")
    assert state["Node"]["n"]["children"] == []


def test_a_create_of_an_object_as_it_is_keeps_it_shared_and_a_different_one_does_not():
    """A re-import's CreateObject + Updates of unchanged values changes nothing (the object stays
    shared); different values, or a value equal but of another type (1 is not True), give the state
    its own copy and leave the others as they were."""
    made = _created()
    a, b = {"Node": {}}, {"Node": {}}
    apply(a, made)
    apply(b, made)
    same = cs(1, 20, create("n"), update("n", "text", "hi"), update("n", "owner_id", "u"))
    apply(a, same)
    assert a["Node"]["n"] is b["Node"]["n"]
    apply(a, cs(1, 21, create("n"), update("n", "text", "other")))
    assert a["Node"]["n"]["text"] == "other" and b["Node"]["n"]["text"] == "hi"
    apply(b, cs(1, 22, create("n"), update("n", "isRoot", True)))
    apply(b, cs(1, 23, create("n"), update("n", "isRoot", 1)))
    assert b["Node"]["n"]["isRoot"] == 1 and type(b["Node"]["n"]["isRoot"]) is int


@pytest.mark.parametrize("start,count,size", [(0, 3, 0), (0, 3, 2), (1, 4, 3), (5, 3, 2), (2, 1, 2)])
def test_inserts_at_consecutive_indices_land_as_one_at_a_time(start, count, size):
    """A re-import's inserts at consecutive indices of one list, applied as one slice, land where
    one-at-a-time inserts do (past the end too, where both append)."""
    base = {"Node": {"r": {"_id": "r", "text": "", "children": [f"o{i}" for i in range(size)]}}}
    inserts = [insert("r", start + k, f"v{k}", size + k) for k in range(count)]
    together, alone = copy.deepcopy(base), copy.deepcopy(base)
    apply(together, cs(1, 1, *inserts), validate=False)
    for k, ins in enumerate(inserts):
        apply(alone, cs(1, 2 + k, ins), validate=False)
    assert together == alone


def test_a_subset_keeps_what_it_sees_and_applies_as_the_same_instructions_would():
    """What one subscription sees of a changeset (`ot.subset`): the instructions on the objects it
    keeps, in order, applying exactly as a plain changeset of them (its steps taken from the
    compiled source's, shared)."""
    import json

    from repro_kit.emulator.ot import Changeset, subset

    whole = Changeset(cs(1, 5, create("a"), update("a", "text", "x"), update("a", "owner_id", "u"),
                         create("b"), update("b", "isRoot", True), update("b", "owner_id", "v"),
                         insert("r", 0, "a", 0), insert("r", 1, "b", 1), insert("s", 0, "b", 0)))
    base = {"Node": {"r": {"_id": "r", "text": "", "children": []}, "s": {"_id": "s", "text": "", "children": []}}}
    apply(json.loads(json.dumps(base)), whole)  # compiled, and kept
    for keep in ({"a", "r"}, {"b", "s"}, {"r", "s"}, set()):
        part = subset(whole, keep.__contains__)
        plain = [ins for ins in whole["instructions"] if ins["object"] in keep]
        assert part["instructions"] == plain and part["origin"] == 1 and part["timestamp"] == 5
        s1, s2 = json.loads(json.dumps(base)), json.loads(json.dumps(base))
        apply(s1, part, validate=False)
        apply(s2, cs(1, 5, *plain), validate=False)
        assert json.dumps(s1) == json.dumps(s2)


def test_kept_objects_are_exact_or_not_given():
    """`ot.kept_objects` (what the server indexes an upload by): exactly the objects a compiled,
    unrebased changeset touches; None for a plain dict, an uncompiled changeset, or a rebased one
    (whose kept set may name objects the merge dropped)."""
    import json

    from repro_kit.emulator.ot import Changeset, kept_objects, transform_past

    base = {"Node": {"r": {"_id": "r", "text": "", "children": []}}}
    mine = Changeset(cs(2, 5, create("a"), update("a", "text", "x"), insert("r", 0, "a", 0)))
    assert kept_objects(mine) is None and kept_objects(dict(mine)) is None
    apply(json.loads(json.dumps(base)), mine)  # compiled as a device applies it
    assert kept_objects(mine) == {("Node", "a"), ("Node", "r")}
    theirs = Changeset(cs(3, 4, create("b"), insert("r", 0, "b", 0)))
    apply(json.loads(json.dumps(base)), theirs)
    _, (rebased,) = transform_past(theirs, [mine])
    assert rebased["instructions"] != mine["instructions"] and kept_objects(rebased) is None


def test_owner_candidates_are_the_created_and_the_re_owned():
    """`ot.owner_candidates` (where the server looks for a changed owner): every object a changeset
    creates or sets the owner_id of, in order, and no other."""
    from repro_kit.emulator.ot import Changeset, owner_candidates

    c = Changeset(cs(1, 5, create("a"), update("a", "text", "x"), update("a", "owner_id", "u"), update("b", "text", "y"),
                     update("c", "owner_id", "v"), insert("r", 0, "a", 0), create("d")))
    assert owner_candidates(c) == ["a", "c", "d"]
    assert owner_candidates(cs(1, 5, update("b", "text", "y"), insert("r", 0, "a", 0))) == []
