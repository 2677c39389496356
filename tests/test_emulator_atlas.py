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


def test_a_primary_key_put_is_an_upserting_replace_of_a_handed_over_document():
    """`put` (the translator's write) leaves the collection and the change feed as
    `replace_one({"_id": ...}, doc, upsert=True, take=True)` does, and its own feed hears nothing."""
    by_put, by_replace = AtlasCollection(), AtlasCollection()
    heard: dict[str, list] = {"put": [], "replace": []}
    by_put.watch(heard["put"].append)
    by_replace.watch(heard["replace"].append)
    own: list = []
    by_put.watch(own.append, ignore_source="translator")
    for doc in ({"_id": "a", "children": []}, {"_id": "b", "children": ["x"]}, {"_id": "a", "children": ["b"]}):
        handed = dict(doc)
        by_put.put(handed, source="translator")
        by_replace.replace_one({"_id": doc["_id"]}, dict(doc), upsert=True, source="translator", take=True)
        assert by_put.get(doc["_id"]) is handed  # taken, not copied
    assert list(by_put.find({})) == list(by_replace.find({})) == [{"_id": "a", "children": ["b"]},
                                                                  {"_id": "b", "children": ["x"]}]
    strip = [{k: v for k, v in ch.items() if k != "_seq"} for ch in heard["put"]]
    assert strip == [{k: v for k, v in ch.items() if k != "_seq"} for ch in heard["replace"]]
    assert [ch["operationType"] for ch in heard["put"]] == ["insert", "insert", "replace"] and own == []
