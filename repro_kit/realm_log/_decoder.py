"""Decode a realm-core 13 changeset (the bytes a sync log prints as hex) into instructions.

Written from the format (FORMAT_NOTES.md; realm-core's changeset_parser.cpp describes it): a
flat stream of instructions, each a varint type code and its fields; intern strings declared
by the 0x3F meta-instruction before their first use. Why strict: a log is evidence, so a byte
the format does not allow stops decoding with the offset and the reason (`ChangesetError`),
never a guessed instruction. Each rule realm-core's parser enforces is enforced here too: a
string interned twice, an index declared twice, a reference to an undeclared index, a payload
or key type it does not accept, a list instruction without an index.
"""

from __future__ import annotations

import builtins
import dataclasses
import struct
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from ._codec import ChangesetError, read_int

# isort: off
from ._instructions import (
    COLLECTION_TYPES, INSTRUCTION_TYPES, INTERN_STRING, PAYLOAD_TYPES, TABLE_TYPES, AddColumn, AddInteger,
    AddTable, ArrayErase, ArrayInsert, ArrayMove, Clear, CreateObject, Decimal128, EraseColumn, EraseObject,
    EraseTable, GlobalKey, Instruction, Link, ObjectId, Payload, SetErase, SetInsert, Timestamp, Update,
)
# isort: on

__all__ = ["DecodedChangeset", "decode_changeset"]

#: Key types realm-core accepts for a primary key (read_object_key) and for AddTable's pk_type.
_KEY_TYPES = ("Null", "Int", "String", "GlobalKey", "ObjectId", "UUID")
_PK_TYPES = ("Int", "String", "ObjectId", "UUID")
_MAX_STRING = 0xFFFFF8 - 1  # realm::Table::max_string_size: realm-core refuses longer strings


@dataclasses.dataclass(frozen=True)
class DecodedChangeset:
    """The instructions of one changeset, in order, with what the encoder needs to rebuild it.

    `strings`: the intern table as (index, string) in declaration order. `offsets`: each instruction's first byte.
    `strings_first`: every intern string came before the first instruction (how the server
    re-encodes stored changesets) rather than just before first use (a client's own encoding).
    """

    instructions: tuple[Instruction, ...]
    strings: tuple[tuple[int, str], ...]
    offsets: tuple[int, ...]
    strings_first: bool
    size: int


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.strings: dict[int, str] = {}
        self.seen_strings: set[str] = set()

    def int(self, kind: str = "int64", what: str = "integer") -> int:
        value, self.pos = read_int(self.data, self.pos, kind, what)
        return value

    def bytes(self, n: builtins.int, what: str) -> builtins.bytes:
        if self.pos + n > len(self.data):
            raise ChangesetError(self.pos, f"the changeset ends inside the {what} ({n} bytes expected, "
                                           f"{len(self.data) - self.pos} left: truncated input)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return bytes(out)

    def text(self, what: str) -> str:
        at = self.pos
        size = self.int("uint64", f"length of the {what}")
        if size > _MAX_STRING:
            raise ChangesetError(at, f"the {what} is {size} bytes long, more than realm-core allows")
        raw = self.bytes(size, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ChangesetError(at, f"the {what} is not valid UTF-8 ({exc.reason})") from None

    def intern(self, what: str) -> str:
        at = self.pos
        index = self.int("uint32", f"intern-string index of the {what}")
        if index not in self.strings:
            raise ChangesetError(at, f"the {what} refers to intern string #{index}, which was never declared")
        return self.strings[index]

    def boolean(self, what: str) -> bool:
        at = self.pos
        value = self.int("uint8", what)
        if value not in (0, 1):
            raise ChangesetError(at, f"the {what} is {value}, not a boolean (0 or 1)")
        return bool(value)

    def payload_type(self, what: str) -> str:
        at = self.pos
        code = self.int("int64", what)
        name = PAYLOAD_TYPES.get(code)
        if name is None:
            raise ChangesetError(at, f"unknown payload type {code} in the {what}")
        return name

    def key(self, what: str) -> Any:
        at = self.pos
        kind = self.payload_type(f"type of the {what}")
        if kind not in _KEY_TYPES:
            raise ChangesetError(at, f"a {kind} cannot be a primary key (the {what})")
        if kind == "Null":
            return None
        if kind == "Int":
            return self.int("int64", what)
        if kind == "String":
            return self.intern(what)
        if kind == "GlobalKey":
            return GlobalKey(self.int("uint64", f"{what} (high half)"), self.int("uint64", f"{what} (low half)"))
        if kind == "ObjectId":
            return ObjectId(self.bytes(12, what))
        return uuid.UUID(bytes=self.bytes(16, what))

    def payload(self, what: str) -> Payload:
        at = self.pos
        kind = self.payload_type(f"type of the {what}")
        if kind == "GlobalKey":
            raise ChangesetError(at, f"a GlobalKey cannot be a value (the {what}); realm-core refuses it too")
        read: Callable[[_Reader, str], Any] | None = self._values.get(kind)
        return Payload(kind, read(self, what) if read is not None else None)

    def _timestamp(self, what: str) -> Timestamp:
        seconds = self.int("int64", f"seconds of the {what}")
        at = self.pos
        nanos = self.int("int64", f"nanoseconds of the {what}")
        if nanos > 2**31 - 1:
            raise ChangesetError(at, f"the nanoseconds of the {what} ({nanos}) are out of range")
        return Timestamp(seconds, nanos)

    def _float(self, what: str) -> float:
        return struct.unpack("<f", self.bytes(4, what))[0]

    def _double(self, what: str) -> float:
        return struct.unpack("<d", self.bytes(8, what))[0]

    def _decimal(self, what: str) -> Decimal128:
        coefficient = self.int("bid128", f"coefficient of the {what}")
        exponent = self.int("int32", f"exponent of the {what}")
        at = self.pos
        sign = self.int("int32", f"sign of the {what}")
        if sign not in (0, 1):
            raise ChangesetError(at, f"the sign of the {what} is {sign}, not 0 or 1")
        return Decimal128(coefficient, exponent, bool(sign))

    def _link(self, what: str) -> Link:
        return Link(self.intern(f"target table of the {what}"), self.key(f"target of the {what}"))

    _values: ClassVar[dict[str, Callable[[_Reader, str], Any]]] = {
        "Int": lambda r, w: r.int("int64", w),
        "Bool": lambda r, w: r.boolean(w),
        "String": lambda r, w: r.text(w),
        "Binary": lambda r, w: r.bytes(r.int("uint64", f"length of the {w}"), w),
        "Timestamp": _timestamp,
        "Float": _float,
        "Double": _double,
        "Decimal": _decimal,
        "Link": _link,
        "ObjectId": lambda r, w: ObjectId(r.bytes(12, w)),
        "UUID": lambda r, w: uuid.UUID(bytes=r.bytes(16, w)),
    }

    def path_fields(self) -> dict[str, Any]:
        table = self.intern("table")
        obj = self.key("object's primary key")
        field = self.intern("field")
        length = self.int("uint32", "path length")
        path: list[Any] = []
        for n in range(length):
            at = self.pos
            element = self.int("int64", f"path element {n}")
            if element >= 0:
                if element > 2**32 - 1:
                    raise ChangesetError(at, f"path element {n} ({element}) does not fit a list index")
                path.append(element)
            elif element == -1:
                path.append(self.intern(f"path element {n}"))
            else:
                raise ChangesetError(at, f"path element {n} is {element}: neither an index nor -1 (a field name)")
        return {"table": table, "object": obj, "field": field, "path": tuple(path)}


def _needs_index(reader: _Reader, fields: dict[str, Any], name: str, at: int) -> None:
    path = fields["path"]
    if not path or not isinstance(path[-1], int):
        raise ChangesetError(at, f"{name} without a list index in its path (realm-core refuses it)")


def _instruction(reader: _Reader, code: int, at: int) -> Instruction:
    """The instruction whose code was read at `at`: its fields in realm-core's order."""
    name = INSTRUCTION_TYPES[code]
    if name == "AddTable":
        return _add_table(reader)
    if name == "EraseTable":
        return EraseTable(reader.intern("table"))
    if name in ("CreateObject", "EraseObject"):
        table = reader.intern("table")
        return (CreateObject if name == "CreateObject" else EraseObject)(table, reader.key("object's primary key"))
    if name == "AddColumn":
        return _add_column(reader)
    if name == "EraseColumn":
        return EraseColumn(reader.intern("table"), reader.intern("field"))
    return _path_instruction(reader, name, reader.path_fields(), at)


def _add_table(reader: _Reader) -> AddTable:
    table = reader.intern("table")
    type_at = reader.pos
    table_type = TABLE_TYPES.get(reader.int("uint8", "table type"))
    if table_type is None:
        raise ChangesetError(type_at, "unknown table type in AddTable")
    if table_type == "Embedded":
        return AddTable(table, table_type)
    pk_field = reader.intern("primary key field")
    pk_at = reader.pos
    pk_type = reader.payload_type("primary key type")
    if pk_type not in _PK_TYPES:
        raise ChangesetError(pk_at, f"AddTable with a {pk_type} primary key (realm-core refuses it)")
    return AddTable(table, table_type, pk_field, pk_type, reader.boolean("pk_nullable"))


def _add_column(reader: _Reader) -> AddColumn:
    table, field = reader.intern("table"), reader.intern("field")
    kind = reader.payload_type("column type")
    nullable = reader.boolean("nullable")
    coll_at = reader.pos
    collection = COLLECTION_TYPES.get(reader.int("uint8", "collection type"))
    if collection is None:
        raise ChangesetError(coll_at, "unknown collection type in AddColumn")
    target = reader.intern("link target table") if kind == "Link" else None
    key_type = reader.payload_type("dictionary key type") if collection == "Dictionary" else None
    return AddColumn(table, field, kind, nullable, collection, target, key_type)


def _path_instruction(reader: _Reader, name: str, fields: dict[str, Any], at: int) -> Instruction:
    """An instruction on a field's path: what it carries after the path."""
    if name in ("ArrayInsert", "ArrayMove", "ArrayErase"):
        _needs_index(reader, fields, name, at)
    if name == "Update":
        value = reader.payload("value")
        path = fields["path"]
        if path and isinstance(path[-1], int):
            return Update(**fields, value=value, prior_size=reader.int("uint32", "prior_size"))
        return Update(**fields, value=value, is_default=reader.boolean("is_default"))
    if name == "AddInteger":
        return AddInteger(**fields, value=reader.int("int64", "value"))
    if name == "ArrayInsert":
        value = reader.payload("value")
        return ArrayInsert(**fields, value=value, prior_size=reader.int("uint32", "prior_size"))
    if name == "ArrayMove":
        ndx_2 = reader.int("uint32", "ndx_2")
        return ArrayMove(**fields, ndx_2=ndx_2, prior_size=reader.int("uint32", "prior_size"))
    if name == "ArrayErase":
        return ArrayErase(**fields, prior_size=reader.int("uint32", "prior_size"))
    if name == "Clear":
        return Clear(**fields, prior_size=reader.int("uint32", "Clear's unused size"))
    if name == "SetInsert":
        return SetInsert(**fields, value=reader.payload("value"))
    return SetErase(**fields, value=reader.payload("value"))


def decode_changeset(data: bytes | bytearray | memoryview) -> DecodedChangeset:
    """Decode one changeset; raises ChangesetError (a ValueError) naming the byte offset and why."""
    raw = bytes(data)
    reader = _Reader(raw)
    instructions: list[Instruction] = []
    offsets: list[int] = []
    strings_first = True
    while reader.pos < len(raw):
        at = reader.pos
        code = reader.int("uint64", "instruction type")
        if code == INTERN_STRING:
            index_at = reader.pos
            index = reader.int("uint32", "intern-string index")
            text = reader.text("intern string")
            if index in reader.strings:
                raise ChangesetError(index_at, f"intern string #{index} is declared twice")
            if text in reader.seen_strings:
                raise ChangesetError(index_at, f"the string {text!r} is interned twice")
            reader.strings[index] = text
            reader.seen_strings.add(text)
            if instructions:
                strings_first = False
            continue
        if code not in INSTRUCTION_TYPES:
            raise ChangesetError(at, f"unknown instruction type {code} (realm-core 13 knows 0-13 and 63)")
        instructions.append(_instruction(reader, code, at))
        offsets.append(at)
    strings = tuple(reader.strings.items())  # declaration order (dicts keep it)
    return DecodedChangeset(tuple(instructions), strings, tuple(offsets), strings_first, len(raw))
