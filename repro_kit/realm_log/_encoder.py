"""Encode instructions into realm-core 13's changeset bytes: the decoder's inverse.

Why the kit has one: it makes the decoder testable beyond the recorded samples (random
instructions are encoded, decoded and compared: tests/test_realm_log_codec.py), and it lets a
test build a trace log of any shape. Two layouts, as realm-core writes them: a client interns
each string just before the instruction that first uses it (table, object key, field, path,
value, in that order; an AddColumn of a non-link column interns "" for its absent target
table, as SyncReplication does), the server writes its whole intern table first.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from ._codec import ChangesetError, encode_int

# isort: off
from ._instructions import (
    COLLECTION_TYPES, INSTRUCTION_TYPES, INTERN_STRING, PAYLOAD_TYPES, TABLE_TYPES, AddColumn, AddInteger,
    AddTable, ArrayErase, ArrayInsert, ArrayMove, Clear, CreateObject, Decimal128, EraseColumn, EraseObject,
    EraseTable, GlobalKey, Instruction, Link, ObjectId, Payload, SetErase, SetInsert, Timestamp, Update,
)
# isort: on

__all__ = ["encode_changeset"]

_CODES = {name: code for code, name in INSTRUCTION_TYPES.items()}
_PAYLOAD_CODES = {name: code for code, name in PAYLOAD_TYPES.items()}
_COLLECTION_CODES = {name: code for code, name in COLLECTION_TYPES.items()}
_TABLE_CODES = {name: code for code, name in TABLE_TYPES.items()}


class _Writer:
    def __init__(self, strings: Sequence[tuple[int, str]] | None) -> None:
        self.out = bytearray()
        self.index: dict[str, int] = {}
        self.fixed = strings is not None
        if strings is not None:
            for index, text in strings:
                self._declare(index, text)

    def _declare(self, index: int, text: str) -> None:
        raw = text.encode("utf-8")
        self.out += encode_int(INTERN_STRING, "uint64") + encode_int(index, "uint32") + encode_int(len(raw), "uint64")
        self.out += raw
        self.index[text] = index

    def need(self, text: str) -> None:
        """Intern `text` now unless it is already (a client's layout)."""
        if text not in self.index:
            if self.fixed:
                raise ChangesetError(len(self.out), f"the string {text!r} is not in the given intern table")
            self._declare(len(self.index), text)

    def int(self, value: int, kind: str = "int64") -> None:
        self.out += encode_int(value, kind)

    def ref(self, text: str) -> None:
        if text not in self.index:
            raise ChangesetError(len(self.out), f"the string {text!r} is not in the given intern table")
        self.int(self.index[text], "uint32")

    def type(self, name: str) -> None:
        self.int(_PAYLOAD_CODES[name], "int64")

    def key(self, pk: Any) -> None:
        if pk is None:
            self.type("Null")
        elif isinstance(pk, bool):
            raise ChangesetError(len(self.out), f"a bool cannot be a primary key: {pk!r}")
        elif isinstance(pk, int):
            self.type("Int")
            self.int(pk)
        elif isinstance(pk, str):
            self.type("String")
            self.ref(pk)
        elif isinstance(pk, GlobalKey):
            self.type("GlobalKey")
            self.int(pk.hi, "uint64")
            self.int(pk.lo, "uint64")
        elif isinstance(pk, ObjectId):
            self.type("ObjectId")
            self.out += pk.raw
        elif isinstance(pk, uuid.UUID):
            self.type("UUID")
            self.out += pk.bytes
        else:
            raise ChangesetError(len(self.out), f"not a primary key: {pk!r}")

    def payload(self, value: Payload) -> None:
        kind, data = value.type, value.value
        if kind not in _PAYLOAD_CODES or kind == "GlobalKey":
            raise ChangesetError(len(self.out), f"cannot encode a {kind} payload")
        self.type(kind)
        if kind == "Int":
            self.int(data)
        elif kind == "Bool":
            self.int(int(bool(data)), "uint8")
        elif kind in ("String", "Binary"):
            raw = data.encode("utf-8") if kind == "String" else bytes(data)
            self.int(len(raw), "uint64")
            self.out += raw
        elif kind == "Timestamp":
            assert isinstance(data, Timestamp)
            self.int(data.seconds)
            self.int(data.nanoseconds)
        elif kind == "Float":
            self.out += struct.pack("<f", data)
        elif kind == "Double":
            self.out += struct.pack("<d", data)
        elif kind == "Decimal":
            assert isinstance(data, Decimal128)
            self.int(data.coefficient, "bid128")
            self.int(data.exponent, "int32")
            self.int(int(data.negative), "int32")
        elif kind == "Link":
            assert isinstance(data, Link)
            self.ref(data.table)
            self.key(data.key)
        elif kind == "ObjectId":
            self.out += data.raw
        elif kind == "UUID":
            self.out += data.bytes


def _strings_of(instr: Instruction) -> list[str]:
    """The strings an instruction refers to, in the order a client interns them."""
    out: list[str] = [instr.table]
    if isinstance(instr, AddTable):
        if instr.pk_field is not None:
            out.append(instr.pk_field)
        return out
    if isinstance(instr, AddColumn):
        return [*out, instr.field, (instr.link_target_table or "") if instr.type == "Link" else ""]
    if isinstance(instr, EraseColumn):
        return [*out, instr.field]
    if isinstance(instr, EraseTable):
        return out
    if isinstance(instr.object, str):
        out.append(instr.object)
    if isinstance(instr, (CreateObject, EraseObject)):
        return out
    out.append(instr.field)
    out += [p for p in instr.path if isinstance(p, str)]
    value = getattr(instr, "value", None)
    if isinstance(value, Payload) and value.type == "Link":
        out.append(value.value.table)
        if isinstance(value.value.key, str):
            out.append(value.value.key)
    return out


def _write(w: _Writer, instr: Instruction) -> None:
    """One instruction: its code, then its fields in realm-core's order."""
    w.int(_CODES[instr.op], "uint64")
    if isinstance(instr, AddTable):
        _write_add_table(w, instr)
    elif isinstance(instr, AddColumn):
        _write_add_column(w, instr)
    elif isinstance(instr, (EraseTable, EraseColumn)):
        w.ref(instr.table)
        if isinstance(instr, EraseColumn):
            w.ref(instr.field)
    else:
        w.ref(instr.table)
        w.key(instr.object)
        if not isinstance(instr, (CreateObject, EraseObject)):
            _write_path(w, instr)
            _write_operands(w, instr)


def _write_add_table(w: _Writer, instr: AddTable) -> None:
    w.ref(instr.table)
    w.int(_TABLE_CODES[instr.table_type], "uint8")
    if instr.table_type != "Embedded":
        w.ref(instr.pk_field or "")
        w.type(instr.pk_type or "Null")
        w.int(int(instr.pk_nullable), "uint8")


def _write_add_column(w: _Writer, instr: AddColumn) -> None:
    w.ref(instr.table)
    w.ref(instr.field)
    w.type(instr.type)
    w.int(int(instr.nullable), "uint8")
    w.int(_COLLECTION_CODES[instr.collection_type], "uint8")
    if instr.type == "Link":
        w.ref(instr.link_target_table or "")
    if instr.collection_type == "Dictionary":
        w.type(instr.key_type or "Null")


def _write_path(w: _Writer, instr: Any) -> None:
    """A path instruction's field and path: names as interned strings, list indexes as uint32."""
    w.ref(instr.field)
    w.int(len(instr.path), "uint32")
    for element in instr.path:
        if isinstance(element, str):
            w.int(-1)
            w.ref(element)
        else:
            if isinstance(element, bool) or not 0 <= element <= 2**32 - 1:
                raise ChangesetError(len(w.out), f"path element {element} does not fit a uint32 list index")
            w.int(element)


def _write_operands(w: _Writer, instr: Any) -> None:
    """What a path instruction carries after its path: a value, sizes, an index."""
    if isinstance(instr, Update):
        w.payload(instr.value)
        if instr.index is not None:
            w.int(instr.prior_size, "uint32")
        else:
            w.int(int(instr.is_default), "uint8")
    elif isinstance(instr, AddInteger):
        w.int(instr.value)
    elif isinstance(instr, (ArrayInsert, SetInsert, SetErase)):
        w.payload(instr.value)
        if isinstance(instr, ArrayInsert):
            w.int(instr.prior_size, "uint32")
    elif isinstance(instr, ArrayMove):
        w.int(instr.ndx_2, "uint32")
        w.int(instr.prior_size, "uint32")
    elif isinstance(instr, (ArrayErase, Clear)):
        w.int(instr.prior_size, "uint32")


def encode_changeset(instructions: Iterable[Instruction], strings: Sequence[tuple[int, str]] | None = None) -> bytes:
    """The changeset bytes of `instructions`.

    Without `strings`: a client's layout (each string interned just before first use).
    With `strings` ((index, text) pairs, as `DecodedChangeset.strings`): that intern table
    first, as the server writes it; every string used must be in it."""
    w = _Writer(strings)
    for instr in instructions:
        for text in _strings_of(instr):
            if w.fixed and text == "" and isinstance(instr, AddColumn) and instr.type != "Link":
                continue  # the client's unused "" for a non-link column: a given table need not hold it
            w.need(text)
        _write(w, instr)
    return bytes(w.out)
