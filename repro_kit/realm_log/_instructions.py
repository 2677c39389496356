"""realm-core's sync instructions as plain Python values (src/realm/sync/instructions.hpp).

Why dataclasses rather than dicts: a decoded changeset is compared field by field with
realm-core's own decoding (tests), and is re-encoded byte for byte (the fuzz test), so every
field realm-core writes is kept, typed, and comparable with ==. Intern-string indexes are
resolved to the strings themselves; the encoder interns them again.

Primary keys are Python values by type: None (Null), int (Int), str (String), GlobalKey,
ObjectId, uuid.UUID. Payload values likewise, in `Payload(type, value)`.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

__all__ = [
    "GlobalKey", "ObjectId", "Timestamp", "Decimal128", "Link", "Payload", "PrimaryKey", "PathElement",
    "AddTable", "EraseTable", "AddColumn", "EraseColumn", "CreateObject", "EraseObject", "Update",
    "AddInteger", "ArrayInsert", "ArrayMove", "ArrayErase", "Clear", "SetInsert", "SetErase",
    "Instruction", "INSTRUCTION_TYPES", "PAYLOAD_TYPES", "COLLECTION_TYPES", "TABLE_TYPES",
    "INTERN_STRING", "pk_text",
]

#: Instruction::Type codes on the wire (instructions.hpp).
INSTRUCTION_TYPES: dict[int, str] = {
    0: "AddTable", 1: "EraseTable", 2: "CreateObject", 3: "EraseObject", 4: "Update", 5: "AddInteger",
    6: "AddColumn", 7: "EraseColumn", 8: "ArrayInsert", 9: "ArrayMove", 10: "ArrayErase", 11: "Clear",
    12: "SetInsert", 13: "SetErase",
}
#: The meta-instruction that declares an intern string (InstrTypeInternString).
INTERN_STRING = 0x3F
#: Instruction::Payload::Type codes (signed on the wire).
PAYLOAD_TYPES: dict[int, str] = {
    -4: "Erased", -3: "Dictionary", -2: "ObjectValue", -1: "GlobalKey", 0: "Null", 1: "Int", 2: "Bool",
    3: "String", 4: "Binary", 5: "Timestamp", 6: "Float", 7: "Double", 8: "Decimal", 9: "Link",
    10: "ObjectId", 11: "UUID",
}
#: AddColumn::CollectionType codes.
COLLECTION_TYPES: dict[int, str] = {0: "Single", 1: "List", 2: "Dictionary", 3: "Set"}
#: Table::Type codes as AddTable writes them.
TABLE_TYPES: dict[int, str] = {0: "TopLevel", 1: "Embedded", 2: "TopLevelAsymmetric"}


@dataclasses.dataclass(frozen=True)
class GlobalKey:
    """An object key without a primary key (two 64-bit halves)."""

    hi: int
    lo: int

    def __str__(self) -> str:
        return f"GlobalKey{{{self.hi}, {self.lo}}}"


@dataclasses.dataclass(frozen=True)
class ObjectId:
    """A BSON ObjectId: 12 raw bytes on the wire."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 12:
            raise ValueError(f"an ObjectId is 12 bytes, got {self.raw!r}")

    @classmethod
    def from_hex(cls, text: str) -> ObjectId:
        return cls(bytes.fromhex(text))

    def __str__(self) -> str:
        return self.raw.hex()


@dataclasses.dataclass(frozen=True)
class Timestamp:
    """Seconds and nanoseconds since the Unix epoch, as realm-core stores them."""

    seconds: int
    nanoseconds: int


@dataclasses.dataclass(frozen=True)
class Decimal128:
    """A Decimal128 as the changeset carries it: coefficient, exponent, sign."""

    coefficient: int
    exponent: int
    negative: bool


PrimaryKey = None | int | str | GlobalKey | ObjectId | uuid.UUID
PathElement = int | str


@dataclasses.dataclass(frozen=True)
class Link:
    """A link payload: the target table and the target object's primary key."""

    table: str
    key: Any  # PrimaryKey


@dataclasses.dataclass(frozen=True)
class Payload:
    """A value with its realm-core type name ("Int", "String", "Link", ...)."""

    type: str
    value: Any = None


def pk_text(pk: Any) -> str:
    """A primary key as realm-core prints it: "root", Int(300), UUID{...}, ObjectId{...}."""
    if pk is None:
        return "NULL"
    if isinstance(pk, str):
        return f'"{pk}"'
    if isinstance(pk, int):
        return f"Int({pk})"
    if isinstance(pk, uuid.UUID):
        return f"UUID{{{pk}}}"
    if isinstance(pk, ObjectId):
        return f"ObjectId{{{pk}}}"
    return str(pk)


class _Base:
    """What every instruction has: its realm-core name."""

    @property
    def op(self) -> str:
        return type(self).__name__


@dataclasses.dataclass(frozen=True)
class AddTable(_Base):
    table: str
    table_type: str = "TopLevel"  # TopLevel | Embedded | TopLevelAsymmetric
    pk_field: str | None = None  # None for an embedded table
    pk_type: str | None = None
    pk_nullable: bool = False


@dataclasses.dataclass(frozen=True)
class EraseTable(_Base):
    table: str


@dataclasses.dataclass(frozen=True)
class AddColumn(_Base):
    table: str
    field: str
    type: str
    nullable: bool = False
    collection_type: str = "Single"
    link_target_table: str | None = None  # written only for a Link column
    key_type: str | None = None  # written only for a Dictionary column


@dataclasses.dataclass(frozen=True)
class EraseColumn(_Base):
    table: str
    field: str


@dataclasses.dataclass(frozen=True)
class _ObjectInstruction(_Base):
    """An instruction on a whole object: its table and primary key."""

    table: str
    object: Any  # PrimaryKey


@dataclasses.dataclass(frozen=True)
class CreateObject(_ObjectInstruction):
    pass


@dataclasses.dataclass(frozen=True)
class EraseObject(_ObjectInstruction):
    pass


@dataclasses.dataclass(frozen=True)
class _PathInstruction(_Base):
    table: str
    object: Any
    field: str
    path: tuple[PathElement, ...] = ()

    @property
    def index(self) -> int | None:
        """The list index: the last path element when it is an integer (realm-core's convention)."""
        return self.path[-1] if self.path and isinstance(self.path[-1], int) else None

    @property
    def where(self) -> str:
        """The path as realm-core prints it: Node["root"].children[0]."""
        text = f"{self.table}[{pk_text(self.object)}].{self.field}"
        for element in self.path:
            text += f"[{element}]" if isinstance(element, int) else f".{element}"
        return text


@dataclasses.dataclass(frozen=True)
class Update(_PathInstruction):
    value: Payload = Payload("Null")
    is_default: bool = False  # a field update (the last path element is not an index)
    prior_size: int = 0  # a list-element update (the last path element is an index)


@dataclasses.dataclass(frozen=True)
class AddInteger(_PathInstruction):
    value: int = 0


@dataclasses.dataclass(frozen=True)
class ArrayInsert(_PathInstruction):
    value: Payload = Payload("Null")
    prior_size: int = 0


@dataclasses.dataclass(frozen=True)
class ArrayMove(_PathInstruction):
    ndx_2: int = 0
    prior_size: int = 0


@dataclasses.dataclass(frozen=True)
class ArrayErase(_PathInstruction):
    prior_size: int = 0


@dataclasses.dataclass(frozen=True)
class Clear(_PathInstruction):
    prior_size: int = 0  # written (as 0 by realm-core 13) and ignored by realm-core's parser


@dataclasses.dataclass(frozen=True)
class SetInsert(_PathInstruction):
    value: Payload = Payload("Null")


@dataclasses.dataclass(frozen=True)
class SetErase(_PathInstruction):
    value: Payload = Payload("Null")


Instruction = (AddTable | EraseTable | AddColumn | EraseColumn | CreateObject | EraseObject | Update | AddInteger
               | ArrayInsert | ArrayMove | ArrayErase | Clear | SetInsert | SetErase)
