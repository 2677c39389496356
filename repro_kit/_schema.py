"""The app configuration from the report, and the one schema edit both backends deploy.

The emulator and the live backend call the same `add_optional_field`, so what the
emulator deploys is byte for byte what a live deploy PUTs to the Admin API.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from repro_kit._checks import InputError

__all__ = [
    "NODE_SCHEMA",
    "NODE_RELATIONSHIPS",
    "NODE_RULES",
    "SYNC_CONFIG",
    "DATABASE",
    "COLLECTION",
    "BSON_TYPES",
    "parse_bson_type",
    "validate_field_name",
    "NODE_FIELDS",
    "add_optional_field",
    "next_field_name",
]

DATABASE = "testing-db"  # the report's "Set up Atlas deployment", step 3
COLLECTION = "Node"

#: The report's JSON schema, pasted in the Schema tab's JSON view.
NODE_SCHEMA: dict[str, Any] = {
    "title": "Node",
    "properties": {
        "_id": {"bsonType": "uuid"},
        "text": {"bsonType": "string"},
        "children": {"bsonType": "array", "items": {"bsonType": "uuid"}},
        "isRoot": {"bsonType": "bool"},
        "owner_id": {"bsonType": "string"},
    },
    "required": ["_id", "text", "isRoot", "owner_id"],
}

#: The report's "Expand relationships" document.
NODE_RELATIONSHIPS: dict[str, Any] = {
    "children": {
        "ref": f"#/relationship/mongodb-atlas/{DATABASE}/{COLLECTION}",
        "foreignKey": "_id",
        "isList": True,
    }
}

#: "Users can read and write their own data, admins can read and write all data".
NODE_RULES: dict[str, Any] = {
    "roles": [
        {
            "name": "readOwnWriteOwn",
            "apply_when": {},
            "document_filters": {
                "read": {"owner_id": "%%user.id"},
                "write": {"owner_id": "%%user.id"},
            },
            "read": True,
            "write": True,
            "insert": True,
            "delete": True,
        }
    ]
}

#: Flexible sync with `owner_id` queryable, development mode off (the report's step 5).
SYNC_CONFIG: dict[str, Any] = {
    "flexible_sync": {
        "state": "enabled",
        "database_name": DATABASE,
        "queryable_fields_names": ["owner_id"],
        "is_recovery_mode_disabled": False,
    },
    "development_mode_enabled": False,
}

#: BSON type names accepted by App Services schemas (lower-cased for lookup).
BSON_TYPES = {
    name.lower(): name
    for name in (
        "string", "int", "long", "double", "decimal", "bool", "date", "objectId",
        "uuid", "binData", "object", "mixed",
    )
}

_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ARRAY_RE = re.compile(r"^array\s*<\s*([A-Za-z]+)\s*>$", re.IGNORECASE)


#: The fields the report's Node schema already has (its properties and relationships): a
#: deploy adds a new optional field, so none of these can be its name.
NODE_FIELDS: tuple[str, ...] = tuple(dict.fromkeys([*NODE_SCHEMA["properties"], *NODE_RELATIONSHIPS]))


def validate_field_name(field: Any, taken: Iterable[str] | None = None) -> str:
    """Return `field` if it can be a new top-level property name, else raise InputError.

    `taken`: the names the schema already has (default: the report's Node schema,
    `NODE_FIELDS`), so a deploy of `children` or `text` is refused before anything runs
    rather than failing mid-run."""
    if not isinstance(field, str) or not _FIELD_RE.match(field):
        raise InputError("field", f"{field!r} is not a valid field name "
                         "(letters, digits and _, not starting with a digit, at most 64 characters)")
    if field.startswith("_"):
        raise InputError("field", f"{field!r} is reserved (names starting with '_' belong to the server)")
    names = list(NODE_FIELDS if taken is None else taken)
    if field in names:
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        raise InputError("field", f"{field!r} already exists in the Node schema ({shown}); "
                         "a deploy adds a new optional field: choose another name")
    return field


def parse_bson_type(bson_type: Any) -> dict[str, Any]:
    """Turn a BSON type name, or `array<NAME>` (the UI's "Array<String>"), into a schema property."""
    if not isinstance(bson_type, str) or not bson_type.strip():
        raise InputError("bson_type", f"{bson_type!r} is not a BSON type name")
    text = bson_type.strip()
    match = _ARRAY_RE.match(text)
    if match:
        return {"bsonType": "array", "items": {"bsonType": _bson_name(match.group(1), bson_type)}}
    if text.lower() == "array":
        raise InputError("bson_type", "'array' needs an item type, e.g. 'array<string>'")
    return {"bsonType": _bson_name(text, bson_type)}


def _bson_name(name: str, original: str) -> str:
    try:
        return BSON_TYPES[name.lower()]
    except KeyError:
        known = ", ".join(sorted(BSON_TYPES.values()))
        raise InputError("bson_type", f"{original!r} is not a BSON type (known: {known}, or array<NAME>)") from None


def add_optional_field(schema: dict[str, Any], field: str, bson_type: str) -> dict[str, Any]:
    """Return a copy of `schema` with an optional property added; `required` is never touched."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        raise InputError("schema", "has no 'properties' object")
    validate_field_name(field, taken=properties)
    prop = parse_bson_type(bson_type)
    new = copy.deepcopy(schema)
    new["properties"][field] = prop
    return new


def next_field_name(existing: set[str] | None, base: str) -> str:
    """`base`, or `base_2`, `base_3`, ... when the schema already has it: each Run test can
    deploy a new optional field, as the report says the name "does not matter"."""
    if not existing or base not in existing:
        return base
    n = 2
    while f"{base}_{n}" in existing:
        n += 1
    return f"{base}_{n}"
