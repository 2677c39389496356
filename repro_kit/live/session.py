"""`LiveSession`: the Session interface against real services, honest about its limits.

Atlas Device Sync reached end of life on 2025-09-30, and device-side writes need a
Realm SDK, which has no Python version. So a live session cannot be the device. What
it can do: deploy the schema change through the Admin API at a chosen moment (the
fault), and watch the Atlas side live, while the user's own app makes the writes
(`writes="app"`, the default). `writes="atlas"` opts in to the server-side variant:
`root`/`add_to_root`/`reset` write straight to the Atlas collection, as a server
function or a backend service would.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from repro_kit import _checks
from repro_kit._checks import InputError
from repro_kit._history import Listener, Nemesis, Op, Stream, baseline_events, events_of
from repro_kit._schema import COLLECTION, DATABASE, parse_bson_type, validate_field_name
from repro_kit._session import DeployResult, Session, View
from repro_kit.live.appservices_api import DEFAULT_BASE_URL, AdminClient, ClientAPI, LiveError, redact
from repro_kit.live.atlas import WATCH_MODES, AtlasCollectionView, mask_uri, open_collection, present, uri_secrets

__all__ = ["LiveSession", "connect_live", "NO_PYTHON_SDK", "WRITES"]

log = logging.getLogger("repro_kit.live")

WRITES = ("app", "atlas")

NO_PYTHON_SDK = (
    "device-side writes need a Realm SDK, which has no Python version: make the writes from your app "
    "(the kit times the deploy and watches Atlas), or pass writes='atlas' to write through Atlas directly"
)


class LiveSession(Session):
    """A session whose deploy and Atlas view are live; see the module docstring for what is not.

    Its one view is Atlas (`observers`): no device can be observed from Python. Its history
    carries what it can see: Atlas's events, the deploy (nemesis records), and with
    writes="atlas" its own adds, acknowledged when MongoDB acknowledged the write.
    """

    backend = "live"
    encoding = "unknown"  # the server's translator encoding is not observable
    realtime = True
    observers = ("atlas",)

    def __init__(
        self,
        atlas: AtlasCollectionView,
        *,
        app_id: str | None = None,
        writes: str = "app",
        mode: str = "unknown",
        admin_factory: Callable[[], AdminClient] | None = None,
        database: str | None = DATABASE,
        collection: str = COLLECTION,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.collection_view = atlas
        self.user_id = atlas.owner_id
        self.app_id = app_id
        self.writes = writes
        self.mode = mode
        self.database, self.collection = database, collection  # where the Node schema lives
        self._admin_factory = admin_factory
        self._admin: AdminClient | None = None
        self._on_close = on_close
        self._start = time.monotonic()
        self._stream = Stream()
        self._feed_stop: Callable[[], None] | None = None
        self._lock = threading.Lock()
        atlas.clock = self.now

    def __repr__(self) -> str:
        return f"LiveSession(app_id={self.app_id!r}, owner_id={self.user_id!r}, writes={self.writes!r})"

    # -- time --------------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self._start

    def wait_until(self, t: float) -> None:
        while (remaining := t - self.now()) > 0:
            time.sleep(min(remaining, 0.5))

    # -- reads (always live) -------------------------------------------------------------------
    def view(self, observer: str = "atlas") -> View:
        """What Atlas holds for the owner: the root, its children in order (dangling links hidden),
        every document. The live backend has no other view."""
        if observer != "atlas":
            raise InputError("observer", f"the live backend sees Atlas only (no Python Realm SDK), got {observer!r}")
        view = self.collection_view
        docs = view._find_owner_docs()
        root = next((d for d in docs if d.get("isRoot") is True), None)
        by_id = {str(d["_id"]): d for d in docs}
        children = [present(by_id[str(c)]) for c in (root.get("children") or []) if str(c) in by_id] if root else []
        return View("atlas", self.user_id, present(root) if root else None, children, [present(d) for d in docs],
                    links=len(root.get("children") or []) if root else 0)

    # -- writes: the server-side variant only ---------------------------------------------------
    def _require_atlas_writes(self, what: str) -> None:
        if self.writes != "atlas":
            raise LiveError(f"{what}: {NO_PYTHON_SDK}")

    def root(self) -> dict[str, Any]:
        """The owner's root. With writes='app' it must already exist (the app creates it)."""
        if self.writes == "atlas":
            return self.collection_view.ensure_root()
        root = self.collection_view.root()
        if root is None:
            raise LiveError(f"owner {self.user_id!r} has no root node in Atlas yet: start your app, "
                            "which creates it (or pass writes='atlas')")
        return root

    def add_to_root(self, text: str) -> str:
        """Writes through Atlas: the add is acknowledged when MongoDB acknowledges both writes."""
        self._require_atlas_writes("add_to_root")
        node_id = self.collection_view.add_to_root(text)
        t = self.now()
        self._stream.emit(Op(t, 0, "invoke", "add", node_id))
        self._stream.emit(Op(t, 0, "ok", "add", node_id))
        return node_id

    def reset(self) -> int:
        self._require_atlas_writes("reset")
        self._stream.emit(Op(self.now(), 0, "invoke", "reset", None))
        count = self.collection_view.reset()
        self._stream.emit(Op(self.now(), 0, "ok", "reset", count))
        return count

    # -- the fault: a live schema deploy ---------------------------------------------------------
    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            if self._admin_factory is None:
                raise LiveError("deploy_schema_change: no App ID given (connect_live(app_id=...))")
            self._admin = self._admin_factory()
        return self._admin

    def deploy_schema_change(self, field: str, bson_type: str) -> DeployResult:
        """Add an optional field through the Admin API; returns when the deployment is final."""
        validate_field_name(field)
        parse_bson_type(bson_type)
        if not self.app_id:
            raise LiveError("deploy_schema_change: no App ID given (connect_live(app_id=...))")
        admin = self._admin_client()
        value: dict[str, Any] = {"field": field, "bson_type": bson_type}
        self._stream.emit(Nemesis(self.now(), "invoke", "deploy", value))
        try:
            result = admin.deploy_optional_field(self.app_id, field, bson_type, self.collection, self.database)
        except Exception as exc:
            self._stream.emit(Nemesis(self.now(), "fail", "deploy", {**value, "error": _first_line(exc)}))
            raise
        deployment = admin.last_deployment or {}
        done = {**value, "status": result.status, "deployment_id": result.deployment_id}
        if deployment.get("status_error_message"):
            done["error"] = str(deployment["status_error_message"])[:200]
        self._stream.emit(Nemesis(self.now(), "ok" if result.status == "successful" else "fail", "deploy", done))
        return result

    # -- the stream --------------------------------------------------------------------------------
    def history(self, listener: Listener) -> Callable[[], None]:
        """Atlas's current state as baseline events, then everything this session sees happen."""
        view = self.view("atlas")
        for event in baseline_events(self.now(), "atlas", [c["_id"] for c in view.children],
                                     [d["_id"] for d in view.documents]):
            listener(event)
        unsubscribe = self._stream.subscribe(listener)
        with self._lock:
            if self._feed_stop is None:
                self._feed_stop = self.collection_view.subscribe(lambda note: self._stream.emit_all(events_of(note)))

        def stop() -> None:
            unsubscribe()
            with self._lock:
                if not self._stream and self._feed_stop is not None:
                    feed_stop, self._feed_stop = self._feed_stop, None
                    feed_stop()

        return stop

    def close(self) -> None:
        with self._lock:
            if self._feed_stop is not None:
                feed_stop, self._feed_stop = self._feed_stop, None
                feed_stop()
        self.collection_view.close()
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__


def connect_live(
    app_id: str | None = None,
    mongodb_uri: str | None = None,
    database: str = DATABASE,
    collection: str = COLLECTION,
    owner_id: str | None = None,
    base_url: str = DEFAULT_BASE_URL,
    *,
    writes: str = "app",
    mode: str = "unknown",
    watch: str = "auto",
    poll_interval: float = 1.0,
    env: Mapping[str, str] | None = None,
    mongo_collection: Any = None,
    admin_kwargs: Mapping[str, Any] | None = None,
    **kw: Any,
) -> LiveSession:
    """Open a live session.

    `mongodb_uri` defaults to $MONGODB_URI (or pass an open `mongo_collection`). `owner_id`
    is the app user's id whose nodes to watch; without it, an App ID is used for an
    anonymous login whose new user id becomes the owner (meaningful only with
    writes='atlas'). The Admin API key is read from the environment at the first deploy.
    `watch`: "auto" | "watch" | "poll" for the Atlas view. Remaining keywords go to
    `AdminClient` (e.g. timeout, retry, deploy_timeout, existing_draft).
    """
    env = os.environ if env is None else env
    _checks.choice("writes", writes, WRITES)  # checked here, once: LiveSession trusts it
    _checks.choice("watch", watch, WATCH_MODES)
    _checks.number("poll_interval", poll_interval, 0, above=True)
    if app_id is not None and (not isinstance(app_id, str) or not app_id.strip()):
        raise InputError("app_id", f"{app_id!r} is not an App ID")
    admin_options = {**dict(admin_kwargs or {}), **kw}
    if owner_id is None:
        if not app_id:
            raise InputError("owner_id", "required without app_id (the app user's id whose nodes to watch)")
        owner_id = ClientAPI(app_id, base_url=base_url).anonymous_login().user_id
        log.info("anonymous login: watching new user %s", owner_id)
    on_close: Callable[[], None] | None = None
    if mongo_collection is None:
        uri = mongodb_uri or env.get("MONGODB_URI")
        if not uri:
            raise LiveError("no MongoDB URI: pass mongodb_uri or set MONGODB_URI")
        client, mongo_collection = open_collection(uri, database, collection)
        on_close = client.close
        log.info("Atlas view on %s (%s.%s)", mask_uri(uri), database, collection)
        secrets = uri_secrets(uri)
    else:
        secrets = []
    try:
        view = AtlasCollectionView(mongo_collection, owner_id, mode=watch, poll_interval=poll_interval)
    except Exception as exc:
        if on_close:
            on_close()
        raise LiveError(redact(f"Atlas view: {exc}", secrets)) from None

    def admin_factory() -> AdminClient:
        return AdminClient.from_env(env, base_url=base_url, **admin_options)

    return LiveSession(view, app_id=app_id, writes=writes, mode=mode, admin_factory=admin_factory,
                       database=database, collection=collection, on_close=on_close)
