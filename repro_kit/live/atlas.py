"""The Atlas side over pymongo: the `Node` collection of one owner, watched live.

Why a mirror: a change stream tells what changed, not what a person refreshing Atlas
sees; the view keeps the owner's documents in memory, applies each change event to
them in order (update descriptions included, so intermediate states are exact), and
reports what entered or left the root's `children` as `Notification`s. The stream's
resume token survives dropped connections; where change streams are unavailable (a
standalone server) the view polls instead and diffs snapshots.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import threading
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from repro_kit import _checks
from repro_kit._checks import InputError
from repro_kit._history import Notification, notification
from repro_kit._schema import COLLECTION, DATABASE
from repro_kit._session import Info
from repro_kit.live.appservices_api import LiveError, redact

NoteListener = Callable[[Notification], None]

# pymongo and bson (0.3 s to import, python -X importtime) are imported where the kit talks to
# MongoDB, not here: the CLI registers the live commands on every start.
__all__ = [
    "AtlasCollectionView",
    "open_collection",
    "mask_uri",
    "uri_secrets",
    "reset",
    "id_str",
    "present",
]

log = logging.getLogger("repro_kit.live")

#: The resume point fell off the oplog: resume is impossible, resynchronise from a snapshot.
HISTORY_LOST = frozenset({286, 280, 136})
#: How the Atlas view hears changes: a change stream falling back to polling, either alone.
WATCH_MODES = ("auto", "watch", "poll")

_USERINFO = re.compile(r"^(?P<scheme>mongodb(?:\+srv)?://)(?P<user>[^:@/]*)(?::(?P<password>[^@/]*))?@")


def mask_uri(uri: str) -> str:
    """The URI with its password replaced by ****, for messages and logs."""
    if not isinstance(uri, str):
        return "<not a URI>"
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}{':****' if m['password'] is not None else ''}@", uri,
                         count=1)


def uri_secrets(uri: str | None) -> list[str]:
    """The URI's password, raw and percent-decoded, so messages can be redacted."""
    match = _USERINFO.match(uri or "")
    if not match or not match["password"]:
        return []
    raw = match["password"]
    return sorted({raw, urllib.parse.unquote(raw)}, key=len, reverse=True)


def open_collection(
    uri: str,
    database: str = DATABASE,
    collection: str = COLLECTION,
    *,
    server_selection_timeout_ms: int = 10_000,
    **client_kwargs: Any,
) -> tuple[Any, Any]:
    """(MongoClient, Collection) with UUIDs as standard binary subtype 4, as App Services stores them."""
    import pymongo  # noqa: PLC0415 - lazy pymongo: see the note at the top
    import pymongo.errors  # noqa: PLC0415 - lazy pymongo: see the note at the top

    if not isinstance(uri, str) or not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise InputError("mongodb_uri", "must start with mongodb:// or mongodb+srv://")
    _checks.text("database", database)
    _checks.text("collection", collection)
    try:
        with warnings.catch_warnings():  # the driver only warns of an unknown or bad URI option: refuse it
            warnings.simplefilter("error", UserWarning)
            client = pymongo.MongoClient(
                uri, uuidRepresentation="standard", serverSelectionTimeoutMS=server_selection_timeout_ms,
                appname="repro-kit", **client_kwargs,
            )
    except (pymongo.errors.InvalidURI, ValueError, UserWarning) as exc:
        raise ValueError(redact(f"mongodb_uri: {mask_uri(uri)} is not valid: {exc}", uri_secrets(uri))) from None
    except pymongo.errors.ConfigurationError as exc:
        if not uri.startswith("mongodb+srv://"):  # nothing was looked up: the URI itself is bad
            raise ValueError(redact(f"mongodb_uri: {mask_uri(uri)} is not valid: {exc}", uri_secrets(uri))) from None
        # an SRV record that does not resolve: the network's answer, not the user's typing
        raise LiveError(redact(f"MongoDB URI {mask_uri(uri)}: {exc}", uri_secrets(uri))) from None
    return client, client[database][collection]


def id_str(value: Any) -> str:
    """Ids as users see them: UUIDs and ObjectIds as their canonical strings."""
    return str(value)


def present(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Node document with `_id` and `children` as strings."""
    out = copy.deepcopy(doc)
    if "_id" in out:
        out["_id"] = id_str(out["_id"])
    if isinstance(out.get("children"), list):
        out["children"] = [id_str(c) for c in out["children"]]
    return out


def reset(collection: Any, owner_id: str) -> int:
    """Delete `owner_id`'s documents, and only those; returns how many."""
    _checks.text("owner_id", owner_id)
    result = collection.delete_many({"owner_id": owner_id})
    return int(getattr(result, "deleted_count", result) or 0)


# --- the mirror: documents of one owner, and what a notification compares ------------------


def _set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    target: Any = doc
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(target, list) and part.isdigit():
            index = int(part)
            while len(target) <= index:
                target.append(None)
            if last:
                target[index] = copy.deepcopy(value)
            else:
                if not isinstance(target[index], (dict, list)):
                    target[index] = {}
                target = target[index]
        else:
            if last:
                target[part] = copy.deepcopy(value)
            else:
                if not isinstance(target.get(part), (dict, list)):
                    target[part] = {}
                target = target[part]


def _remove_path(doc: dict[str, Any], path: str) -> None:
    parts = path.split(".")
    target: Any = doc
    for part in parts[:-1]:
        if isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        elif isinstance(target, dict) and part in target:
            target = target[part]
        else:
            return
    if isinstance(target, dict):
        target.pop(parts[-1], None)
    elif isinstance(target, list) and parts[-1].isdigit() and int(parts[-1]) < len(target):
        target[int(parts[-1])] = None


def apply_update_description(doc: dict[str, Any], description: dict[str, Any]) -> dict[str, Any]:
    """`doc` after a change event's updateDescription (truncations, then sets, then removals)."""
    new = copy.deepcopy(doc)
    for trunc in description.get("truncatedArrays") or []:
        parts = trunc["field"].split(".")
        target: Any = new
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target.get(part, {})
        array = target.get(parts[-1]) if isinstance(target, dict) else None
        if isinstance(array, list):
            del array[int(trunc["newSize"]):]
    for path, value in (description.get("updatedFields") or {}).items():
        _set_path(new, path, value)
    for path in description.get("removedFields") or []:
        _remove_path(new, path)
    return new


class _Mirror:
    """An owner's documents keyed by id string, in first-seen order."""

    def __init__(self, owner_id: str, docs: Iterable[dict[str, Any]] = ()) -> None:
        self.owner_id = owner_id
        self.docs: dict[str, dict[str, Any]] = {id_str(d["_id"]): d for d in docs}

    def state(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        root = next((d for d in self.docs.values() if d.get("isRoot") is True), None)
        children = tuple(id_str(c) for c in (root.get("children") or [])) if root else ()
        return tuple(self.docs), children

    def apply(self, change: dict[str, Any]) -> None:
        op = change.get("operationType")
        key_doc = change.get("documentKey") or {}
        key = id_str(key_doc["_id"]) if "_id" in key_doc else None
        full = change.get("fullDocument")
        if op in ("drop", "dropDatabase", "rename", "invalidate"):
            self.docs.clear()
        elif key is None:  # every other event names its document (MongoDB's documentKey)
            return
        elif op in ("insert", "replace"):
            if isinstance(full, dict) and full.get("owner_id") == self.owner_id:
                self.docs[key] = full
            else:
                self.docs.pop(key, None)
        elif op == "update":
            if key in self.docs:
                doc = apply_update_description(self.docs[key], change.get("updateDescription") or {})
                if doc.get("owner_id") == self.owner_id:
                    self.docs[key] = doc
                else:
                    self.docs.pop(key, None)
            elif isinstance(full, dict) and full.get("owner_id") == self.owner_id:
                self.docs[key] = full
        elif op == "delete":
            self.docs.pop(key, None)


class _Feed:
    """One subscription: a change stream (or a poll) in a daemon thread, feeding one listener."""

    def __init__(self, view: AtlasCollectionView, listener: NoteListener) -> None:
        self.view = view
        self.listener = listener
        self.stop_event = threading.Event()
        self.mode = "watch"
        self.resume_token: Any = None
        self.stream: Any = None
        self.reconnects = 0
        self.mirror = _Mirror(view.owner_id)
        self._needs_snapshot = False
        # Open before the snapshot: every change after subscribe() returns is in the stream;
        # changes between open and snapshot replay harmlessly (the diff is of states).
        self.stream = self._open(first=True) if view.mode != "poll" else None
        if self.stream is None:
            self.mode = "poll"
        self.mirror = _Mirror(view.owner_id, view._find_owner_docs())
        self.thread = threading.Thread(target=self._run, name=f"repro-kit-atlas-{self.mode}", daemon=True)
        self.thread.start()

    # -- stream handling ---------------------------------------------------------------
    def _open(self, first: bool = False) -> Any:
        """A new change stream from the resume token; None if change streams are unsupported."""
        import pymongo.errors  # noqa: PLC0415 - lazy pymongo: see the note at the top

        view = self.view
        pipeline = [{"$match": {"$or": [
            {"fullDocument.owner_id": view.owner_id},
            {"operationType": {"$in": ["update", "delete", "drop", "dropDatabase", "rename", "invalidate"]}},
        ]}}]
        kwargs: dict[str, Any] = {"full_document": "updateLookup", "max_await_time_ms": view.max_await_ms}
        if self.resume_token is not None:
            kwargs["resume_after"] = self.resume_token
        try:
            stream = view.collection.watch(pipeline, **kwargs)
        except (pymongo.errors.OperationFailure, NotImplementedError, AttributeError, TypeError) as exc:
            if not first:
                raise
            code = getattr(exc, "code", None)
            why = f"code {code}: {_first_line(exc)}" if code is not None else type(exc).__name__
            if view.mode == "watch":
                raise LiveError(f"change streams are unavailable on this server ({why}); use mode='poll'") from None
            # "auto": a server without change streams (standalone: 40573) is polled instead
            log.warning("change streams unavailable (%s); polling every %g s", why, view.poll_interval)
            return None
        token = getattr(stream, "resume_token", None)
        if token is not None:
            self.resume_token = token
        return stream

    def _run(self) -> None:
        if self.mode == "poll":
            self._poll_loop()
        else:
            self._watch_loop()

    def _watch_loop(self) -> None:
        import pymongo.errors  # noqa: PLC0415 - lazy pymongo: see the note at the top

        failures = 0
        while not self.stop_event.is_set():
            try:
                if self.stream is None:
                    self.stream = self._open()
                    if self._needs_snapshot:
                        self._resync()
                        self._needs_snapshot = False
                failures = 0
                while not self.stop_event.is_set():
                    change = self.stream.try_next()
                    token = getattr(self.stream, "resume_token", None)
                    if change is None:
                        if token is not None:
                            self.resume_token = token
                        continue
                    self.resume_token = token if token is not None else change.get("_id")
                    self._apply(change)
                    if change.get("operationType") == "invalidate":
                        self.resume_token = None
                        self._needs_snapshot = True
                        self._close_stream()
                        break
            except pymongo.errors.PyMongoError as exc:
                if self.stop_event.is_set():
                    break
                self._close_stream()
                code = getattr(exc, "code", None)
                if isinstance(exc, pymongo.errors.OperationFailure) and code in HISTORY_LOST:
                    log.warning("change stream history lost (code %s); resynchronising from a snapshot", code)
                    self.resume_token = None
                    self._needs_snapshot = True
                failures += 1
                self.reconnects += 1
                delay = min(self.view.retry_delay * (2 ** (failures - 1)), self.view.max_retry_delay)
                log.info("change stream interrupted (%s); resuming in %.2f s", type(exc).__name__, delay)
                self.stop_event.wait(delay)
            except Exception:  # never let the thread die silently
                log.exception("Atlas change stream stopped")
                break
        self._close_stream()

    def _poll_loop(self) -> None:
        import pymongo.errors  # noqa: PLC0415 - lazy pymongo: see the note at the top

        while not self.stop_event.wait(self.view.poll_interval):
            try:
                self._resync()
            except pymongo.errors.PyMongoError as exc:
                log.info("Atlas poll failed (%s); trying again in %g s", type(exc).__name__, self.view.poll_interval)

    def _resync(self) -> None:
        before = self.mirror.state()
        self.mirror = _Mirror(self.view.owner_id, self.view._find_owner_docs())
        self._emit(before)

    def _apply(self, change: dict[str, Any]) -> None:
        before = self.mirror.state()
        self.mirror.apply(change)
        self._emit(before)

    def _emit(self, before: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
        after = self.mirror.state()
        if after == before:
            return
        (ids0, kids0), (ids1, kids1) = before, after
        note = notification(self.view.clock(), "atlas", (kids0, ids0), (kids1, ids1))
        try:
            self.listener(note)
        except Exception:
            log.exception("Atlas listener raised; the feed continues")

    def _close_stream(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(Exception):  # closing a broken stream may fail; nothing to do
                stream.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=max(5.0, self.view.max_await_ms / 1000 * 3))
        self._close_stream()


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__


class AtlasCollectionView:
    """One owner's `Node` documents in a pymongo collection (or anything with its methods).

    `mode`: "auto" (change stream, falling back to polling), "watch" (change stream only)
    or "poll". `clock` gives the `time` of notifications (the session's clock).
    """

    def __init__(
        self,
        collection: Any,
        owner_id: str,
        *,
        mode: str = "auto",
        poll_interval: float = 1.0,
        max_await_ms: int = 500,
        retry_delay: float = 0.5,
        max_retry_delay: float = 30.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        _checks.text("owner_id", owner_id)
        _checks.choice("mode", mode, WATCH_MODES)
        _checks.number("poll_interval", poll_interval, 0, above=True)
        self.collection = collection
        self.owner_id = owner_id
        self.mode = mode
        self.poll_interval = poll_interval
        # how the change stream waits, and backs off after an error
        self.max_await_ms, self.retry_delay, self.max_retry_delay = max_await_ms, retry_delay, max_retry_delay
        start = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - start)
        self._feeds: list[_Feed] = []

    def _find_owner_docs(self) -> list[dict[str, Any]]:
        return list(self.collection.find({"owner_id": self.owner_id}))

    def _raw_root(self) -> dict[str, Any] | None:
        return self.collection.find_one({"owner_id": self.owner_id, "isRoot": True})

    # -- reads ------------------------------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        return [present(d) for d in self._find_owner_docs()]

    def root(self) -> dict[str, Any] | None:
        doc = self._raw_root()
        return present(doc) if doc is not None else None

    def info(self) -> Info:
        docs = self._find_owner_docs()
        root = next((d for d in docs if d.get("isRoot") is True), None)
        return Info(
            user_id=self.owner_id,
            root_id=id_str(root["_id"]) if root else None,
            nodes_total=len(docs),
            root_children=len(root.get("children") or []) if root else 0,
        )

    def subscribe(self, listener: NoteListener) -> Callable[[], None]:
        """Follow the owner's documents from now on; returns an idempotent unsubscribe."""
        feed = _Feed(self, listener)
        self._feeds.append(feed)

        def unsubscribe() -> None:
            if feed in self._feeds:
                self._feeds.remove(feed)
                feed.stop()

        return unsubscribe

    # -- server-side writes (the "writes through Atlas" variant) ----------------------------
    def ensure_root(self) -> dict[str, Any]:
        """The owner's root, created the way the original tool does on first start."""
        doc = self._raw_root()
        if doc is None:
            doc = {"_id": uuid.uuid4(), "text": "root", "children": [], "isRoot": True, "owner_id": self.owner_id}
            self.collection.insert_one(doc)
        return present(doc)

    def add_to_root(self, text: str) -> str:
        """Insert a node and $push it onto the root's children (two writes, as a device makes them)."""
        _checks.instance("text", text, str, "a string")
        root = self._raw_root()
        if root is None:
            self.ensure_root()
            root = self._raw_root()
        if root is None:  # created just now, yet not found: another client removed it meanwhile
            raise LiveError(f"owner {self.owner_id!r} has no root document to append to")
        node_id = uuid.uuid4()
        self.collection.insert_one({"_id": node_id, "text": text, "children": [], "isRoot": False,
                                    "owner_id": self.owner_id})
        self.collection.update_one({"_id": root["_id"], "owner_id": self.owner_id},
                                   {"$push": {"children": node_id}})
        return id_str(node_id)

    def reset(self) -> int:
        return reset(self.collection, self.owner_id)

    def close(self) -> None:
        for feed in list(self._feeds):
            feed.stop()
        self._feeds.clear()
