"""A local App Services Admin/Client API on 127.0.0.1 answering with the documented shapes.

Scriptable: `fail(method, path_suffix, status, body, headers, delay)` queues one forced answer
for the next matching request; `expire_token()` makes the current access token answer 401.
Every request is recorded (method, path, headers, JSON body).
"""

from __future__ import annotations

import copy
import http.server
import json
import re
import threading
import time
from typing import Any

from repro_kit.live.appservices_api import ENV_PRIVATE_KEY, ENV_PUBLIC_KEY

GROUP = "5f0000000000000000000001"
APP_OBJ = "60000000000000000000000a"
CLIENT_APP_ID = "repro-app-abcde"
SCHEMA_ID = "61000000000000000000000b"

NODE_SCHEMA = {
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


class FakeAppServices:
    def __init__(self, public_key: str = "pubkey-1234", private_key: str = "privkey-5678") -> None:
        self.public_key = public_key
        self.private_key = private_key
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.forced: list[dict[str, Any]] = []
        self.tokens_issued = 0
        self.valid_tokens: set[str] = set()
        self.schema_doc = {
            "_id": SCHEMA_ID,
            "metadata": {"data_source": "mongodb-atlas", "database": "testing-db", "collection": "Node"},
            "schema": copy.deepcopy(NODE_SCHEMA),
            "relationships": {"children": {"ref": "#/relationship/mongodb-atlas/testing-db/Node",
                                           "foreignKey": "_id", "isList": True}},
        }
        self.drafts: list[dict[str, Any]] = []
        self.draft_counter = 0
        self.deployments: dict[str, dict[str, Any]] = {}
        self.deploy_outcome = "successful"  # or "failed"
        self.polls_until_final = 2
        self.anon_users = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # --- lifecycle -----------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The Admin API key as the CLI reads it from the environment."""
        return {ENV_PUBLIC_KEY: self.public_key, ENV_PRIVATE_KEY: self.private_key}

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeAppServices":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- scripting -------------------------------------------------------------------
    def fail(self, method: str, path_suffix: str, status: int, body: Any = None,
             headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        with self.lock:
            self.forced.append({"method": method, "suffix": path_suffix, "status": status,
                                "body": body, "headers": headers or {}, "delay": delay})

    def expire_token(self) -> None:
        with self.lock:
            self.valid_tokens.clear()

    def add_draft(self) -> str:
        self.draft_counter += 1
        draft = {"_id": f"d{self.draft_counter:023d}", "user_id": "u1", "app": {"_id": APP_OBJ}}
        self.drafts.append(draft)
        return draft["_id"]

    def calls(self, method: str | None = None, suffix: str = "") -> list[dict[str, Any]]:
        return [r for r in self.requests if (method is None or r["method"] == method) and r["path"].endswith(suffix)]

    # --- routing -------------------------------------------------------------------------
    def _handler_class(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # one write per answer: no delayed-ACK stall between headers and body

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else None

            def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _handle(self, method: str) -> None:
                body = self._body()
                path = self.path
                with fake.lock:
                    fake.requests.append({"method": method, "path": path, "headers": dict(self.headers), "body": body})
                    forced = next((f for f in fake.forced if f["method"] == method and path.endswith(f["suffix"])), None)
                    if forced:
                        fake.forced.remove(forced)
                if forced:
                    if forced["delay"]:
                        time.sleep(forced["delay"])
                    return self._send(forced["status"], forced["body"], forced["headers"])
                status, answer = fake.route(method, path, body, self.headers.get("Authorization", ""))
                self._send(status, answer)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        return Handler

    def route(self, method: str, path: str, body: Any, auth: str) -> tuple[int, Any]:
        admin = "/api/admin/v3.0"
        client = "/api/client/v2.0"
        if path.startswith(client):
            rest = path[len(client):]
            m = re.fullmatch(r"/app/([^/]+)/location", rest)
            if m and method == "GET":
                if m.group(1) != CLIENT_APP_ID:
                    return 404, {"error": "cannot find app using Client App ID", "error_code": "AppNotFound"}
                return 200, {"deployment_model": "GLOBAL", "location": "US-VA",
                             "hostname": self.url, "ws_hostname": self.url.replace("http", "ws")}
            m = re.fullmatch(r"/app/([^/]+)/auth/providers/anon-user/login", rest)
            if m and method == "POST":
                self.anon_users += 1
                return 200, {"access_token": f"anon-access-{self.anon_users}",
                             "refresh_token": f"anon-refresh-{self.anon_users}",
                             "user_id": f"65{self.anon_users:022d}", "device_id": "000000000000000000000000"}
            return 404, {"error": "no route"}
        if not path.startswith(admin):
            return 404, {"error": "no route"}
        rest = path[len(admin):]
        if rest == "/auth/providers/mongodb-cloud/login" and method == "POST":
            if body != {"username": self.public_key, "apiKey": self.private_key}:
                return 401, {"error": "invalid username/password", "error_code": "InvalidPassword"}
            with self.lock:
                self.tokens_issued += 1
                token = f"access-token-{self.tokens_issued}"
                self.valid_tokens.add(token)
            return 200, {"access_token": token, "refresh_token": f"refresh-token-{self.tokens_issued}",
                         "user_id": "u1", "device_id": "000000000000000000000000"}
        if not auth.startswith("Bearer ") or auth[7:] not in self.valid_tokens:
            return 401, {"error": "invalid session: access token expired", "error_code": "InvalidSession"}
        if rest == "/auth/profile" and method == "GET":
            return 200, {"user_id": "u1", "roles": [{"role_name": "GROUP_OWNER", "group_id": "5f00000000000000000000ff"},
                                                    {"role_name": "GROUP_OWNER", "group_id": GROUP}]}
        m = re.fullmatch(r"/groups/([^/]+)/apps", rest)
        if m and method == "GET":
            if m.group(1) != GROUP:
                return 200, []
            return 200, [{"_id": "60000000000000000000000f", "client_app_id": "other-app-xyz", "name": "other", "group_id": GROUP},
                         {"_id": APP_OBJ, "client_app_id": CLIENT_APP_ID, "name": "repro-app", "group_id": GROUP}]
        app = f"/groups/{GROUP}/apps/{APP_OBJ}"
        if not rest.startswith(app):
            return 404, {"error": "app not found", "error_code": "AppNotFound"}
        rest = rest[len(app):]
        if rest == "/schemas" and method == "GET":
            return 200, [{"_id": "61000000000000000000000c", "metadata": {"data_source": "mongodb-atlas", "database": "testing-db", "collection": "Other"}},
                         {"_id": SCHEMA_ID, "metadata": self.schema_doc["metadata"]}]
        if rest == f"/schemas/{SCHEMA_ID}":
            if method == "GET":
                return 200, copy.deepcopy(self.schema_doc)
            if method == "PUT":
                self.schema_doc = copy.deepcopy(body)
                return 204, None
        if rest == "/drafts":
            if method == "GET":
                return 200, copy.deepcopy(self.drafts)
            if method == "POST":
                if self.drafts:
                    return 409, {"error": "a draft already exists for this user", "error_code": "DraftAlreadyExists"}
                return 201, {"_id": self.add_draft(), "user_id": "u1", "app": {"_id": APP_OBJ}}
        m = re.fullmatch(r"/drafts/([^/]+)", rest)
        if m and method == "DELETE":
            self.drafts = [d for d in self.drafts if d["_id"] != m.group(1)]
            return 204, None
        m = re.fullmatch(r"/drafts/([^/]+)/deployment", rest)
        if m and method == "POST":
            if not any(d["_id"] == m.group(1) for d in self.drafts):
                return 404, {"error": "draft not found", "error_code": "DraftNotFound"}
            self.drafts = [d for d in self.drafts if d["_id"] != m.group(1)]
            dep_id = f"70{len(self.deployments) + 1:022d}"
            dep = {"_id": dep_id, "name": dep_id, "app_id": APP_OBJ, "draft_id": m.group(1), "user_id": "u1",
                   "deployed_at": int(time.time()), "origin": "ADMIN_API", "status": "created", "polls": 0}
            self.deployments[dep_id] = dep
            return 201, {k: v for k, v in dep.items() if k != "polls"}
        m = re.fullmatch(r"/deployments/([^/]+)", rest)
        if m and method == "GET" and m.group(1) in self.deployments:
            dep = self.deployments[m.group(1)]
            dep["polls"] += 1
            if dep["polls"] >= self.polls_until_final:
                dep["status"] = self.deploy_outcome
                if self.deploy_outcome == "failed":
                    dep["status_error_message"] = "schema change requires terminating sync"
            else:
                dep["status"] = "pending"
            return 200, {k: v for k, v in dep.items() if k != "polls"}
        return 404, {"error": f"no route for {method} {rest}"}
