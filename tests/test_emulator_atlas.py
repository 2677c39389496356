import pytest

from repro_kit.emulator.atlas import AtlasCollection


def make():
    c = AtlasCollection()
    changes = []
    c.watch(changes.append)
    return c, changes


def test_crud_and_change_feed_shapes():
    c, changes = make()
    c.insert_one({"_id": "a", "owner_id": "u", "children": []})
    c.update_one({"_id": "a"}, {"$push": {"children": "b"}})
    c.update_one({"_id": "a"}, {"$addToSet": {"children": {"$each": ["b", "c"]}}})
    assert c.find_one({"_id": "a"})["children"] == ["b", "c"]
    c.replace_one({"_id": "a"}, {"_id": "a", "owner_id": "u", "children": []}, source="translator")
    c.delete_one({"_id": "a"})
    assert [ch["operationType"] for ch in changes] == ["insert", "update", "update", "replace", "delete"]
    assert changes[3]["source"] == "translator"
    assert changes[-1]["fullDocument"] is None and changes[-1]["documentKey"] == {"_id": "a"}


def test_reads_are_copies_and_filters_match():
    c, _ = make()
    c.insert_one({"_id": "a", "owner_id": "u", "children": ["x"]})
    c.insert_one({"_id": "b", "owner_id": "v", "children": []})
    doc = c.find_one({"owner_id": "u"})
    doc["children"].append("mutated")
    assert c.find_one({"_id": "a"})["children"] == ["x"]
    assert c.count_documents({"owner_id": {"$in": ["u", "v"]}}) == 2
    assert c.delete_many({"owner_id": "u"}) == 1
    assert [d["_id"] for d in c.find({})] == ["b"]


def test_duplicate_insert_and_unknown_operator_are_errors():
    c, _ = make()
    c.insert_one({"_id": "a"})
    with pytest.raises(ValueError, match="duplicate"):
        c.insert_one({"_id": "a"})
    with pytest.raises(ValueError, match=r"\$regex"):
        list(c.find({"_id": {"$regex": "a"}}))
