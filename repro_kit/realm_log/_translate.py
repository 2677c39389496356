"""realm-core instructions -> the kit's instruction format (DESIGN.md "Contracts"), or a reason why not.

Why strict: the kit's merge (`repro_kit.emulator.ot`) models one table, `Node`, whose one list
field, `children`, holds links to other `Node`s; its values are JSON scalars. Anything else a
log holds (other tables, other lists, sets, dictionaries, ArrayMove, AddInteger, values the
format has no type for, embedded paths) is reported as `Untranslatable`, never dropped in
silence and never bent into something it is not. `touches_list` says whether the instruction
acts on `Node.children` (or on the whole table or column): then the replay of that list cannot
be trusted, and the result is inconclusive. Schema instructions (AddTable, AddColumn) carry no
data and have no equivalent; they are counted, not reported as losses of fidelity.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

# isort: off
from ._instructions import (
    AddColumn, AddTable, ArrayErase, ArrayInsert, Clear, CreateObject, EraseColumn, EraseObject, EraseTable,
    Instruction, Link, ObjectId, Payload, Update, pk_text,
)
# isort: on

__all__ = ["TABLE", "LIST_FIELD", "Untranslatable", "Translation", "translate", "kit_pk", "describe"]

TABLE = "Node"
LIST_FIELD = "children"

#: Payload types whose values the kit's format holds as they are (JSON scalars).
_SCALARS = ("Null", "Int", "Bool", "String", "Float", "Double")
_SCHEMA = (AddTable, AddColumn)


@dataclasses.dataclass(frozen=True)
class Untranslatable:
    """An instruction the kit's format cannot express, and why; `touches_list`: it acts on Node.children."""

    instruction: str
    reason: str
    touches_list: bool


@dataclasses.dataclass(frozen=True)
class Translation:
    """One changeset's instructions in the kit's format, and what could not be translated."""

    instructions: list[dict[str, Any]]
    untranslatable: list[Untranslatable]
    schema: int  # AddTable/AddColumn instructions: no data, no equivalent


def kit_pk(pk: Any) -> str | None:
    """A primary key as the kit's string pk: a string as it is, an Int, ObjectId or UUID as text;
    None for a Null or GlobalKey key (no pk the kit can name)."""
    if isinstance(pk, str):
        return pk
    if isinstance(pk, bool) or pk is None:
        return None
    if isinstance(pk, (int, ObjectId, uuid.UUID)):
        return str(pk)
    return None


def describe(instr: Instruction) -> str:
    """An instruction in realm-core's own words: `Clear Node["root"].children`."""
    where = getattr(instr, "where", None)
    if where is not None:
        return f"{instr.op} {where}"
    if isinstance(instr, (CreateObject, EraseObject)):
        return f"{instr.op} {instr.table}[{pk_text(instr.object)}]"
    if isinstance(instr, (AddColumn, EraseColumn)):
        return f"{instr.op} {instr.table}.{instr.field}"
    return f"{instr.op} {instr.table}"


def _value(payload: Payload) -> tuple[bool, Any, str]:
    """(ok, kit value, reason if not) of a field value."""
    if payload.type in _SCALARS:
        return True, payload.value, ""
    if payload.type == "Link" and isinstance(payload.value, Link) and payload.value.table == TABLE:
        pk = kit_pk(payload.value.key)
        if pk is not None:
            return True, pk, ""
    return False, None, f"a {payload.type} value has no equivalent in the kit's format"


class _Refused(Exception):
    """An instruction the kit's format cannot express: why, and whether it touches Node.children."""

    def __init__(self, reason: str, touches: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.touches = touches


def _one(instr: Instruction) -> tuple[dict[str, Any] | None, Untranslatable | None]:
    on_list = getattr(instr, "field", None) == LIST_FIELD and instr.table == TABLE
    try:
        return _kit_instruction(instr, on_list), None
    except _Refused as refused:
        return None, Untranslatable(describe(instr), refused.reason, refused.touches or on_list)


def _kit_instruction(instr: Instruction, on_list: bool) -> dict[str, Any]:
    """`instr` in the kit's format, or _Refused saying why it has no equivalent."""
    if isinstance(instr, EraseTable):
        raise _Refused("EraseTable has no equivalent in the kit's format", instr.table == TABLE)
    if isinstance(instr, EraseColumn):
        raise _Refused("EraseColumn has no equivalent in the kit's format")
    if isinstance(instr, (AddTable, AddColumn)):  # `translate` counts these apart: schema, no data
        raise _Refused(f"{instr.op} changes the schema, not the data")
    if instr.table != TABLE:
        raise _Refused(f"the kit's format has one table, {TABLE}; this is {instr.table}")
    pk = kit_pk(instr.object)
    if pk is None:
        raise _Refused(f"a {type(instr.object).__name__} primary key has no equivalent in the kit's format", True)
    base = {"table": TABLE, "object": pk}
    if isinstance(instr, (CreateObject, EraseObject)):
        return {"op": instr.op, **base}
    if isinstance(instr, Update):
        return _update(instr, base, on_list)
    if isinstance(instr, (ArrayInsert, ArrayErase, Clear)):
        return _list_change(instr, base, on_list)
    raise _Refused(f"{instr.op} has no equivalent in the kit's format")


def _link_target(payload: Payload) -> str:
    """The node an element of Node.children links to."""
    link = payload.value if payload.type == "Link" else None
    target = kit_pk(link.key) if isinstance(link, Link) and link.table == TABLE else None
    if target is None:
        raise _Refused(f"a {payload.type} element in {LIST_FIELD} has no equivalent in the kit's format")
    return target


def _update(instr: Update, base: dict[str, Any], on_list: bool) -> dict[str, Any]:
    """A field set (a scalar, or one element of Node.children)."""
    path = instr.path
    if not path:
        if on_list:
            raise _Refused(f"an Update of the whole list {LIST_FIELD} has no equivalent in the kit's format")
        ok, value, why = _value(instr.value)
        if not ok:
            raise _Refused(why)
        return {"op": "Update", **base, "field": instr.field, "value": value, "is_default": instr.is_default}
    if on_list and len(path) == 1 and isinstance(path[0], int):
        return {"op": "Update", **base, "field": LIST_FIELD, "index": path[0], "value": _link_target(instr.value),
                "prior_size": instr.prior_size}
    raise _Refused("a nested path (embedded object, or a list other than Node.children) has no equivalent "
                   "in the kit's format")


def _list_change(instr: ArrayInsert | ArrayErase | Clear, base: dict[str, Any], on_list: bool) -> dict[str, Any]:
    """An insert, erase or clear of Node.children (the kit's one list)."""
    if not on_list:
        raise _Refused(f"the kit's format has one list, {TABLE}.{LIST_FIELD}; this is {instr.table}.{instr.field}")
    path = instr.path
    if len(path) != (0 if isinstance(instr, Clear) else 1):
        raise _Refused("a nested path inside Node.children has no equivalent in the kit's format")
    if isinstance(instr, Clear):
        return {"op": "Clear", **base, "field": LIST_FIELD}
    if isinstance(instr, ArrayErase):
        return {"op": "ArrayErase", **base, "field": LIST_FIELD, "index": path[0], "prior_size": instr.prior_size}
    return {"op": "ArrayInsert", **base, "field": LIST_FIELD, "index": path[0], "value": _link_target(instr.value),
            "prior_size": instr.prior_size}


def translate(instructions: tuple[Instruction, ...] | list[Instruction]) -> Translation:
    """The kit-format instructions of one changeset, in order, and what could not be translated."""
    out: list[dict[str, Any]] = []
    refused: list[Untranslatable] = []
    schema = 0
    for instr in instructions:
        if isinstance(instr, _SCHEMA):
            schema += 1
            continue
        kit, why = _one(instr)
        if kit is not None:
            out.append(kit)
        if why is not None:
            refused.append(why)
    return Translation(out, refused, schema)
