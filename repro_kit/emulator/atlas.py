"""The Atlas `Node` collection: an in-memory document store with a change feed.

Only the MongoDB semantics the translator, the watcher and the audit need: equality
and `$in` filters, `$set`/`$push`/`$addToSet`/`$pull` updates, and change events
shaped like a change stream's (`operationType`, `documentKey`, `fullDocument`).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["AtlasCollection", "clone"]

ChangeListener = Callable[[dict[str, Any]], None]

_ATOMS = (str, int, float, bool, type(None))


def clone(value: Any) -> Any:
    """A copy as independent as `copy.deepcopy`'s, fast for what documents hold here: a dict
    or list of atoms (strings, numbers, booleans) is copied in one step; anything nested goes
    through deepcopy."""
    if isinstance(value, dict):
        if all(isinstance(v, _ATOMS) or (isinstance(v, list) and all(isinstance(x, _ATOMS) for x in v))
               for v in value.values()):
            return {k: (list(v) if isinstance(v, list) else v) for k, v in value.items()}
        return copy.deepcopy(value)
    if isinstance(value, list):
        return list(value) if all(isinstance(x, _ATOMS) for x in value) else copy.deepcopy(value)
    return value if isinstance(value, _ATOMS) else copy.deepcopy(value)


def _matches(doc: dict[str, Any], flt: dict[str, Any]) -> bool:
    for key, cond in flt.items():
        value = doc.get(key)
        if isinstance(cond, dict):
            for op, arg in cond.items():
                if op == "$in":
                    if value not in arg:
                        return False
                elif op == "$ne":
                    if value == arg:
                        return False
                elif op == "$exists":
                    if (key in doc) != bool(arg):
                        return False
                else:
                    raise ValueError(f"filter: operator {op!r} is not supported by the emulated collection")
        elif value != cond:
            return False
    return True


class AtlasCollection:
    """Documents keyed by `_id` (strings here; UUIDs in a real Atlas), in insertion order."""

    # mypyc: fields `EmulatedWorld.close` deletes (a compiled class has no __dict__ to clear)
    __deletable__ = ("name", "_docs", "_listeners", "_clock", "_seq")

    def __init__(self, name: str = "Node") -> None:
        self.name = name
        self._docs: dict[Any, dict[str, Any]] = {}
        self._listeners: list[tuple[ChangeListener, str | None]] = []
        self._clock: Callable[[], float] = lambda: 0.0
        self._seq = itertools.count()

    # -- change feed -----------------------------------------------------------------
    def watch(self, listener: ChangeListener, ignore_source: str | None = None) -> Callable[[], None]:
        """Call `listener(change)` after every write (except those tagged `ignore_source`,
        e.g. a writer's own); returns an unsubscribe function."""
        entry = (listener, ignore_source)
        self._listeners.append(entry)
        return lambda: self._listeners.remove(entry) if entry in self._listeners else None

    def _emit(self, op: str, _id: Any, source: str | None) -> None:
        listeners = self._listeners
        if len(listeners) == 1 and source is not None and listeners[0][1] == source:
            return  # (the usual case: the writer's own feed, which ignores its own writes)
        targets = [listener for listener, ignored in listeners if source is None or source != ignored]
        if not targets:
            return
        doc = self._docs.get(_id)
        change = {
            "_seq": next(self._seq),
            "operationType": op,
            "documentKey": {"_id": _id},
            "fullDocument": clone(doc) if doc is not None else None,
            "source": source,
            "time": self._clock(),
        }
        for listener in targets:
            listener(change)

    # -- reads ---------------------------------------------------------------------------
    def _matching(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        """The stored documents (not copies) matching `flt`, in natural order."""
        _id = flt.get("_id")
        if _id is not None and not isinstance(_id, dict):  # a primary-key lookup: no scan
            doc = self._docs.get(_id)
            return [doc] if doc is not None and _matches(doc, flt) else []
        return [doc for doc in self._docs.values() if _matches(doc, flt)]

    def find(self, filter: dict[str, Any] | None = None,
             projection: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        flt = filter or {}
        for doc in self._matching(flt):
            out = clone(doc)
            if projection:
                keep = {k for k, v in projection.items() if v}
                out = {k: v for k, v in out.items() if k in keep or k == "_id"}
            yield out

    def find_one(self, filter: dict[str, Any] | None = None) -> dict[str, Any] | None:
        return next(self.find(filter), None)

    def count_documents(self, filter: dict[str, Any]) -> int:
        return len(self._matching(filter))

    def get(self, _id: Any) -> dict[str, Any] | None:
        """The stored document itself (no copy): for the emulator's own fast paths."""
        return self._docs.get(_id)

    def __len__(self) -> int:
        return len(self._docs)

    # -- writes --------------------------------------------------------------------------
    def insert_one(self, doc: dict[str, Any], *, source: str | None = None, take: bool = False) -> Any:
        _id = doc["_id"]
        if _id in self._docs:
            raise ValueError(f"insert_one: duplicate key {_id!r}")
        self._docs[_id] = doc if take else clone(doc)
        self._emit("insert", _id, source)
        return _id

    def replace_one(self, filter: dict[str, Any], doc: dict[str, Any], upsert: bool = False, *,
                    source: str | None = None, take: bool = False) -> int:
        target = next(iter(self._matching(filter)), None)
        if target is None:
            if not upsert:
                return 0
            return 1 if self.insert_one(doc, source=source, take=take) is not None else 0
        _id = target["_id"]
        new = doc if take else clone(doc)  # take: the caller hands over a document it built for this
        new["_id"] = _id
        self._docs[_id] = new
        self._emit("replace", _id, source)
        return 1

    def put(self, doc: dict[str, Any], *, source: str | None = None) -> None:
        """`replace_one({"_id": doc["_id"]}, doc, upsert=True, take=True)` by primary key alone: the
        translator's write of a document it built for this (hundreds of thousands in a fleet)."""
        _id = doc["_id"]
        docs = self._docs
        op = "replace" if _id in docs else "insert"
        docs[_id] = doc
        self._emit(op, _id, source)

    def update_one(self, filter: dict[str, Any], update: dict[str, Any], *, source: str | None = None) -> int:
        target = next(iter(self._matching(filter)), None)
        if target is None:
            return 0
        for op, fields in update.items():
            for key, arg in fields.items():
                if op == "$set":
                    target[key] = copy.deepcopy(arg)
                elif op in ("$push", "$addToSet"):
                    items = arg["$each"] if isinstance(arg, dict) and "$each" in arg else [arg]
                    lst = target.setdefault(key, [])
                    for item in items:
                        if op == "$push" or item not in lst:
                            lst.append(copy.deepcopy(item))
                elif op == "$pull":
                    target[key] = [x for x in target.get(key, []) if x != arg]
                else:
                    raise ValueError(f"update: operator {op!r} is not supported by the emulated collection")
        self._emit("update", target["_id"], source)
        return 1

    def delete_one(self, filter: dict[str, Any], *, source: str | None = None) -> int:
        target = next(iter(self._matching(filter)), None)
        if target is None:
            return 0
        del self._docs[target["_id"]]
        self._emit("delete", target["_id"], source)
        return 1

    def delete_many(self, filter: dict[str, Any], *, source: str | None = None) -> int:
        ids = [d["_id"] for d in self._docs.values() if _matches(d, filter)]
        for _id in ids:
            del self._docs[_id]
            self._emit("delete", _id, source)
        return len(ids)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every document, deep-copied, in natural (insertion) order."""
        return [clone(doc) for doc in self._docs.values()]
