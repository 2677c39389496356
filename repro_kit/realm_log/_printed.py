"""Read realm-core's own text rendering of a changeset (`Changeset::print`) into instructions.

Why: realm-core's debug builds log `Changeset (parsed):` followed by this text, and its tool
`realm-print-changeset` prints the same; reading it into the kit's instruction classes lets the
decoder be compared with realm-core's meaning field by field, not as strings (the recorded
`decoded_text` of tests/data/realm-core-13.17.1/sync-logs/). The inverse of nothing the kit
writes: it only reads what realm-core printed, e.g.

    InternStrings   0="Node", 1="root", 2="children", 3="c1"
    ArrayInsert     path=Node["root"].children[0], value=Link(target_table = Node, target = "c1"), prior_size=0
"""

from __future__ import annotations

import re
import uuid
from typing import Any

# isort: off
from ._instructions import (
    AddColumn, AddInteger, AddTable, ArrayErase, ArrayInsert, ArrayMove, Clear, CreateObject, EraseColumn,
    EraseObject, EraseTable, Instruction, Link, ObjectId, Payload, SetErase, SetInsert, Update,
)
# isort: on

__all__ = ["parse_printed", "PrintedChangeset"]

_LINE = re.compile(r"^(\w+)\s*(.*)$")
_OPEN = {"(": ")", "[": "]", "{": "}"}


class PrintedChangeset(tuple):
    """The instructions read from printed text (a tuple), with `strings`: the intern table printed."""

    strings: tuple[str, ...] = ()


def _split_fields(text: str) -> list[tuple[str, str]]:
    """`a=1, b=Link(x = 1, y = "2")` -> [(a, 1), (b, Link(...))]: commas inside quotes/brackets kept."""
    fields: list[tuple[str, str]] = []
    depth: list[str] = []
    quoted = False
    start = 0
    for i, ch in enumerate(text):
        if quoted:
            if ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch in _OPEN:
            depth.append(_OPEN[ch])
        elif depth and ch == depth[-1]:
            depth.pop()
        elif ch == "," and not depth and text[i:i + 2] == ", ":
            fields.append(_field(text[start:i]))
            start = i + 2
    if text[start:].strip():
        fields.append(_field(text[start:]))
    return fields


def _field(part: str) -> tuple[str, str]:
    key, sep, value = part.partition("=")
    if not sep:
        raise ValueError(f"not a key=value field: {part!r}")
    return key.strip(), value.strip()


def _unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"expected a quoted string, got {text!r}")
    return text[1:-1]


def _pk(text: str) -> Any:
    """A primary key as printed: "root", Int(300), UUID{...}, ObjectId{...}, NULL."""
    text = text.strip()
    if text.startswith('"'):
        return _unquote(text)
    if text == "NULL":
        return None
    match = re.fullmatch(r"Int\((-?\d+)\)|(-?\d+)", text)
    if match:
        return int(match.group(1) or match.group(2))
    match = re.fullmatch(r"UUID\{([0-9a-fA-F-]{36})\}", text)
    if match:
        return uuid.UUID(match.group(1))
    match = re.fullmatch(r"ObjectId\{([0-9a-fA-F]{24})\}", text)
    if match:
        return ObjectId.from_hex(match.group(1))
    raise ValueError(f"unrecognised primary key {text!r}")


def _path(text: str) -> dict[str, Any]:
    """Node["root"].children[0] -> table, object, field, path."""
    bracket = text.index("[")
    table = text[:bracket]
    i = bracket + 1
    if text[i] == '"':
        end = text.index('"]', i + 1)
        pk_text, i = text[i:end + 1], end + 2
    else:
        end = text.index("]", i)
        if text[i:].startswith(("UUID{", "ObjectId{")):
            end = text.index("}]", i) + 1
        pk_text, i = text[i:end], end + 1
    out: dict[str, Any] = {"table": table, "object": _pk(pk_text)}
    rest = text[i:]
    if not rest:
        return out
    parts = re.findall(r"\.([^.\[]+)|\[(\d+)\]", rest)
    if "".join(f".{f}" if f else f"[{n}]" for f, n in parts) != rest:
        raise ValueError(f"unrecognised path {text!r}")
    first, *others = parts
    if not first[0]:
        raise ValueError(f"a path must name a field first: {text!r}")
    out["field"] = first[0]
    out["path"] = tuple(f if f else int(n) for f, n in others)
    return out


def _payload(text: str) -> Payload:
    match = re.fullmatch(r"(\w+)\((.*)\)", text, flags=re.S)
    if not match:
        raise ValueError(f"unrecognised value {text!r}")
    kind, inner = match.groups()
    if kind in ("Null", "ObjectValue", "Erased", "Dictionary"):
        return Payload(kind)
    if kind == "Int":
        return Payload(kind, int(inner))
    if kind == "Bool":
        return Payload(kind, inner.strip() in ("1", "true"))
    if kind == "String":
        return Payload(kind, _unquote(inner))
    if kind in ("Float", "Double"):
        return Payload(kind, float(inner))
    if kind == "UUID":
        return Payload(kind, uuid.UUID(inner.strip()))
    if kind == "ObjectId":
        return Payload(kind, ObjectId.from_hex(inner.strip()))
    if kind == "Link":
        fields = dict(_field(p) for p in inner.split(", ", 1))
        return Payload(kind, Link(fields["target_table"], _pk(fields["target"])))
    raise ValueError(f"values of type {kind} are not read from printed text")


def _flag(value: str) -> bool:
    return value.strip() in ("1", "true")


def _instruction(name: str, fields: dict[str, str]) -> Instruction:
    if name == "AddTable":
        table = _unquote(fields["path"])
        if "embedded" in fields:
            return AddTable(table, "Embedded")
        kind = "TopLevelAsymmetric" if _flag(fields.get("is_asymmetric", "0")) else "TopLevel"
        return AddTable(table, kind, _unquote(fields["pk_field"]), fields["pk_type"], _flag(fields["pk_nullable"]))
    if name == "EraseTable":
        return EraseTable(_unquote(fields["path"]))
    if name == "AddColumn":
        target = fields.get("target_table")
        return AddColumn(_unquote(fields["table"]), _unquote(fields["field"]), fields["type"],
                         _flag(fields["nullable"]), fields["collection_type"],
                         _unquote(target) if target is not None else None, fields.get("key_type"))
    if name == "EraseColumn":
        return EraseColumn(_unquote(fields["table"]), _unquote(fields["field"]))
    where = _path(fields["path"])
    if name in ("CreateObject", "EraseObject"):
        return (CreateObject if name == "CreateObject" else EraseObject)(where["table"], where["object"])
    where.setdefault("path", ())
    if name == "Update":
        value = _payload(fields["value"])
        if "prior_size" in fields:
            return Update(**where, value=value, prior_size=int(fields["prior_size"]))
        return Update(**where, value=value, is_default=_flag(fields.get("default", "0")))
    if name == "AddInteger":
        return AddInteger(**where, value=_payload(fields["value"]).value)
    if name == "ArrayInsert":
        return ArrayInsert(**where, value=_payload(fields["value"]), prior_size=int(fields["prior_size"]))
    if name == "ArrayMove":
        return ArrayMove(**where, ndx_2=int(fields["ndx_2"]), prior_size=int(fields["prior_size"]))
    if name == "ArrayErase":
        return ArrayErase(**where, prior_size=int(fields["prior_size"]))
    if name == "Clear":
        return Clear(**where)
    if name == "SetInsert":
        return SetInsert(**where, value=_payload(fields["value"]))
    if name == "SetErase":
        return SetErase(**where, value=_payload(fields["value"]))
    raise ValueError(f"unknown instruction {name!r} in printed text")


def parse_printed(text: str) -> PrintedChangeset:
    """The instructions of one printed changeset; ValueError naming the line it cannot read."""
    instructions: list[Instruction] = []
    strings: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line.strip())
        if not match:
            raise ValueError(f"line {number}: not an instruction: {line!r}")
        name, rest = match.groups()
        try:
            fields = _split_fields(rest)
            if name == "InternStrings":
                strings = tuple(_unquote(value) for _key, value in fields)
                continue
            instructions.append(_instruction(name, dict(fields)))
        except (ValueError, KeyError, IndexError) as exc:
            raise ValueError(f"line {number}: {exc} in {line.strip()!r}") from None
    out = PrintedChangeset(instructions)
    out.strings = strings
    return out
