"""Secrets never appear in output, logs, warnings, exceptions, reprs or files written.

Fake API keys, issued tokens and a URI password are planted; deploy and audit run
through their command functions (success and failure paths, including a server that
echoes the key back in its error text), and everything produced is searched.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest

from repro_kit.live import commands
from repro_kit.live.appservices_api import ENV_PRIVATE_KEY, ENV_PUBLIC_KEY, AdminClient, ClientAPI, LiveError, RetryPolicy
from repro_kit.live.session import connect_live

from live_fakes.appservices_server import CLIENT_APP_ID, FakeAppServices
from live_fakes.collections import FakeClient, FakeCollection

PUBLIC = "PUBKEY-sekrit-1111"
PRIVATE = "PRIVKEY-sekrit-2222"
URI_PASSWORD = "URIPASS-sekrit-3333"
URI = f"mongodb://alice:{URI_PASSWORD}@127.0.0.1:9/?directConnection=true"


class Produced:
    """Everything a run leaves behind, to be searched."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, *texts: object) -> None:
        self.texts.extend(str(t) for t in texts)

    def assert_clean(self, secrets: list[str], files_under: Path | None = None) -> None:
        blobs = list(self.texts)
        if files_under is not None:
            blobs += [p.read_bytes().decode("utf-8", "replace") for p in files_under.rglob("*") if p.is_file()]
        for secret in secrets:
            for blob in blobs:
                assert secret not in blob, f"secret leaked into: {blob[:200]!r}"


def run_cmd(func, args, produced: Produced) -> int:
    out, err = io.StringIO(), io.StringIO()
    code = func(args, out=out, err=err)
    produced.add(out.getvalue(), err.getvalue())
    return code


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv(ENV_PUBLIC_KEY, PUBLIC)
    monkeypatch.setenv(ENV_PRIVATE_KEY, PRIVATE)
    monkeypatch.setenv("MONGODB_URI", URI)


def deploy_ns(url: str):
    import argparse

    return argparse.Namespace(backend="live", app_id=CLIENT_APP_ID, base_url=url, field="tags", bson_type="array<string>",
                              collection="Node", database="testing-db", deploy_timeout=5.0, poll_interval=0.01,
                              existing_draft="discard")


def test_deploy_paths_never_show_keys_or_tokens(keys, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    produced = Produced()
    with FakeAppServices(PUBLIC, PRIVATE) as server, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_cmd(commands.run_deploy, deploy_ns(server.url), produced) == 0
        server.schema_doc["schema"]["properties"].pop("tags")
        server.expire_token()  # 401 then re-login
        server.add_draft()  # 409 then discard
        server.deploy_outcome = "failed"
        assert run_cmd(commands.run_deploy, deploy_ns(server.url), produced) == 4  # the deployment failed: could not do the job
        # a server that echoes the credentials back in its error text
        server.fail("POST", "/mongodb-cloud/login", 401, {"error": f"invalid username {PUBLIC} / key {PRIVATE}"})
        assert run_cmd(commands.run_deploy, deploy_ns(server.url), produced) == 4
        server.fail("GET", "/auth/profile", 500, {"error": f"boom while checking {PRIVATE}"})
        client = AdminClient(PUBLIC, PRIVATE, base_url=server.url, retry=RetryPolicy(attempts=1), sleep=lambda s: None)
        with pytest.raises(LiveError) as info:
            client.group_ids()
        produced.add(info.value, repr(info.value), repr(client), client.__dict__.keys())
        api = ClientAPI(CLIENT_APP_ID, base_url=server.url)
        user = api.anonymous_login()
        produced.add(repr(user), repr(api))
        tokens = [f"access-token-{i}" for i in range(1, server.tokens_issued + 1)]
        tokens += [f"refresh-token-{i}" for i in range(1, server.tokens_issued + 1)] + [user.access_token, user.refresh_token]
        with FakeAppServices(PUBLIC, PRIVATE) as other:
            session = connect_live(app_id=CLIENT_APP_ID, owner_id="u1", base_url=other.url, mongo_collection=FakeCollection(),
                                   admin_kwargs={"poll_interval": 0.01})
            records = []
            session.history(records.append)
            session.deploy_schema_change("tags", "string")
            produced.add(repr(session), *(repr(r) for r in records))
            session.close()
            tokens += [f"access-token-{i}" for i in range(1, other.tokens_issued + 1)]
    captured = capfd.readouterr()
    produced.add(captured.out, captured.err, caplog.text, *(r.getMessage() for r in caplog.records),
                 *(str(w.message) for w in caught))
    assert "****" in "".join(produced.texts)  # the echoed key was masked, not dropped silently
    produced.assert_clean([PUBLIC, PRIVATE, *tokens])


def test_audit_paths_never_show_the_uri_password(keys, caplog, capfd, monkeypatch, tmp_path: Path):
    caplog.set_level(logging.DEBUG)
    produced = Produced()
    import argparse

    def ns(**kw):
        base = dict(mongodb_uri=None, database="testing-db", collection="Node", owner_id=None, repair=False,
                    backup_dir=tmp_path / "backups", method="auto", timeout=0.2, json=False)
        return argparse.Namespace(**{**base, **kw})

    # unreachable server, URI from the environment and from the flag
    assert run_cmd(commands.run_audit, ns(), produced) == 4  # no server answered: could not do the job
    assert run_cmd(commands.run_audit, ns(mongodb_uri=URI.replace("127.0.0.1:9", "127.0.0.1:1")), produced) == 4
    # a malformed URI holding the password
    assert run_cmd(commands.run_audit, ns(mongodb_uri=f"mongodb://alice:{URI_PASSWORD}@/nohost"), produced) in (1, 2)
    # a repair on a stand-in collection reached through that URI: files written too
    root, lost = uuid.uuid4(), uuid.uuid4()
    coll = FakeCollection([
        {"_id": root, "text": "root", "children": [], "isRoot": True, "owner_id": "u1"},
        {"_id": lost, "text": "lost", "children": [], "isRoot": False, "owner_id": "u1"},
    ])
    monkeypatch.setattr(commands, "_open_collection", lambda *a, **k: (FakeClient(), coll))
    assert run_cmd(commands.run_audit, ns(repair=True), produced) == 0
    assert run_cmd(commands.run_audit, ns(json=True), produced) == 0
    assert list((tmp_path / "backups").glob("root-*.json"))
    captured = capfd.readouterr()
    produced.add(captured.out, captured.err, caplog.text)
    assert "alice:****@" in "".join(produced.texts)
    produced.assert_clean([URI_PASSWORD], files_under=tmp_path)


def test_cli_subprocess_never_shows_keys(tmp_path: Path):
    """Through `python -m repro_kit` once the CLI exists (skipped while it does not)."""
    probe = subprocess.run([sys.executable, "-m", "repro_kit", "deploy", "--help"], capture_output=True, text=True,
                           timeout=60)
    if probe.returncode != 0:
        pytest.skip("the repro-kit CLI has no deploy subcommand yet")
    env = {**os.environ, ENV_PUBLIC_KEY: PUBLIC, ENV_PRIVATE_KEY: PRIVATE, "MONGODB_URI": URI}
    outputs = []
    with FakeAppServices(PUBLIC, PRIVATE) as server:
        server.fail("POST", "/mongodb-cloud/login", 401, {"error": f"bad key {PRIVATE}"})
        for argv in (["deploy", "--backend", "live", "--app-id", CLIENT_APP_ID, "--base-url", server.url,
                      "--field", "tags", "--bson-type", "array<string>", "--poll-interval", "0.01"],
                     ["deploy", "--backend", "live", "--app-id", CLIENT_APP_ID, "--base-url", server.url,
                      "--field", "tags2", "--bson-type", "string", "--poll-interval", "0.01"],
                     ["audit", "--timeout", "0.2"]):
            done = subprocess.run([sys.executable, "-m", "repro_kit", *argv], capture_output=True, text=True,
                                  env=env, cwd=tmp_path, timeout=120)
            outputs.append((done.returncode, done.stdout + done.stderr))
    assert [code for code, _ in outputs] == [4, 0, 4]
    for _, text in outputs:
        for secret in (PUBLIC, PRIVATE, URI_PASSWORD, "access-token-", "refresh-token-"):
            assert secret not in text
    assert list(tmp_path.rglob("*")) == []
