import pytest

from repro_kit._history import Nemesis

from repro_kit import _schema
from repro_kit.client import connect


def test_app_holds_the_reports_configuration():
    s = connect()
    cp = s.control
    assert cp.schema == _schema.NODE_SCHEMA
    assert cp.relationships["children"]["ref"] == "#/relationship/mongodb-atlas/testing-db/Node"
    assert cp.sync["flexible_sync"]["queryable_fields_names"] == ["owner_id"]
    assert cp.sync["development_mode_enabled"] is False
    assert cp.rules["roles"][0]["document_filters"]["write"] == {"owner_id": "%%user.id"}
    assert connect(mode="development").control.sync["development_mode_enabled"] is True


def test_deploy_sends_exactly_what_a_live_deploy_would():
    s = connect()
    result = s.deploy_schema_change("tags", "Array<String>")
    expected = _schema.add_optional_field(_schema.NODE_SCHEMA, "tags", "Array<String>")
    assert result.schema == expected == s.control.schema
    assert expected["properties"]["tags"] == {"bsonType": "array", "items": {"bsonType": "string"}}
    assert expected["required"] == _schema.NODE_SCHEMA["required"]
    assert result.status == "successful"


def test_production_deploy_halts_translation_development_does_not():
    prod, dev = connect(), connect(mode="development")
    heard = {"prod": [], "dev": []}
    prod.history(heard["prod"].append)
    dev.history(heard["dev"].append)
    prod.deploy_schema_change("tags", "array<string>")
    dev.deploy_schema_change("tags", "array<string>")
    assert prod.translator.halted and not dev.translator.halted
    info = {k: [(r.type, r.f) for r in v if isinstance(r, Nemesis)] for k, v in heard.items()}
    assert info == {"prod": [("invoke", "deploy"), ("info", "halt"), ("ok", "deploy")],
                    "dev": [("invoke", "deploy"), ("ok", "deploy")]}


def test_second_deploy_of_the_same_field_is_refused():
    s = connect()
    s.deploy_schema_change("tags", "array<string>")
    with pytest.raises(ValueError, match="already exists"):
        s.deploy_schema_change("tags", "string")
