"""Orphan audit and repair on a stand-in collection, the emulator's, and a real MongoDB if given."""

from __future__ import annotations

import copy
import os
import uuid
from pathlib import Path

import pytest
from bson import json_util
from bson.binary import UuidRepresentation

from repro_kit.live.appservices_api import LiveError
from repro_kit.live.audit import find_orphans, repair

from live_fakes.collections import FakeCollection

A, B = "owner-a", "owner-b"
N = {name: uuid.UUID(int=i + 1) for i, name in enumerate(
    "R a b a1 a2 a11 o1 o2 o3 o4 o5 RB y z missing".split())}
S = {k: str(v) for k, v in N.items()}


def node(name: str, owner: str, children: list[str] = (), root: bool = False) -> dict:
    return {"_id": N[name], "text": name, "children": [N[c] for c in children], "isRoot": root, "owner_id": owner}


def tree() -> list[dict]:
    """Owner A: R -> a -> a1 -> a11 -> a (a cycle), R -> b, a -> a2; R also links to B's y
    and to a missing document. Orphans: o1 (lost leaf), o2 -> o3 (lost subtree),
    o4 <-> o5 (a cycle nothing reaches). Owner B: RB -> y, orphan z."""
    return [
        node("R", A, ["a", "b", "y", "missing"], root=True),
        node("a", A, ["a1", "a2"]), node("b", A), node("a1", A, ["a11"]), node("a2", A),
        node("a11", A, ["a"]),
        node("o1", A), node("o3", A), node("o2", A, ["o3"]), node("o4", A, ["o5"]), node("o5", A, ["o4"]),
        node("RB", B, ["y"], root=True), node("y", B), node("z", B),
    ]


def test_audit_finds_orphans_across_levels_and_cycles():
    result = find_orphans(FakeCollection(tree()))
    a = result.owner(A)
    assert a.method == "traversal" and a.root_id == S["R"]
    assert set(a.reachable) == {S[k] for k in ("R", "a", "b", "a1", "a2", "a11")}
    assert a.orphans == tuple(S[k] for k in ("o1", "o3", "o2", "o4", "o5"))
    assert {frozenset(c) for c in a.cycles} == {frozenset({S["a"], S["a1"], S["a11"]}), frozenset({S["o4"], S["o5"]})}
    assert set(a.dangling) == {S["y"], S["missing"]}  # B's node is not followed from A's tree
    assert result.owner(B).orphans == (S["z"],)
    assert result.orphan_count == 6 and {o.owner_id for o in result.owners} == {A, B}
    assert find_orphans(FakeCollection(tree()), B).owners == (result.owner(B),)


def test_repair_is_a_dry_run_unless_applied():
    coll = FakeCollection(tree())
    before = copy.deepcopy(coll.docs)
    result = repair(coll, A, None)
    assert not result.applied and result.backup_path is None and coll.docs == before
    assert result.attached == (S["o1"], S["o2"], S["o4"])  # subtree tops; one member of the orphan cycle


def test_repair_backs_up_first_attaches_tops_and_is_idempotent(tmp_path: Path):
    coll = FakeCollection(tree())
    root_before = copy.deepcopy(coll.docs[N["R"]])
    b_before = {k: copy.deepcopy(d) for k, d in coll.docs.items() if d["owner_id"] == B}

    def backup_exists_before_write(flt, update):
        assert list(tmp_path.glob("root-*.json")), "root written before its backup"

    coll.before_update = backup_exists_before_write
    first = repair(coll, A, tmp_path, apply=True)
    assert first.applied and first.modified == 1
    assert coll.docs[N["R"]]["children"] == root_before["children"] + [N["o1"], N["o2"], N["o4"]]
    assert coll.updates[0][0] == {"_id": N["R"], "owner_id": A}
    assert find_orphans(coll, A).owner(A).orphans == ()
    assert {k: d for k, d in coll.docs.items() if d["owner_id"] == B} == b_before

    options = json_util.CANONICAL_JSON_OPTIONS.with_options(uuid_representation=UuidRepresentation.STANDARD)
    saved = json_util.loads(Path(first.backup_path).read_text(), json_options=options)
    assert saved == root_before
    assert [p.name for p in tmp_path.iterdir()] == [Path(first.backup_path).name]  # no temp files left

    second = repair(coll, A, tmp_path, apply=True)
    assert second.attached == () and second.modified == 0 and second.backup_path is None
    assert len(coll.updates) == 1 and len(list(tmp_path.iterdir())) == 1


def test_repair_needs_a_backup_dir_and_a_root(tmp_path: Path):
    with pytest.raises(ValueError, match="backup_dir"):
        repair(FakeCollection(tree()), A, None, apply=True)
    rootless = [d for d in tree() if d["_id"] != N["R"]]
    with pytest.raises(LiveError, match="no root document"):
        repair(FakeCollection(rootless), A, tmp_path, apply=True)
    with pytest.raises(ValueError, match="owner_id"):
        repair(FakeCollection(tree()), "", tmp_path)


def test_audit_works_on_the_emulators_collection(tmp_path: Path):
    emulator_atlas = pytest.importorskip("repro_kit.emulator.atlas")
    coll = emulator_atlas.AtlasCollection()
    for doc in tree():
        coll.insert_one({**doc, "_id": str(doc["_id"]), "children": [str(c) for c in doc["children"]]})
    assert set(find_orphans(coll, A).owner(A).orphans) == {S[k] for k in ("o1", "o2", "o3", "o4", "o5")}
    repair(coll, A, tmp_path, apply=True)
    assert find_orphans(coll, A).owner(A).orphans == ()


requires_mongodb = pytest.mark.skipif(not os.environ.get("MONGODB_URI"), reason="MONGODB_URI is not set: no real MongoDB to test against")


@pytest.mark.mongodb
@requires_mongodb
def test_real_server_audit_and_repair(tmp_path: Path):
    from repro_kit.live.atlas import open_collection

    client, _ = open_collection(os.environ["MONGODB_URI"], server_selection_timeout_ms=5000)
    db_name = f"repro_kit_test_{uuid.uuid4().hex[:12]}"
    try:
        coll = client[db_name]["Node"]
        coll.insert_many(tree())
        result = find_orphans(coll)
        assert result.owner(A).method == "aggregate"
        assert set(result.owner(A).orphans) == {S[k] for k in ("o1", "o2", "o3", "o4", "o5")}
        assert result.owner(B).orphans == (S["z"],)
        assert set(find_orphans(coll, A, method="traversal").owner(A).orphans) == set(result.owner(A).orphans)
        b_before = list(coll.find({"owner_id": B}))
        first = repair(coll, A, tmp_path, apply=True)
        assert first.modified == 1 and Path(first.backup_path).exists()
        assert find_orphans(coll, A).owner(A).orphans == ()
        assert repair(coll, A, tmp_path, apply=True).modified == 0
        assert list(coll.find({"owner_id": B})) == b_before
    finally:
        client.drop_database(db_name)
        client.close()
