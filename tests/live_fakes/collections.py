"""In-process stand-ins for a pymongo collection.

`FakeCollection`: find/find_one/insert_one/update_one/delete_many with the few filter and
update operators the kit uses, and `watch()` shaped like pymongo's: a context-manager
stream with `try_next()`, `resume_token` and `close()`, resumable with `resume_after`.
Scripted faults: `unsupported` (watch raises OperationFailure 40573 like a standalone
server), `drop_next` (the open stream dies with a ConnectionFailure before delivering
the next event), `lose_history` (the next resume fails with code 286).
No `aggregate`: the audit must traverse client-side.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any, Iterator

from pymongo.errors import ConnectionFailure, OperationFailure


def _matches(doc: dict[str, Any], flt: dict[str, Any]) -> bool:
    for key, cond in flt.items():
        value = doc.get(key)
        if isinstance(cond, dict) and any(k.startswith("$") for k in cond):
            for op, arg in cond.items():
                if op == "$in" and value not in arg:
                    return False
                if op == "$nin" and value in arg:
                    return False
                if op not in ("$in", "$nin"):
                    raise NotImplementedError(op)
        elif value != cond:
            return False
    return True


class UpdateResult:
    def __init__(self, matched: int, modified: int) -> None:
        self.matched_count = matched
        self.modified_count = modified


class DeleteResult:
    def __init__(self, deleted: int) -> None:
        self.deleted_count = deleted


class FakeClient:
    """What `live.commands._open_collection` returns beside the collection: only closed."""

    def close(self) -> None:
        pass


class FakeCollection:
    name = "Node"

    def __init__(self, docs: list[dict[str, Any]] | None = None) -> None:
        self.lock = threading.RLock()
        self.docs: dict[Any, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # event i has resume token {"_data": i + 1}
        self.watch_calls: list[dict[str, Any]] = []
        self.updates: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.unsupported = False
        self.drop_next = False
        self.lose_history = False
        self.before_update = None  # callable(filter, update) run before each update_one
        for doc in docs or []:
            self.docs[doc["_id"]] = copy.deepcopy(doc)

    # -- reads ---------------------------------------------------------------------------------
    def find(self, filter: dict[str, Any] | None = None, projection: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        with self.lock:
            found = [copy.deepcopy(d) for d in self.docs.values() if _matches(d, filter or {})]
        return iter(found)

    def find_one(self, filter: dict[str, Any] | None = None) -> dict[str, Any] | None:
        return next(self.find(filter), None)

    # -- writes ----------------------------------------------------------------------------------
    def _event(self, op: str, _id: Any, **extra: Any) -> None:
        event = {"_id": {"_data": len(self.events) + 1}, "operationType": op, "documentKey": {"_id": _id}, **extra}
        self.events.append(event)

    def insert_one(self, doc: dict[str, Any]) -> None:
        with self.lock:
            if doc["_id"] in self.docs:
                raise ValueError("duplicate key")
            self.docs[doc["_id"]] = copy.deepcopy(doc)
            self._event("insert", doc["_id"], fullDocument=copy.deepcopy(doc))

    def update_one(self, filter: dict[str, Any], update: dict[str, Any]) -> UpdateResult:
        if self.before_update is not None:
            self.before_update(filter, update)
        with self.lock:
            self.updates.append((copy.deepcopy(filter), copy.deepcopy(update)))
            doc = next((d for d in self.docs.values() if _matches(d, filter)), None)
            if doc is None:
                return UpdateResult(0, 0)
            updated: dict[str, Any] = {}
            modified = False
            for op, fields in update.items():
                for key, arg in fields.items():
                    items = arg["$each"] if isinstance(arg, dict) and "$each" in arg else [arg]
                    if op == "$set":
                        modified |= doc.get(key) != arg
                        doc[key] = copy.deepcopy(arg)
                        updated[key] = copy.deepcopy(arg)
                    elif op in ("$push", "$addToSet"):
                        lst = doc.setdefault(key, [])
                        for item in items:
                            if op == "$push" or item not in lst:
                                lst.append(copy.deepcopy(item))
                                updated[f"{key}.{len(lst) - 1}"] = copy.deepcopy(item)
                                modified = True
                    else:
                        raise NotImplementedError(op)
            if modified:
                self._event("update", doc["_id"], updateDescription={"updatedFields": updated, "removedFields": [],
                                                                      "truncatedArrays": []},
                            fullDocument=copy.deepcopy(doc))
            return UpdateResult(1, int(modified))

    def delete_many(self, filter: dict[str, Any]) -> DeleteResult:
        with self.lock:
            gone = [k for k, d in self.docs.items() if _matches(d, filter)]
            for k in gone:
                del self.docs[k]
                self._event("delete", k)
        return DeleteResult(len(gone))

    # -- change stream ---------------------------------------------------------------------------
    def watch(self, pipeline: list[dict[str, Any]] | None = None, resume_after: Any = None, **kwargs: Any) -> "FakeStream":
        with self.lock:
            self.watch_calls.append({"pipeline": pipeline, "resume_after": copy.deepcopy(resume_after), **kwargs})
            if self.unsupported:
                raise OperationFailure("The $changeStream stage is only supported on replica sets", code=40573)
            if resume_after is not None and self.lose_history:
                self.lose_history = False
                raise OperationFailure("resume point may no longer be in the oplog", code=286)
            start = resume_after["_data"] if resume_after is not None else len(self.events)
            return FakeStream(self, start)


class FakeStream:
    """pymongo ChangeStream's surface: try_next, resume_token, close, context manager."""

    def __init__(self, collection: FakeCollection, position: int) -> None:
        self.collection = collection
        self.position = position
        self.resume_token: Any = {"_data": position}
        self.closed = False

    def __enter__(self) -> "FakeStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True

    def try_next(self) -> dict[str, Any] | None:
        if self.closed:
            raise ConnectionFailure("stream closed")
        with self.collection.lock:
            pending = self.position < len(self.collection.events)
            if pending and self.collection.drop_next:
                self.collection.drop_next = False
                self.closed = True
                raise ConnectionFailure("connection reset by peer")
            if pending:
                event = copy.deepcopy(self.collection.events[self.position])
                self.position += 1
                self.resume_token = event["_id"]
                return event
            self.resume_token = {"_data": self.position}  # post-batch resume token
        time.sleep(0.005)  # max_await_time_ms, shortened
        return None
