"""The Admin/Client API client against a local HTTP server speaking the documented shapes."""

from __future__ import annotations

import copy

import pytest

from repro_kit._schema import add_optional_field
from repro_kit.live.appservices_api import (
    ENV_PRIVATE_KEY,
    ENV_PUBLIC_KEY,
    AdminClient,
    ClientAPI,
    LiveError,
    RetryPolicy,
)

from live_fakes.appservices_server import APP_OBJ, CLIENT_APP_ID, GROUP, SCHEMA_ID, FakeAppServices


class Sleeps(list):
    """Records requested sleeps instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def admin(app_services: FakeAppServices, sleeps: Sleeps | None = None, **kw) -> AdminClient:
    kw.setdefault("timeout", (2.0, 5.0))
    kw.setdefault("retry", RetryPolicy(attempts=3, backoff=0.25))
    kw.setdefault("poll_interval", 0.5)
    return AdminClient(app_services.public_key, app_services.private_key, base_url=app_services.url,
                       sleep=sleeps if sleeps is not None else Sleeps(), **kw)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_deploy_optional_field_puts_exactly_the_shared_schema_edit(app_services):
    original = copy.deepcopy(app_services.schema_doc)
    result = admin(app_services).deploy_optional_field(CLIENT_APP_ID, "tags", "array<string>")

    assert result.status == "successful"
    assert result.field == "tags" and result.bson_type == "array<string>"
    [put] = app_services.calls("PUT", f"/schemas/{SCHEMA_ID}")
    assert put["path"] == f"/api/admin/v3.0/groups/{GROUP}/apps/{APP_OBJ}/schemas/{SCHEMA_ID}"
    assert put["body"]["schema"] == add_optional_field(original["schema"], "tags", "array<string>")
    assert put["body"]["metadata"] == original["metadata"]
    assert put["body"]["relationships"] == original["relationships"]
    assert put["headers"]["Authorization"].startswith("Bearer access-token-")
    assert result.schema == put["body"]["schema"]
    # the edit went into a draft that was then deployed and polled to a final status
    order = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in app_services.requests]
    assert order.index(("POST", "drafts")) < order.index(("PUT", SCHEMA_ID)) < order.index(("POST", "deployment"))
    assert result.deployment_id in app_services.deployments
    assert app_services.drafts == []


def test_login_sends_the_programmatic_key_and_finds_the_app_by_client_app_id(app_services):
    client = admin(app_services)
    app = client.find_app(CLIENT_APP_ID)
    [login] = app_services.calls("POST", "/auth/providers/mongodb-cloud/login")
    assert login["body"] == {"username": app_services.public_key, "apiKey": app_services.private_key}
    assert (app.group_id, app.app_id, app.client_app_id) == (GROUP, APP_OBJ, CLIENT_APP_ID)
    with pytest.raises(LiveError, match="'no-such-app' not found"):
        client.find_app("no-such-app")


def test_base_url_with_the_older_host_or_an_api_prefix_is_the_same_root(app_services):
    client = AdminClient("a-key", "b-key", base_url=app_services.url + "/api/admin/v3.0/")
    assert client.base_url == app_services.url
    with pytest.raises(ValueError, match="base_url"):
        AdminClient("a-key", "b-key", base_url="realm.mongodb.com")


def test_existing_draft_409_is_discarded_and_recreated(app_services):
    stale = app_services.add_draft()
    result = admin(app_services).deploy_optional_field(CLIENT_APP_ID, "tags", "array<string>")
    assert result.status == "successful"
    assert [r["path"].endswith(f"/drafts/{stale}") for r in app_services.calls("DELETE")] == [True]
    assert app_services.deployments[result.deployment_id]["draft_id"] != stale


def test_existing_draft_can_be_reused(app_services):
    stale = app_services.add_draft()
    result = admin(app_services, existing_draft="reuse").deploy_optional_field(CLIENT_APP_ID, "tags", "string")
    assert app_services.calls("DELETE") == []
    assert app_services.deployments[result.deployment_id]["draft_id"] == stale


def test_failed_deployment_is_reported_as_failed_with_the_server_reason(app_services):
    app_services.deploy_outcome = "failed"
    client = admin(app_services)
    result = client.deploy_optional_field(CLIENT_APP_ID, "tags", "array<string>")
    assert result.status == "failed"
    assert client.last_deployment["status_error_message"] == "schema change requires terminating sync"


def test_deployment_that_never_finishes_times_out_with_one_line(app_services):
    app_services.polls_until_final = 10**6
    ticks = iter(range(0, 10**6, 10))
    client = admin(app_services, clock=lambda: float(next(ticks)), deploy_timeout=30)
    with pytest.raises(LiveError) as info:
        client.deploy_optional_field(CLIENT_APP_ID, "tags", "array<string>")
    assert "still 'pending' after 30 s" in one_line(info.value)


def test_expired_token_logs_in_again_once(app_services):
    client = admin(app_services)
    client.find_app(CLIENT_APP_ID)
    app_services.expire_token()
    client.list_schemas(client.find_app(CLIENT_APP_ID))
    assert len(app_services.calls("POST", "/mongodb-cloud/login")) == 2


def test_second_401_after_relogin_is_an_error_naming_the_endpoint(app_services):
    client = admin(app_services)
    client.login()
    body = {"error": "invalid session: access token expired", "error_code": "InvalidSession"}
    app_services.fail("GET", "/auth/profile", 401, body)
    app_services.fail("GET", "/auth/profile", 401, body)
    with pytest.raises(LiveError) as info:
        client.profile()
    assert one_line(info.value) == "GET /auth/profile: HTTP 401: invalid session: access token expired (InvalidSession)"


def test_wrong_key_is_a_one_line_error_without_the_key(app_services):
    client = AdminClient("wrong-public", "wrong-private", base_url=app_services.url, sleep=Sleeps())
    with pytest.raises(LiveError) as info:
        client.find_app(CLIENT_APP_ID)
    text = one_line(info.value)
    assert "POST /auth/providers/mongodb-cloud/login: HTTP 401: invalid username/password" in text
    assert "wrong-p" not in text and "wrong-p" not in repr(client)


def test_429_honours_retry_after_then_succeeds(app_services):
    sleeps = Sleeps()
    client = admin(app_services, sleeps)
    app_services.fail("GET", "/auth/profile", 429, {"error": "rate limited"}, headers={"Retry-After": "7"})
    assert GROUP in client.group_ids()
    assert sleeps == [7.0]


def test_503_backs_off_exponentially_then_succeeds(app_services):
    sleeps = Sleeps()
    client = admin(app_services, sleeps)
    app_services.fail("GET", "/apps", 503, {"error": "service unavailable"})
    app_services.fail("GET", "/apps", 502, None)
    assert client.find_app(CLIENT_APP_ID, group_id=GROUP).app_id == APP_OBJ
    assert sleeps == [0.25, 0.5]


def test_persistent_5xx_gives_up_after_bounded_attempts(app_services):
    sleeps = Sleeps()
    client = admin(app_services, sleeps)
    client.login()
    for _ in range(3):
        app_services.fail("GET", "/auth/profile", 500, {"error": "internal server error"})
    with pytest.raises(LiveError) as info:
        client.profile()
    assert one_line(info.value) == "GET /auth/profile: HTTP 500: internal server error (after 3 attempts)"
    assert len(sleeps) == 2


def test_read_timeout_names_the_cause(app_services):
    client = admin(app_services, timeout=(2.0, 0.2), retry=RetryPolicy(attempts=2, backoff=0.0))
    client.login()
    app_services.fail("GET", "/auth/profile", 200, {"roles": []}, delay=1.0)
    app_services.fail("GET", "/auth/profile", 200, {"roles": []}, delay=1.0)
    with pytest.raises(LiveError) as info:
        client.profile()
    assert one_line(info.value) == (
        "GET /auth/profile: timed out waiting for the server (read timeout 0.2 s) (after 2 attempts)"
    )


def test_post_is_not_resent_after_a_read_timeout(app_services):
    client = admin(app_services, timeout=(2.0, 0.2))
    client.login()
    app_services.fail("POST", "/drafts", 201, {"_id": "x"}, delay=1.0)
    with pytest.raises(LiveError, match="timed out"):
        client.create_draft(client.find_app(CLIENT_APP_ID))
    assert len(app_services.calls("POST", "/drafts")) == 1


def test_connection_refused_is_retried_then_named():
    sleeps = Sleeps()
    client = AdminClient("a-key", "b-key", base_url="http://127.0.0.1:9", sleep=sleeps,
                         retry=RetryPolicy(attempts=3, backoff=1.0), timeout=(1.0, 1.0))
    with pytest.raises(LiveError) as info:
        client.login()
    assert one_line(info.value).startswith("POST /auth/providers/mongodb-cloud/login: connection failed")
    assert sleeps == [1.0, 2.0]


def test_unknown_field_type_fails_before_any_request(app_services):
    with pytest.raises(ValueError, match="bson_type"):
        admin(app_services).deploy_optional_field(CLIENT_APP_ID, "tags", "array<nope>")
    with pytest.raises(ValueError, match="already exists"):
        admin(app_services).deploy_optional_field(CLIENT_APP_ID, "text", "string")
    assert app_services.calls("POST", "/drafts") == []


def test_put_failure_discards_the_draft(app_services):
    app_services.fail("PUT", f"/schemas/{SCHEMA_ID}", 400, {"error": "invalid schema", "error_code": "InvalidSchema"})
    with pytest.raises(LiveError, match=r"PUT /groups/.*/schemas/.*: HTTP 400: invalid schema \(InvalidSchema\)"):
        admin(app_services).deploy_optional_field(CLIENT_APP_ID, "tags", "array<string>")
    assert app_services.drafts == []


def test_missing_keys_name_both_variables():
    with pytest.raises(LiveError) as info:
        AdminClient.from_env({ENV_PUBLIC_KEY: "only-public"})
    assert one_line(info.value).endswith(f"set {ENV_PRIVATE_KEY} (a programmatic API key of the project)")
    with pytest.raises(LiveError, match=f"{ENV_PUBLIC_KEY} and {ENV_PRIVATE_KEY}"):
        AdminClient.from_env({})


def test_client_api_location_and_anonymous_login(app_services):
    api = ClientAPI(CLIENT_APP_ID, base_url=app_services.url, sleep=Sleeps())
    assert api.location()["hostname"] == app_services.url
    user = api.anonymous_login()
    assert user.user_id and user.access_token == "anon-access-1" and user.refresh_token == "anon-refresh-1"
    assert "anon-access-1" not in repr(user) and "anon-refresh-1" not in repr(user)
    with pytest.raises(LiveError, match="HTTP 404: cannot find app using Client App ID"):
        ClientAPI("missing-app", base_url=app_services.url, sleep=Sleeps()).location()
