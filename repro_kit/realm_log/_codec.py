"""realm-core's integer codec (src/realm/sync/noinst/integer_codec.hpp), written from its description.

Why its own module: every field of a changeset is one of these integers, and both the decoder
and the encoder must agree byte for byte with realm-core, including the odd sign bit.

Little-endian base 128: every byte but the last has bit 0x80 set and carries 7 magnitude bits;
the last byte carries 6 magnitude bits (0x3F) and the sign (0x40). A negative v is stored as
the magnitude -(v + 1) with the sign set, so 0..63 take one byte, 64 is `C0 00`, -1 is `40`.
realm-core reads each field as a C++ type (uint8, uint32, int64, ...) and refuses an encoding
longer than that type allows or a value it cannot hold; `read_int` does the same, by `kind`.
"""

from __future__ import annotations

__all__ = ["ChangesetError", "encode_int", "read_int", "KINDS"]


class ChangesetError(ValueError):
    """A changeset that cannot be decoded (or encoded); `offset` is the byte where it went wrong."""

    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(f"byte {offset}: {problem}")
        self.offset = offset
        self.problem = problem


#: C++ type -> (bits of magnitude, signed): what realm-core reads each field as.
KINDS: dict[str, tuple[int, bool]] = {
    "uint8": (8, False),
    "uint32": (32, False),
    "uint64": (64, False),
    "int32": (31, True),
    "int64": (63, True),
    "bid128": (128, False),  # a Decimal128's coefficient (realm-core's _impl::Bid128)
}


def _max_bytes(kind: str) -> int:
    bits, _signed = KINDS[kind]
    return (1 + bits + 6) // 7  # one sign bit plus the value bits, 7 bits a byte (encode_int_max_bytes)


def encode_int(value: int, kind: str = "int64") -> bytes:
    """`value` as realm-core's encode_int writes it for a field of C++ type `kind`."""
    bits, signed = KINDS[kind]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChangesetError(0, f"cannot encode {value!r} as an integer")
    low = -(1 << bits) if signed else 0
    high = (1 << bits) - 1
    if not low <= value <= high:
        raise ChangesetError(0, f"{value} does not fit a {kind}")
    negative = value < 0
    magnitude = -(value + 1) if negative else value
    out = bytearray()
    while magnitude >> 6:
        out.append(0x80 | (magnitude & 0x7F))
        magnitude >>= 7
    out.append((0x40 if negative else 0) | magnitude)
    return bytes(out)


def read_int(data: bytes, pos: int, kind: str = "int64", what: str = "integer") -> tuple[int, int]:
    """(value, next position) of the integer at `pos`, read as realm-core reads a `kind`.

    Raises ChangesetError naming the offset: input ends inside it, more bytes than the type
    allows, or a value the type cannot hold (a negative value in an unsigned field included)."""
    bits, signed = KINDS[kind]
    limit = _max_bytes(kind)
    value = 0
    start = pos
    for i in range(limit):
        if pos >= len(data):
            raise ChangesetError(start, f"the changeset ends inside the {what} (truncated input)")
        byte = data[pos]
        pos += 1
        if not byte & 0x80:
            value |= (byte & 0x3F) << (7 * i)
            if byte & 0x40:
                value = -value - 1
            break
        value |= (byte & 0x7F) << (7 * i)
    else:
        raise ChangesetError(start, f"the {what} takes more than {limit} bytes (too long for a {kind})")
    low = -(1 << bits) if signed else 0
    high = (1 << bits) - 1
    if not low <= value <= high:
        raise ChangesetError(start, f"the {what} {value} does not fit a {kind}")
    return value, pos
