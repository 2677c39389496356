import pytest

from repro_kit import _schema


@pytest.mark.parametrize("text, prop", [
    ("string", {"bsonType": "string"}),
    ("objectid", {"bsonType": "objectId"}),
    ("Array<String>", {"bsonType": "array", "items": {"bsonType": "string"}}),
    ("array< uuid >", {"bsonType": "array", "items": {"bsonType": "uuid"}}),
])
def test_bson_types_case_insensitive(text, prop):
    assert _schema.parse_bson_type(text) == prop


@pytest.mark.parametrize("text", ["", "array", "array<>", "strin", "array<array<string>>", None, 3])
def test_bad_bson_types(text):
    with pytest.raises(ValueError, match="bson_type"):
        _schema.parse_bson_type(text)


@pytest.mark.parametrize("name", ["", "1x", "a b", "_id", "x" * 65, None, "a.b", "$set"])
def test_bad_field_names(name):
    with pytest.raises(ValueError, match="field"):
        _schema.validate_field_name(name)


def test_add_optional_field_copies_and_keeps_required():
    new = _schema.add_optional_field(_schema.NODE_SCHEMA, "tags", "array<string>")
    assert "tags" not in _schema.NODE_SCHEMA["properties"]
    assert new["required"] == _schema.NODE_SCHEMA["required"]
    assert list(new["properties"])[-1] == "tags"
