"""App Services Admin API v3.0 and Client API v2.0 over `requests`.

Why a hand-written client: the deploy is the fault the kit injects, so its timing,
retries and failure messages must be visible and testable. Every failure is a
`LiveError` with one line naming the endpoint path, the HTTP status and the server's
error text; API keys and tokens are masked everywhere (messages, reprs, logs).
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import requests

from repro_kit import _checks
from repro_kit._checks import InputError
from repro_kit._schema import COLLECTION, DATABASE, add_optional_field, parse_bson_type, validate_field_name
from repro_kit._session import DeployResult

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_PUBLIC_KEY",
    "ENV_PRIVATE_KEY",
    "LiveError",
    "RetryPolicy",
    "AppRef",
    "AnonUser",
    "AdminClient",
    "ClientAPI",
    "redact",
]

log = logging.getLogger("repro_kit.live")

DEFAULT_BASE_URL = "https://services.cloud.mongodb.com"
ADMIN_PREFIX = "/api/admin/v3.0"
CLIENT_PREFIX = "/api/client/v2.0"
ENV_PUBLIC_KEY = "MONGODB_ATLAS_PUBLIC_API_KEY"
ENV_PRIVATE_KEY = "MONGODB_ATLAS_PRIVATE_API_KEY"
FINAL_DEPLOY_STATUSES = ("successful", "failed")
_MASK = "****"


class LiveError(RuntimeError):
    """A live-service failure, with a one-line message that names its cause and holds no secret."""


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every non-trivial secret replaced by ****, flattened to one line."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, _MASK)
    return " ".join(text.split())


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff; 429 waits for Retry-After when the server sends it."""

    attempts: int = 4
    backoff: float = 0.5
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        _checks.integer("attempts", self.attempts, 1)
        _checks.number("backoff", self.backoff, 0)
        _checks.number("max_delay", self.max_delay, 0)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return min(self.backoff * (2 ** (attempt - 1)), self.max_delay)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _server_error_text(response: requests.Response) -> str:
    """The server's own words: App Services answers {"error": ..., "error_code": ...}."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        text = body.get("error") or body.get("message") or body.get("detail")
        code = body.get("error_code") or body.get("errorCode")
        if text or code:
            return f"{text or ''}{f' ({code})' if code else ''}".strip()
    return (response.text or response.reason or "").strip()[:200]


_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class _Http:
    """One `requests.Session` with timeouts and retries; knows nothing about auth."""

    def __init__(
        self,
        root: str,
        *,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
        secrets: Callable[[], Iterable[str | None]] = lambda: (),
    ) -> None:
        if not isinstance(root, str) or not root.startswith(("http://", "https://")):
            raise InputError("base_url", f"{root!r} is not an http(s) URL")
        self.root = root.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.session = session or requests.Session()
        self._secrets = secrets

    def _fail(self, method: str, path: str, cause: str) -> LiveError:
        return LiveError(redact(f"{method} {path}: {cause}", self._secrets()))

    def request(
        self,
        method: str,
        path: str,
        *,
        root: str | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send with retries; returns the final response (any status) or raises LiveError."""
        url = (root or self.root).rstrip("/") + path
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            retry_after: float | None = None
            try:
                response = self.session.request(method, url, json=json, headers=dict(headers or {}),
                                                timeout=self.timeout)
            except requests.exceptions.ReadTimeout:
                cause = f"timed out waiting for the server (read timeout {self._read_timeout()} s)"
                if method not in _IDEMPOTENT:  # the server may have acted on it: never resend
                    raise self._fail(method, path, cause) from None
            except requests.exceptions.ConnectionError as exc:  # said in words, naming the host, not the class
                host = urllib.parse.urlsplit(url).netloc or url
                cause = f"connection failed: cannot connect to {host}"
                if isinstance(exc, requests.exceptions.ConnectTimeout):
                    cause = f"timed out connecting to the server at {host}"
            except requests.exceptions.RequestException:
                host = urllib.parse.urlsplit(url).netloc or url
                raise self._fail(method, path, f"the request to {host} could not be sent") from None
            else:
                status = response.status_code
                log.debug("%s %s -> %s (attempt %d)", method, path, status, attempt)
                if status == 429:
                    cause = f"HTTP 429 Too Many Requests: {_server_error_text(response)}"
                    retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                elif status >= 500:
                    cause = f"HTTP {status}: {_server_error_text(response)}"
                else:
                    return response
            if attempt == attempts:
                suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
                raise self._fail(method, path, cause + suffix)
            delay = self.retry.delay(attempt, retry_after)
            log.info("%s %s: %s; retrying in %.2f s", method, path, redact(cause, self._secrets()), delay)
            self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_timeout(self) -> float:
        return self.timeout[1] if isinstance(self.timeout, tuple) else self.timeout

    def error(self, method: str, path: str, response: requests.Response) -> LiveError:
        return self._fail(method, path, f"HTTP {response.status_code}: {_server_error_text(response)}")

    def close(self) -> None:
        self.session.close()


def _json(http: _Http, method: str, path: str, response: requests.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise http._fail(method, path, f"HTTP {response.status_code}: response is not JSON") from None


@dataclasses.dataclass(frozen=True)
class AppRef:
    """An app as the Admin API addresses it: project (group) id and the app's internal `_id`."""

    group_id: str
    app_id: str
    client_app_id: str
    name: str = ""


@dataclasses.dataclass(frozen=True)
class AnonUser:
    """An anonymous login; tokens are masked in the repr."""

    user_id: str
    access_token: str = dataclasses.field(repr=False)
    refresh_token: str = dataclasses.field(repr=False)


def _server_root(base_url: Any) -> str:
    """The server root; a URL that already ends in an API prefix is trimmed back to it."""
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise InputError("base_url", f"{base_url!r} is not an http(s) URL")
    root = base_url.rstrip("/")
    for prefix in (ADMIN_PREFIX, CLIENT_PREFIX):
        if root.endswith(prefix):
            root = root[: -len(prefix)]
    return root


def _keys_from_env(env: Mapping[str, str]) -> tuple[str, str]:
    public, private = env.get(ENV_PUBLIC_KEY, "").strip(), env.get(ENV_PRIVATE_KEY, "").strip()
    if not public or not private:
        missing = [name for name, value in ((ENV_PUBLIC_KEY, public), (ENV_PRIVATE_KEY, private)) if not value]
        raise LiveError(f"missing App Services API key: set {' and '.join(missing)} "
                        "(a programmatic API key of the project)")
    return public, private


class AdminClient:
    """App Services Admin API v3.0 with a programmatic API key.

    `base_url` is the server root (`https://services.cloud.mongodb.com`, or the older
    `https://realm.mongodb.com`); the client appends `/api/admin/v3.0`. A 401 on any call
    logs in again once and repeats the call; a second 401 is an error.
    """

    def __init__(
        self,
        public_key: str,
        private_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        poll_interval: float = 2.0,
        deploy_timeout: float = 600.0,
        existing_draft: Literal["discard", "reuse"] = "discard",
        session: requests.Session | None = None,
    ) -> None:
        if not public_key or not private_key:
            raise LiveError(f"missing App Services API key: set {ENV_PUBLIC_KEY} and {ENV_PRIVATE_KEY}")
        _checks.choice("existing_draft", existing_draft, ("discard", "reuse"))
        _checks.number("poll_interval", poll_interval, 0, above=True)
        _checks.number("deploy_timeout", deploy_timeout, 0, above=True)
        self._public_key = public_key
        self._private_key = private_key
        self._access_token: str | None = None
        self._refresh_token: str | None = None
        self.base_url = _server_root(base_url)
        self._http = _Http(
            f"{self.base_url}{ADMIN_PREFIX}",
            timeout=timeout, retry=retry, sleep=sleep, session=session, secrets=self._secrets,
        )
        self.sleep = sleep
        self.clock = clock
        self.poll_interval = poll_interval
        self.deploy_timeout = deploy_timeout
        self.existing_draft = existing_draft
        self.last_deployment: dict[str, Any] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> AdminClient:
        """Keys from MONGODB_ATLAS_PUBLIC_API_KEY / MONGODB_ATLAS_PRIVATE_API_KEY."""
        public, private = _keys_from_env(os.environ if env is None else env)
        return cls(public, private, **kwargs)

    def __repr__(self) -> str:
        return f"AdminClient(base_url={self.base_url!r}, public_key='{_MASK}', private_key='{_MASK}')"

    def _secrets(self) -> tuple[str | None, ...]:
        return (self._public_key, self._private_key, self._access_token, self._refresh_token)

    def close(self) -> None:
        self._http.close()

    # --- auth -------------------------------------------------------------------------

    def login(self) -> None:
        """POST /auth/providers/mongodb-cloud/login {username, apiKey} -> access_token."""
        path = "/auth/providers/mongodb-cloud/login"
        response = self._http.request("POST", path, json={"username": self._public_key, "apiKey": self._private_key})
        if response.status_code != 200:
            raise self._http.error("POST", path, response)
        body = _json(self._http, "POST", path, response) or {}
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise LiveError(f"POST {path}: HTTP 200 but no access_token in the response")
        self._access_token = token
        self._refresh_token = body.get("refresh_token")
        log.debug("logged in to the Admin API")

    def _call(self, method: str, path: str, *, json: Any = None,
              ok: tuple[int, ...] = (200, 201, 204)) -> requests.Response:
        if self._access_token is None:
            self.login()
        for relogged in (False, True):
            response = self._http.request(method, path, json=json,
                                          headers={"Authorization": f"Bearer {self._access_token}"})
            if response.status_code == 401 and not relogged:
                log.info("%s %s: HTTP 401, access token expired; logging in again", method, path)
                self.login()
                continue
            if response.status_code not in ok:
                raise self._http.error(method, path, response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(self, path: str) -> Any:
        return _json(self._http, "GET", path, self._call("GET", path))

    # --- discovery ------------------------------------------------------------------

    def profile(self) -> dict[str, Any]:
        return self._get("/auth/profile") or {}

    def group_ids(self) -> list[str]:
        """Project ids the key has a role in (GET /auth/profile, roles[].group_id)."""
        seen: list[str] = []
        for role in self.profile().get("roles") or []:
            group = role.get("group_id") if isinstance(role, dict) else None
            if group and group not in seen:
                seen.append(group)
        return seen

    def find_app(self, client_app_id: str, group_id: str | None = None) -> AppRef:
        """The app whose `client_app_id` is the App ID users see (e.g. "myapp-abcde")."""
        if not isinstance(client_app_id, str) or not client_app_id.strip():
            raise InputError("app_id", f"{client_app_id!r} is not an App ID")
        groups = [group_id] if group_id else self.group_ids()
        if not groups:
            raise LiveError("GET /auth/profile: the API key has no project role (roles[].group_id is empty)")
        for group in groups:
            for app in self._get(f"/groups/{group}/apps") or []:
                if isinstance(app, dict) and app.get("client_app_id") == client_app_id:
                    return AppRef(group, str(app["_id"]), client_app_id, str(app.get("name", "")))
        raise LiveError(f"app {client_app_id!r} not found in the key's projects ({len(groups)} searched)")

    # --- schemas --------------------------------------------------------------------

    def _app_path(self, app: AppRef) -> str:
        return f"/groups/{app.group_id}/apps/{app.app_id}"

    def list_schemas(self, app: AppRef) -> list[dict[str, Any]]:
        return list(self._get(f"{self._app_path(app)}/schemas") or [])

    def find_schema_id(self, app: AppRef, collection: str = COLLECTION, database: str | None = None) -> str:
        """The `_id` of the schema whose metadata names `collection` (and `database`, if given)."""
        matches = [
            s for s in self.list_schemas(app)
            if (s.get("metadata") or {}).get("collection") == collection
            and (database is None or (s.get("metadata") or {}).get("database") == database)
        ]
        if not matches:
            raise LiveError(f"no schema for collection {collection!r} in app {app.client_app_id!r}")
        if len(matches) > 1:
            dbs = sorted(str((s.get("metadata") or {}).get("database")) for s in matches)
            raise LiveError(f"several schemas for collection {collection!r} (databases {dbs}); pass database=")
        return str(matches[0]["_id"])

    def get_schema(self, app: AppRef, schema_id: str) -> dict[str, Any]:
        return self._get(f"{self._app_path(app)}/schemas/{schema_id}") or {}

    def put_schema(self, app: AppRef, schema_id: str, document: dict[str, Any]) -> None:
        """PUT the whole schema document ({_id, metadata, schema, relationships}); 200/204."""
        self._call("PUT", f"{self._app_path(app)}/schemas/{schema_id}", json=document)

    # --- drafts and deployments -------------------------------------------------------

    def list_drafts(self, app: AppRef) -> list[dict[str, Any]]:
        return list(self._get(f"{self._app_path(app)}/drafts") or [])

    def discard_draft(self, app: AppRef, draft_id: str) -> None:
        self._call("DELETE", f"{self._app_path(app)}/drafts/{draft_id}")

    def create_draft(self, app: AppRef) -> str:
        """A new draft's id. Each user (here: this API key) may hold one draft; on 409 the
        existing one is found via GET .../drafts and, by default, discarded and recreated:
        only the kit drafts with this key, so a leftover is an interrupted earlier run whose
        edits must not ride along. `existing_draft="reuse"` keeps and deploys it instead."""
        path = f"{self._app_path(app)}/drafts"
        response = self._call("POST", path, ok=(200, 201, 409))
        if response.status_code != 409:
            return str((_json(self._http, "POST", path, response) or {})["_id"])
        drafts = self.list_drafts(app)
        if not drafts:
            raise self._http.error("POST", path, response)
        existing = str(drafts[0]["_id"])
        if self.existing_draft == "reuse":
            log.warning("reusing the existing draft %s of this API key", existing)
            return existing
        log.warning("discarding the existing draft %s of this API key (left by an interrupted run)", existing)
        self.discard_draft(app, existing)
        response = self._call("POST", path)
        return str((_json(self._http, "POST", path, response) or {})["_id"])

    def deploy_draft(self, app: AppRef, draft_id: str, name: str = "") -> dict[str, Any]:
        path = f"{self._app_path(app)}/drafts/{draft_id}/deployment"
        return _json(self._http, "POST", path, self._call("POST", path, json={"name": name})) or {}

    def get_deployment(self, app: AppRef, deployment_id: str) -> dict[str, Any]:
        return self._get(f"{self._app_path(app)}/deployments/{deployment_id}") or {}

    def wait_for_deployment(self, app: AppRef, deployment: dict[str, Any],
                            timeout: float | None = None) -> dict[str, Any]:
        """Poll GET .../deployments/{id} until `status` is successful or failed."""
        timeout = self.deploy_timeout if timeout is None else timeout
        deployment_id = str(deployment.get("_id"))
        start = self.clock()
        while deployment.get("status") not in FINAL_DEPLOY_STATUSES:
            if self.clock() - start >= timeout:
                raise LiveError(
                    f"deployment {deployment_id} still {deployment.get('status')!r} after {timeout:g} s "
                    "(GET .../deployments/{id}); check the App Services UI"
                )
            self.sleep(self.poll_interval)
            deployment = self.get_deployment(app, deployment_id)
        return deployment

    def deploy_optional_field(
        self,
        app_id: str,
        field: str,
        bson_type: str,
        collection: str = COLLECTION,
        database: str | None = DATABASE,
    ) -> DeployResult:
        """The report's deploy: add an optional field to `collection`'s schema in one draft.

        The edit is `add_optional_field`, byte for byte what the emulator deploys. Bad
        field/type names raise ValueError before anything is sent. A failed deployment
        returns status "failed" (server message in `last_deployment["status_error_message"]`).
        """
        validate_field_name(field)
        parse_bson_type(bson_type)
        app = self.find_app(app_id)
        schema_id = self.find_schema_id(app, collection, database)
        document = self.get_schema(app, schema_id)
        if not isinstance(document.get("schema"), dict):
            raise LiveError(f"GET .../schemas/{schema_id}: response has no 'schema' object")
        new_document = dict(document)
        new_document["schema"] = add_optional_field(document["schema"], field, bson_type)
        draft_id = self.create_draft(app)
        try:
            self.put_schema(app, schema_id, new_document)
            deployment = self.deploy_draft(app, draft_id)
        except LiveError:
            self._discard_quietly(app, draft_id)
            raise
        self.last_deployment = deployment
        deployment = self.wait_for_deployment(app, deployment)
        self.last_deployment = deployment
        status = str(deployment.get("status"))
        if status == "failed":
            log.warning("deployment %s failed: %s", deployment.get("_id"),
                        redact(str(deployment.get("status_error_message", "")), self._secrets()))
        return DeployResult(field=field, bson_type=bson_type, status=status,
                            deployment_id=str(deployment.get("_id")), schema=new_document["schema"])

    def _discard_quietly(self, app: AppRef, draft_id: str) -> None:
        try:
            self.discard_draft(app, draft_id)
        except LiveError as exc:
            log.warning("could not discard draft %s: %s", draft_id, exc)


class ClientAPI:
    """App Services Client API v2.0: where the app lives, and anonymous login."""

    def __init__(
        self,
        app_id: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        if not isinstance(app_id, str) or not app_id.strip():
            raise InputError("app_id", f"{app_id!r} is not an App ID")
        self.app_id = app_id
        self.base_url = _server_root(base_url)
        self._tokens: list[str] = []
        self._http = _Http(self.base_url, timeout=timeout, retry=retry, sleep=sleep, session=session,
                           secrets=lambda: self._tokens)

    def __repr__(self) -> str:
        return f"ClientAPI(app_id={self.app_id!r}, base_url={self.base_url!r})"

    def location(self) -> dict[str, Any]:
        """GET /api/client/v2.0/app/{id}/location -> {hostname, ws_hostname, location, deployment_model}."""
        path = f"{CLIENT_PREFIX}/app/{self.app_id}/location"
        response = self._http.request("GET", path)
        if response.status_code != 200:
            raise self._http.error("GET", path, response)
        body = _json(self._http, "GET", path, response)
        if not isinstance(body, dict) or not body.get("hostname"):
            raise LiveError(f"GET {path}: response has no hostname")
        return body

    def anonymous_login(self) -> AnonUser:
        """POST {hostname}/api/client/v2.0/app/{id}/auth/providers/anon-user/login (a new user each time)."""
        hostname = str(self.location()["hostname"])
        path = f"{CLIENT_PREFIX}/app/{self.app_id}/auth/providers/anon-user/login"
        response = self._http.request("POST", path, root=hostname, json={})
        if response.status_code not in (200, 201):
            raise self._http.error("POST", path, response)
        body = _json(self._http, "POST", path, response) or {}
        try:
            user = AnonUser(str(body["user_id"]), str(body["access_token"]), str(body["refresh_token"]))
        except (KeyError, TypeError):
            raise LiveError(f"POST {path}: response lacks user_id/access_token/refresh_token") from None
        self._tokens += [user.access_token, user.refresh_token]
        return user

    def close(self) -> None:
        self._http.close()
