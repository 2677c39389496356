"""`repro-kit deploy` / `repro-kit audit`: argument contract, exit codes, output."""

from __future__ import annotations

import argparse
import io
import json
import uuid
from pathlib import Path

import pytest

from repro_kit.live import commands
from repro_kit.live.appservices_api import ENV_PRIVATE_KEY, ENV_PUBLIC_KEY

from live_fakes.appservices_server import CLIENT_APP_ID, FakeAppServices
from live_fakes.collections import FakeClient, FakeCollection


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="repro-kit")
    commands.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def run(args: argparse.Namespace, **kw) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


def test_cli_contract_parses():
    d = parse("deploy", "--backend", "live", "--app-id", "app-x", "--base-url", "https://realm.mongodb.com",
              "--field", "tags", "--bson-type", "Array<String>")
    assert (d.func, d.app_id, d.base_url, d.field, d.bson_type) == (
        commands.run_deploy, "app-x", "https://realm.mongodb.com", "tags", "Array<String>")
    a = parse("audit", "--mongodb-uri", "mongodb://h", "--database", "db", "--collection", "C",
              "--owner-id", "u", "--repair", "--backup-dir", "bk")
    assert (a.func, a.mongodb_uri, a.database, a.collection, a.owner_id, a.repair, a.backup_dir) == (
        commands.run_audit, "mongodb://h", "db", "C", "u", True, Path("bk"))
    with pytest.raises(SystemExit) as info:
        parse("deploy", "--app-id", "x", "--field", "f")  # --bson-type missing
    assert info.value.code == 2


@pytest.fixture
def server(app_services):
    return app_services, app_services.env


def deploy_args(server: FakeAppServices, *extra: str) -> argparse.Namespace:
    return parse("deploy", "--backend", "live", "--app-id", CLIENT_APP_ID, "--base-url", server.url,
                 "--field", "tags", "--bson-type", "array<string>", "--poll-interval", "0.01", *extra)


def test_deploy_succeeds_with_exit_0(server, monkeypatch):
    fake, env = server
    code, out, err = run(deploy_args(fake), env=env)
    assert (code, err) == (0, "")
    assert "optional field 'tags' (array<string>) to repro-app-abcde: successful" in out
    assert fake.schema_doc["schema"]["properties"]["tags"] == {"bsonType": "array", "items": {"bsonType": "string"}}


def test_failed_deployment_exits_4_with_the_servers_reason(server, monkeypatch):
    """A deployment that failed is a job not done (4), never 1 ("nodes were lost")."""
    fake, env = server
    fake.deploy_outcome = "failed"
    code, out, err = run(deploy_args(fake), env=env)
    assert code == 4
    assert err.startswith("repro-kit: error: deployment ") and err.endswith("failed: schema change requires terminating sync\n")


def test_bad_type_exits_2_before_any_request(server):
    fake, env = server
    args = deploy_args(fake)
    args.bson_type = "array<>"
    code, _, err = run(args, env=env)
    assert code == 2 and err.startswith("repro-kit: error: --bson-type:") and fake.requests == []


def test_missing_keys_are_bad_input_exit_2_naming_the_variables(server):
    fake, _ = server
    code, _, err = run(deploy_args(fake), env={})
    assert code == 2 and ENV_PUBLIC_KEY in err and ENV_PRIVATE_KEY in err and err.count("\n") == 1
    assert fake.requests == []


def lost_nodes_collection() -> FakeCollection:
    root, kept, lost = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    return FakeCollection([
        {"_id": root, "text": "root", "children": [kept], "isRoot": True, "owner_id": "u1"},
        {"_id": kept, "text": "kept", "children": [], "isRoot": False, "owner_id": "u1"},
        {"_id": lost, "text": "lost", "children": [], "isRoot": False, "owner_id": "u1"},
    ])


def test_audit_dry_run_then_repair(monkeypatch, tmp_path: Path):
    coll = lost_nodes_collection()
    lost = next(str(k) for k, d in coll.docs.items() if d["text"] == "lost")
    monkeypatch.setattr(commands, "_open_collection", lambda *a, **k: (FakeClient(), coll))
    code, out, err = run(parse("audit", "--mongodb-uri", "mongodb://h/"))
    assert (code, err) == (0, "")
    assert f"  orphan {lost}" in out and "1 orphaned in 1 owners (dry run" in out and coll.updates == []

    code, out, _ = run(parse("audit", "--mongodb-uri", "mongodb://h/", "--repair", "--backup-dir", str(tmp_path)))
    assert code == 0 and "repaired owner u1: attached 1 subtrees" in out
    assert len(list(tmp_path.glob("root-u1-*.json"))) == 1

    code, out, _ = run(parse("audit", "--mongodb-uri", "mongodb://h/", "--json"))
    assert code == 0 and json.loads(out)["orphan_count"] == 0


def test_audit_uri_from_environment_or_exit_2(monkeypatch):
    coll = lost_nodes_collection()
    opened = []
    monkeypatch.setattr(commands, "_open_collection", lambda uri, *a, **k: (opened.append(uri), (FakeClient(), coll))[1])
    assert run(parse("audit"), env={"MONGODB_URI": "mongodb://from-env/"})[0] == 0
    assert opened == ["mongodb://from-env/"]
    code, _, err = run(parse("audit"), env={})
    assert code == 2 and err == "repro-kit: error: --mongodb-uri: required (or set MONGODB_URI)\n"


def test_unreachable_server_exits_4_with_a_masked_uri():
    uri = "mongodb://alice:hunter2-pw@127.0.0.1:9/?directConnection=true"
    code, out, err = run(parse("audit", "--mongodb-uri", uri, "--timeout", "0.2"))
    assert code == 4 and out == ""
    assert err.startswith("repro-kit: error: --mongodb-uri: no MongoDB server answered at "
                          "mongodb://alice:****@127.0.0.1:9/") and err.count("\n") == 1
    assert "hunter2" not in err and "Error" not in err and "[Errno" not in err


def test_malformed_uri_is_bad_input_exit_2_masked():
    code, out, err = run(parse("audit", "--mongodb-uri", "mongodb://alice:hunter2-pw@/db"))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("repro-kit: error: --mongodb-uri: ") and "no host" in err and "hunter2" not in err
    code, out, err = run(parse("audit", "--mongodb-uri", "mongodb://alice:hunter2-pw@h:99999/db"))
    assert code == 2 and err.startswith("repro-kit: error: --mongodb-uri: ") and "not valid" in err
    assert "hunter2" not in err and err.count("\n") == 1
