"""Find the nodes no path from their owner's root reaches, and re-attach them.

Why it exists: the bug leaves the lost nodes' documents intact; only the root's
`children` forgot them. Any MongoDB collection of the report's shape can be audited:
reachability is computed by the server with `$graphLookup` where it can, by a
client-side traversal otherwise (standalone stand-ins, the emulator's collection, or a
server that refuses the aggregation). Traversal follows only documents of the same
owner, tolerates cycles (and reports them) and dangling links.

Repair is a dry run unless `apply=True`; applying writes the root document to a backup
file first (atomically, MongoDB extended JSON), then adds the orphans to the root's
`children` with `$addToSet`, so repeating a repair changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from repro_kit import _checks
from repro_kit._atomic import write_text_atomic
from repro_kit._checks import InputError
from repro_kit.live.appservices_api import LiveError
from repro_kit.live.atlas import id_str

# pymongo and bson (0.3 s to import, python -X importtime) are imported where the kit talks to
# MongoDB, not here: the CLI registers the live commands on every start.
__all__ = ["OwnerAudit", "AuditResult", "RepairResult", "find_orphans", "repair", "write_backup"]

METHODS = ("auto", "aggregate", "traversal")


@dataclasses.dataclass(frozen=True)
class OwnerAudit:
    """One owner's tree. Ids are strings; `reachable` includes the root(s)."""

    owner_id: str
    root_id: str | None
    reachable: tuple[str, ...]
    orphans: tuple[str, ...]
    cycles: tuple[tuple[str, ...], ...]  # each cycle as its ids in link order
    dangling: tuple[str, ...]  # children ids with no document of this owner
    method: str  # "aggregate" | "traversal"
    other_roots: tuple[str, ...] = ()  # more documents with isRoot: true (also treated as roots)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class AuditResult:
    owners: tuple[OwnerAudit, ...]

    @property
    def method(self) -> str:
        methods = {o.method for o in self.owners}
        return methods.pop() if len(methods) == 1 else ("mixed" if methods else "none")

    @property
    def orphan_count(self) -> int:
        return sum(len(o.orphans) for o in self.owners)

    def owner(self, owner_id: str) -> OwnerAudit:
        for audit in self.owners:
            if audit.owner_id == owner_id:
                return audit
        raise KeyError(owner_id)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "orphan_count": self.orphan_count, "owners": [o.to_dict() for o in self.owners]}


@dataclasses.dataclass(frozen=True)
class RepairResult:
    owner_id: str
    root_id: str | None
    orphans: tuple[str, ...]
    attached: tuple[str, ...]  # appended to the root's children (or that would be, on a dry run)
    applied: bool
    backup_path: str | None
    modified: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- reading the graph ------------------------------------------------------------------------


def _is_pymongo(collection: Any) -> bool:
    try:
        from pymongo.collection import Collection  # noqa: PLC0415 - lazy pymongo: see the note at the top
    except ImportError:  # pragma: no cover
        return False
    return isinstance(collection, Collection)


_PROJECTION = {"children": 1, "isRoot": 1, "owner_id": 1}


def _find(collection: Any, flt: dict[str, Any]) -> Iterable[dict[str, Any]]:
    if _is_pymongo(collection):
        return collection.find(flt, _PROJECTION)
    return collection.find(flt)


@dataclasses.dataclass
class _Graph:
    owner_id: str
    raw: dict[str, Any]  # id string -> the stored _id value
    children: dict[str, list[str]]  # id string -> child id strings (in order, as stored)
    roots: list[str]
    reachable: list[str]
    method: str


def _owners(collection: Any) -> list[str]:
    if _is_pymongo(collection):
        values = collection.distinct("owner_id")
    else:
        values = [d.get("owner_id") for d in collection.find({})]
    seen: dict[str, None] = {}
    for value in values:
        if isinstance(value, str) and value:
            seen.setdefault(value, None)
    return list(seen)


def _reach(children: dict[str, list[str]], starts: Iterable[str]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()
    stack = [s for s in reversed(list(starts)) if s in children]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        order.append(node)
        stack.extend(c for c in reversed(children[node]) if c in children and c not in seen)
    return order


def _graph_by_traversal(collection: Any, owner_id: str) -> _Graph:
    raw: dict[str, Any] = {}
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    for doc in _find(collection, {"owner_id": owner_id}):
        key = id_str(doc["_id"])
        raw[key] = doc["_id"]
        children[key] = [id_str(c) for c in (doc.get("children") or [])]
        if doc.get("isRoot") is True:
            roots.append(key)
    return _Graph(owner_id, raw, children, roots, _reach(children, roots), "traversal")


def _graph_by_aggregate(collection: Any, owner_id: str) -> _Graph:
    """Reachability by the server ($graphLookup, restricted to the owner's documents)."""
    pipeline = [
        {"$match": {"owner_id": owner_id, "isRoot": True}},
        {"$graphLookup": {"from": collection.name, "startWith": "$children", "connectFromField": "children",
                          "connectToField": "_id", "as": "reach", "restrictSearchWithMatch": {"owner_id": owner_id}}},
        {"$project": {"children": 1, "reach._id": 1, "reach.children": 1}},
    ]
    raw: dict[str, Any] = {}
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    reached: set[str] = set()
    for root in collection.aggregate(pipeline):
        key = id_str(root["_id"])
        roots.append(key)
        for doc in [root, *root.get("reach", [])]:
            k = id_str(doc["_id"])
            raw[k] = doc["_id"]
            children[k] = [id_str(c) for c in (doc.get("children") or [])]
            reached.add(k)
    for doc in _find(collection, {"owner_id": owner_id, "_id": {"$nin": [raw[k] for k in reached]}}):
        key = id_str(doc["_id"])
        raw[key] = doc["_id"]
        children[key] = [id_str(c) for c in (doc.get("children") or [])]
    # order the server's reachable set as a traversal would, for stable output
    reachable = [k for k in _reach(children, roots) if k in reached]
    return _Graph(owner_id, raw, children, roots, reachable, "aggregate")


def _graph(collection: Any, owner_id: str, method: str) -> _Graph:
    use_aggregate = method == "aggregate" or (method == "auto" and _is_pymongo(collection))
    if use_aggregate:
        import pymongo.errors  # noqa: PLC0415 - lazy pymongo: see the note at the top

        try:
            return _graph_by_aggregate(collection, owner_id)
        except (pymongo.errors.OperationFailure, NotImplementedError, AttributeError):
            if method == "aggregate":
                raise
            # e.g. $graphLookup over the 100 MB stage limit, or a server without it
    return _graph_by_traversal(collection, owner_id)


def _cycles(children: dict[str, list[str]]) -> list[tuple[str, ...]]:
    """Each cycle found by a depth-first search (one per back edge), as ids in link order."""
    WHITE, GRAY, BLACK = 0, 1, 2
    color = dict.fromkeys(children, WHITE)
    found: list[tuple[str, ...]] = []
    for start in children:
        if color[start] != WHITE:
            continue
        path: list[str] = [start]
        iters = [iter(children[start])]
        color[start] = GRAY
        while iters:
            child = next(iters[-1], None)
            if child is None:
                color[path.pop()] = BLACK
                iters.pop()
                continue
            if child not in children:
                continue
            if color[child] == GRAY:
                found.append(tuple(path[path.index(child):]))
            elif color[child] == WHITE:
                color[child] = GRAY
                path.append(child)
                iters.append(iter(children[child]))
    return found


def _owner_audit(graph: _Graph) -> OwnerAudit:
    reached = set(graph.reachable)
    dangling = dict.fromkeys(c for kids in graph.children.values() for c in kids if c not in graph.children)
    return OwnerAudit(
        owner_id=graph.owner_id,
        root_id=graph.roots[0] if graph.roots else None,
        reachable=tuple(graph.reachable),
        orphans=tuple(k for k in graph.children if k not in reached),
        cycles=tuple(_cycles(graph.children)),
        dangling=tuple(dangling),
        method=graph.method,
        other_roots=tuple(graph.roots[1:]),
    )


def find_orphans(collection: Any, owner_id: str | None = None, *, method: str = "auto") -> AuditResult:
    """Audit one owner, or every owner in the collection (`owner_id=None`).

    `method`: "auto" (server-side `$graphLookup` on a pymongo collection, else traversal),
    "aggregate" or "traversal". A collection only needs `find(filter)` for traversal.
    """
    if owner_id is not None:
        _checks.text("owner_id", owner_id)
    _checks.choice("method", method, METHODS)
    owners = [owner_id] if owner_id is not None else _owners(collection)
    return AuditResult(tuple(_owner_audit(_graph(collection, o, method)) for o in owners))


# --- repair -------------------------------------------------------------------------------------


def _orphan_tops(graph: _Graph, orphans: list[str]) -> list[str]:
    """The fewest orphans whose subtrees cover every orphan: those no other orphan links to,
    plus one member of each orphan cycle that nothing else reaches."""
    orphan_set = set(orphans)
    linked = {c for o in orphans for c in graph.children[o] if c in orphan_set and c != o}
    tops = [o for o in orphans if o not in linked]
    covered = set(_reach(graph.children, tops))
    for o in orphans:
        if o not in covered:
            tops.append(o)
            covered.update(_reach(graph.children, [o]))
    return tops


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def write_backup(backup_dir: str | os.PathLike[str], doc: dict[str, Any], name: str) -> Path:
    """Write `doc` as canonical extended JSON (UUIDs as binary subtype 4) atomically; returns the path."""
    from bson import json_util  # noqa: PLC0415 - lazy pymongo: see the note at the top
    from bson.binary import UuidRepresentation  # noqa: PLC0415 - lazy pymongo: see the note at the top

    options = json_util.CANONICAL_JSON_OPTIONS.with_options(uuid_representation=UuidRepresentation.STANDARD)
    directory = Path(backup_dir)
    directory.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(directory / name, json_util.dumps(doc, json_options=options, indent=2) + "\n")


def repair(
    collection: Any,
    owner_id: str,
    backup_dir: str | os.PathLike[str] | None = None,
    *,
    apply: bool = False,
    method: str = "auto",
) -> RepairResult:
    """Re-attach `owner_id`'s orphans to its root; a dry run unless `apply=True`.

    Attaches the top of each orphaned subtree (a lost leaf is its own top), appended to
    the root's `children` with `$addToSet`. Before writing, the root document is saved to
    `backup_dir` (required when applying). Only the owner's root is written.
    """
    _checks.text("owner_id", owner_id)
    _checks.choice("method", method, METHODS)
    if apply and backup_dir is None:
        raise InputError("backup_dir", "required to apply a repair (the root is backed up first)")
    graph = _graph(collection, owner_id, method)
    audit = _owner_audit(graph)
    if audit.root_id is None:
        if audit.orphans:
            raise LiveError(f"owner {owner_id!r} has no root document (isRoot: true) to attach "
                            f"{len(audit.orphans)} orphans to")
        return RepairResult(owner_id, None, (), (), apply, None, 0)
    tops = _orphan_tops(graph, list(audit.orphans))
    if not apply or not tops:
        return RepairResult(owner_id, audit.root_id, audit.orphans, tuple(tops), apply, None, 0)
    root_raw = graph.raw[audit.root_id]
    root_doc = collection.find_one({"_id": root_raw, "owner_id": owner_id})
    if root_doc is None:
        raise LiveError(f"root {audit.root_id} of owner {owner_id!r} disappeared during the repair; nothing written")
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = f"root-{_UNSAFE.sub('_', owner_id)[:64]}-{_UNSAFE.sub('_', audit.root_id)[:64]}-{stamp}.json"
    backup = write_backup(backup_dir, root_doc, name)  # type: ignore[arg-type]
    result = collection.update_one(
        {"_id": root_raw, "owner_id": owner_id},
        {"$addToSet": {"children": {"$each": [graph.raw[t] for t in tops]}}},
    )
    modified = int(getattr(result, "modified_count", result) or 0)
    return RepairResult(owner_id, audit.root_id, audit.orphans, tuple(tops), True, str(backup), modified)
