"""Why each lost node was lost, read from the sync server's trace (the merge's own evidence).

The emulator records every integrated changeset and every instruction the merge discarded
or rewrote, with the rule's name (`recording.TRACE_FILE`). For a node missing from the
root's children at the end, the explanation is the discard of the instruction that linked
it there: which changeset carried the discarding instruction, under which rule, and how
that changeset came to be concurrent with the node (a re-import based on a server version
from before the node existed). A node the trace does not account for is reported as
unexplained, never guessed: like Elle, the kit names only what the history witnesses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["Cause", "Step", "Explanation", "Evidence", "describe_instruction", "SERVER_ORIGIN"]

#: Peer id of the changesets the server itself makes (re-import batches, Atlas edits).
SERVER_ORIGIN = 1


def _short(pk: Any) -> str:
    text = str(pk)
    return text[:8] if len(text) > 12 else text


def describe_instruction(instr: Mapping[str, Any], root_id: str | None = None) -> str:
    """`Clear(root.children)`, `ArrayInsert(root.children[6] = 85776e9a)`, `EraseObject(1a2b3c4d)`."""
    op = str(instr.get("op"))
    obj = "root" if root_id is not None and instr.get("object") == root_id else _short(instr.get("object"))
    field = instr.get("field")
    if op in ("CreateObject", "EraseObject"):
        return f"{op}({obj})"
    target = f"{obj}.{field}"
    if op == "Clear":
        return f"Clear({target})"
    if op == "ArrayInsert":
        return f"ArrayInsert({target}[{instr.get('index')}] = {_short(instr.get('value'))})"
    if op == "ArrayErase":
        return f"ArrayErase({target}[{instr.get('index')}])"
    if "index" in instr:
        return f"Update({target}[{instr.get('index')}] = {_short(instr.get('value'))})"
    return f"Update({target} = {instr.get('value')!r})"


@dataclasses.dataclass(frozen=True)
class Cause:
    """One discarding instruction and every lost node it accounts for.

    `changeset`: the changeset that carried it: {"version", "origin" ("re-import" or the
    uploading peer), "reimport_batch", "reimport_batches", "base_version", "time",
    "instruction"} (None where the trace lacks a field)."""

    rule: str
    changeset: dict[str, Any]
    nodes: tuple[str, ...]

    def describe(self) -> str:
        """e.g. "14 nodes lost to one Clear(root.children) in re-import batch 1 (...), rule clear-vs-array-insert"."""
        n = len(self.nodes)
        return (f"{n} node{'s' if n != 1 else ''} lost to one {self.changeset.get('instruction')} in "
                f"{changeset_label(self.changeset)}, rule {self.rule}")

    def as_dict(self) -> dict[str, Any]:
        """report.json's shape: {rule, changeset, nodes}."""
        return {"rule": self.rule, "changeset": dict(self.changeset), "nodes": list(self.nodes)}


def changeset_label(changeset: Mapping[str, Any]) -> str:
    """"re-import batch 1 of 1 (server version 22, based on version 7, at 185.50 s)"."""
    where = []
    if changeset.get("version") is not None:
        where.append(f"server version {changeset['version']}")
    if changeset.get("base_version") is not None:
        where.append(f"based on version {changeset['base_version']}")
    if changeset.get("time") is not None:
        where.append(f"at {changeset['time']:.2f} s")
    suffix = f" ({', '.join(where)})" if where else ""
    if changeset.get("origin") == "re-import":
        of = f" of {changeset['reimport_batches']}" if changeset.get("reimport_batches") else ""
        return f"re-import batch {changeset.get('reimport_batch')}{of}{suffix}"
    if changeset.get("origin") == "server":
        return f"a server-origin changeset (an edit made in Atlas){suffix}"
    return f"a changeset of peer {changeset.get('origin')}{suffix}"


@dataclasses.dataclass(frozen=True)
class Step:
    """One link of a causal chain: when, who, what."""

    time: float | None
    actor: str  # "device" | "sync server" | "translator" | "Atlas"
    text: str

    def __str__(self) -> str:
        at = f"{self.time:8.2f} s" if self.time is not None else "       – "
        return f"{at}  {self.actor}: {self.text}"


@dataclasses.dataclass(frozen=True)
class Explanation:
    """The causal chain of one lost node; `cause` is None when the trace does not show one."""

    node_id: str
    explained: bool
    cause: Cause | None
    steps: tuple[Step, ...]
    discard: dict[str, Any] | None = None

    def __str__(self) -> str:
        head = f"node {self.node_id}: " + ("lost, explained by the trace" if self.explained
                                          else "lost, unexplained (the trace shows no cause)")
        return "\n".join([head, *(f"  {s}" for s in self.steps)])


class Evidence:
    """The trace indexed for explanation: integrated changesets by version, and discards by node."""

    def __init__(self, trace: Sequence[Mapping[str, Any]], root_id: str | None) -> None:
        self.root_id = root_id
        self.integrated: dict[int, Mapping[str, Any]] = {}
        self.created_in: dict[str, int] = {}
        self.linked_in: dict[str, int] = {}
        self.discards: dict[str, list[Mapping[str, Any]]] = {}
        self.rewrites = 0
        for record in trace:
            kind = record.get("kind")
            if kind == "integrate":
                self._integrated(record)
            elif kind == "discarded":
                self._discarded(record)
            elif kind == "rewritten":
                self.rewrites += 1

    def __bool__(self) -> bool:
        return bool(self.integrated or self.discards)

    def _integrated(self, record: Mapping[str, Any]) -> None:
        version = record.get("version")
        if not isinstance(version, int):
            return
        self.integrated[version] = record
        for instr in record.get("instructions") or ():
            op = instr.get("op")
            if op == "CreateObject":
                self.created_in.setdefault(str(instr.get("object")), version)
            elif op == "ArrayInsert" and instr.get("field") == "children" and self._into_root(instr):
                self.linked_in.setdefault(str(instr.get("value")), version)

    def _into_root(self, instr: Mapping[str, Any]) -> bool:
        return self.root_id is None or instr.get("object") == self.root_id

    def _discarded(self, record: Mapping[str, Any]) -> None:
        instr = record.get("instruction") or {}
        if instr.get("op") == "ArrayInsert" and instr.get("field") == "children" and self._into_root(instr):
            self.discards.setdefault(str(instr.get("value")), []).append(record)
        elif instr.get("op") == "CreateObject":
            self.discards.setdefault(str(instr.get("object")), []).append(record)

    def discard_of(self, node_id: str) -> Mapping[str, Any] | None:
        """The record that took the node out: the server's discard of its link, else a device's."""
        records = self.discards.get(node_id, [])
        for at in ("server", "device"):
            for record in records:
                if record.get("at") == at and (record.get("instruction") or {}).get("op") == "ArrayInsert":
                    return record
        return records[0] if records else None

    def changeset(self, version: Any, by: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What the trace says of the changeset at `version` (the discarding one)."""
        record = self.integrated.get(version) if isinstance(version, int) else None
        out: dict[str, Any] = {"version": version if isinstance(version, int) else None, "origin": None,
                               "reimport_batch": None, "reimport_batches": None, "base_version": None,
                               "time": None, "instruction": describe_instruction(by, self.root_id) if by else None}
        if record is not None:
            origin = record.get("origin")
            if record.get("reimport_batch") is not None:
                out["origin"] = "re-import"
            elif origin == SERVER_ORIGIN:
                out["origin"] = "server"
            else:
                out["origin"] = origin
            out["reimport_batch"] = record.get("reimport_batch")
            out["reimport_batches"] = record.get("reimport_batches")
            out["base_version"] = record.get("base_version")
            out["time"] = round(float(record["time"]), 6) if record.get("time") is not None else None
        return out


def group_causes(evidence: Evidence, lost: Iterable[str]) -> tuple[tuple[Cause, ...], tuple[str, ...]]:
    """(causes, unexplained): lost nodes grouped by the instruction that discarded their link."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    heads: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
    unexplained: list[str] = []
    for node in lost:
        record = evidence.discard_of(node)
        if record is None:
            unexplained.append(node)
            continue
        by = record.get("by") or {}
        key = (record.get("rule"), record.get("by_in"), by.get("op"), by.get("object"), by.get("field"))
        groups.setdefault(key, []).append(node)
        heads.setdefault(key, (str(record.get("rule")), evidence.changeset(record.get("by_in"), by)))
    causes = [Cause(rule=heads[k][0], changeset=heads[k][1], nodes=tuple(nodes)) for k, nodes in groups.items()]
    causes.sort(key=lambda c: (-len(c.nodes), c.changeset.get("version") or 0))
    return tuple(causes), tuple(unexplained)
