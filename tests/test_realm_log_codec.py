"""realm-core 13.17.1's changeset format: the decoder against realm-core's own decoding of every
recorded changeset, the encoder as its inverse (byte for byte on the recordings, and on random
instructions), and a clear error naming the byte offset for anything the format does not allow."""

from __future__ import annotations

import json
import string
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro_kit.realm_log import (
    AddColumn, AddInteger, AddTable, ArrayErase, ArrayInsert, ArrayMove, ChangesetError, Clear, CreateObject,
    Decimal128, EraseColumn, EraseObject, EraseTable, GlobalKey, Link, ObjectId, Payload, SetErase, SetInsert,
    Timestamp, Update, decode_changeset, encode_changeset, parse_printed,
)
from repro_kit.realm_log._codec import encode_int, read_int

DATA = Path(__file__).parent / "data" / "realm-core-13.17.1" / "sync-logs"


def records(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


INSTRUCTIONS = records("instructions.jsonl")
CHANGESETS = records("changesets.jsonl")


def test_the_recorded_catalogue_is_all_there():
    assert len(INSTRUCTIONS) == 33 and len(CHANGESETS) == 22
    kinds = {r["instructions"] for r in INSTRUCTIONS}
    assert {"AddTable", "AddColumn", "CreateObject", "EraseObject", "Update", "AddInteger", "ArrayInsert",
            "ArrayMove", "ArrayErase", "Clear"} <= kinds


# -- the integer codec --------------------------------------------------------------------------


@pytest.mark.parametrize("value, encoded", [(0, "00"), (63, "3F"), (64, "C0 00"), (-1, "40"), (-64, "7F"),
                                            (-65, "C0 40"), (300, "AC 02"), (2**63 - 1, "FF FF FF FF FF FF FF FF FF 00")])
def test_integers_as_realm_core_writes_them(value, encoded):
    assert encode_int(value).hex(" ").upper() == encoded
    assert read_int(bytes.fromhex(encoded), 0) == (value, len(bytes.fromhex(encoded)))


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_every_int64_round_trips(value):
    raw = encode_int(value)
    assert read_int(raw + b"\x07", 0) == (value, len(raw))


@pytest.mark.parametrize("raw, kind, problem", [
    ("80", "int64", "truncated"),
    ("FF FF FF FF FF 00", "uint32", "more than 5 bytes"),
    ("40", "uint32", "does not fit"),
    ("80 80 80 80 10", "uint32", "does not fit"),
])
def test_bad_integers_name_their_offset(raw, kind, problem):
    data = b"\x00\x00" + bytes.fromhex(raw)
    with pytest.raises(ChangesetError) as err:
        read_int(data, 2, kind)
    assert err.value.offset == 2 and problem in str(err.value) and str(err.value).startswith("byte 2: ")


# -- realm-core's own decoding of all 55 recorded changesets ---------------------------------------


@pytest.mark.parametrize("record", INSTRUCTIONS + CHANGESETS,
                         ids=[r["name"] for r in INSTRUCTIONS] + [f"{r['source']}:{r['header_line_no']}" for r in CHANGESETS])
def test_each_recorded_changeset_decodes_to_realm_cores_instructions(record):
    raw = bytes.fromhex(record["hex"])
    decoded = decode_changeset(raw)
    printed = parse_printed(record["decoded_text"])
    assert decoded.instructions == tuple(printed)  # structured, field by field
    assert tuple(text for _index, text in decoded.strings) == printed.strings
    assert decoded.size == len(raw) == record.get("size", record.get("changeset_size"))
    # and the encoder is its inverse, in the layout the bytes were written in
    assert encode_changeset(decoded.instructions, decoded.strings if decoded.strings_first else None) == raw


def test_the_two_layouts_client_interleaved_and_server_strings_first():
    upload = next(r for r in CHANGESETS if r["direction"] == "upload" and r["client_version"] == 7)
    download = next(r for r in CHANGESETS if r["direction"] == "download" and r["server_version"] == 6)
    assert not decode_changeset(bytes.fromhex(upload["hex"])).strings_first  # a client interns before first use
    assert decode_changeset(bytes.fromhex(download["hex"])).strings_first  # the server writes its table first
    instructions = decode_changeset(bytes.fromhex(download["hex"])).instructions
    assert decode_changeset(encode_changeset(instructions)).instructions == instructions


def test_printed_text_that_is_not_realm_cores_is_refused():
    with pytest.raises(ValueError, match="line 2"):
        parse_printed('InternStrings   0="Node"\nArrayInsert     path=Node, value=Int(1)\n')


# -- errors name the byte offset, never a wrong instruction --------------------------------------

SAMPLE = bytes.fromhex(next(r for r in INSTRUCTIONS if r["name"] == "ArrayInsert_link")["hex"])


def test_an_unknown_instruction_type_names_its_offset():
    with pytest.raises(ChangesetError) as err:
        decode_changeset(SAMPLE + bytes([14]))
    assert err.value.offset == len(SAMPLE) and "unknown instruction type 14" in str(err.value)
    with pytest.raises(ChangesetError, match="byte 0: unknown instruction type 62"):
        decode_changeset(bytes([62, 0]))


def test_every_cut_of_a_changeset_is_a_shorter_changeset_or_an_error_at_the_cut():
    decoded = decode_changeset(SAMPLE)
    boundaries = set(decoded.offsets) | {len(SAMPLE)}
    cuts = 0
    for n in range(1, len(SAMPLE)):
        try:
            shorter = decode_changeset(SAMPLE[:n])
        except ChangesetError as exc:
            cuts += 1
            assert 0 <= exc.offset <= n and "truncated" in str(exc), (n, exc)
            continue
        # only a cut between two whole instructions (or intern strings) decodes, to what came before it
        assert shorter.instructions == decoded.instructions[:len(shorter.instructions)]
        assert n in boundaries or shorter.instructions == ()
    assert cuts > len(SAMPLE) // 2


@pytest.mark.parametrize("raw, problem", [
    ("08 00", "intern string #0, which was never declared"),
    ("3F 00 01 41 3F 00 01 42", "declared twice"),
    ("3F 00 01 41 3F 01 01 41", "interned twice"),
    ("3F 00 01 41 02 00 05", "cannot be a primary key"),
    ("3F 00 01 41 04 00 03 00 00 00 40", "GlobalKey cannot be a value"),
    ("3F 00 01 41 08 00 03 00 00 00 01 00 00", "without a list index"),
    ("3F 00 01 41 02 00 0C", "unknown payload type 12"),
    ("3F 00 02 C3 28", "not valid UTF-8"),
    ("3F 00 01 41 00 00 07", "unknown table type"),
])
def test_what_realm_cores_parser_refuses_is_refused_with_the_offset(raw, problem):
    with pytest.raises(ChangesetError, match=problem) as err:
        decode_changeset(bytes.fromhex(raw))
    assert 0 <= err.value.offset < len(bytes.fromhex(raw))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_fail_cleanly(data):
    try:
        decoded = decode_changeset(data)
    except ChangesetError as exc:
        assert 0 <= exc.offset <= len(data)
        return
    # what decodes re-encodes to the same bytes (nothing was guessed or dropped)
    assert encode_changeset(decoded.instructions, decoded.strings if decoded.strings_first else None) == data \
        or not decoded.strings_first


# -- random instructions: encode, decode, compare ------------------------------------------------

names = st.text(alphabet=string.ascii_letters + string.digits + "_", min_size=1, max_size=8)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
uint32 = st.integers(min_value=0, max_value=2**32 - 1)
keys = st.one_of(st.none(), int64, names, st.builds(GlobalKey, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
                 st.builds(ObjectId, st.binary(min_size=12, max_size=12)), st.uuids())
payloads = st.one_of(
    st.just(Payload("Null")), st.builds(Payload, st.just("Int"), int64), st.builds(Payload, st.just("Bool"), st.booleans()),
    st.builds(Payload, st.just("String"), st.text(max_size=12)), st.builds(Payload, st.just("Binary"), st.binary(max_size=12)),
    st.builds(Payload, st.just("Timestamp"), st.builds(Timestamp, int64, st.integers(0, 999_999_999))),
    st.builds(Payload, st.just("Float"), st.floats(width=32, allow_nan=False)),
    st.builds(Payload, st.just("Double"), st.floats(allow_nan=False)),
    st.builds(Payload, st.just("Decimal"), st.builds(Decimal128, st.integers(0, 2**113), st.integers(-6176, 6111),
                                                      st.booleans())),
    st.builds(Payload, st.just("Link"), st.builds(Link, names, keys)),
    st.builds(Payload, st.just("ObjectId"), st.builds(ObjectId, st.binary(min_size=12, max_size=12))),
    st.builds(Payload, st.just("UUID"), st.uuids()),
    st.sampled_from([Payload("ObjectValue"), Payload("Dictionary"), Payload("Erased")]),
)
paths = st.lists(st.one_of(uint32, names), max_size=3).map(tuple)
indexed = st.tuples(paths, uint32).map(lambda p: p[0] + (p[1],))
field_paths = st.tuples(paths, names).map(lambda p: p[0] + (p[1],)) | st.just(())
where = {"table": names, "object": keys, "field": names}
instructions = st.one_of(
    st.builds(AddTable, names, st.just("TopLevel") | st.just("TopLevelAsymmetric"), names,
              st.sampled_from(["Int", "String", "ObjectId", "UUID"]), st.booleans()),
    st.builds(AddTable, names, st.just("Embedded")),
    st.builds(EraseTable, names),
    st.builds(AddColumn, names, names, st.sampled_from(["Int", "String", "Bool", "Double", "Timestamp"]), st.booleans(),
              st.sampled_from(["Single", "List", "Set"])),
    st.builds(AddColumn, names, names, st.just("Link"), st.booleans(), st.sampled_from(["Single", "List", "Set"]), names),
    st.builds(AddColumn, names, names, st.just("Int"), st.booleans(), st.just("Dictionary"), st.none(),
              st.sampled_from(["String", "Int"])),
    st.builds(EraseColumn, names, names),
    st.builds(CreateObject, names, keys), st.builds(EraseObject, names, keys),
    st.builds(Update, **where, path=field_paths, value=payloads, is_default=st.booleans()),
    st.builds(Update, **where, path=indexed, value=payloads, prior_size=uint32),
    st.builds(AddInteger, **where, path=paths, value=int64),
    st.builds(ArrayInsert, **where, path=indexed, value=payloads, prior_size=uint32),
    st.builds(ArrayMove, **where, path=indexed, ndx_2=uint32, prior_size=uint32),
    st.builds(ArrayErase, **where, path=indexed, prior_size=uint32),
    st.builds(Clear, **where, path=field_paths),
    st.builds(SetInsert, **where, path=paths, value=payloads),
    st.builds(SetErase, **where, path=paths, value=payloads),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(instructions, max_size=8))
def test_random_instructions_encode_and_decode_back(changeset):
    raw = encode_changeset(changeset)
    decoded = decode_changeset(raw)
    assert decoded.instructions == tuple(changeset)
    # the server's layout (its whole intern table first) decodes to the same instructions
    again = encode_changeset(decoded.instructions, decoded.strings)
    assert decode_changeset(again).instructions == tuple(changeset)
    assert decode_changeset(again).strings_first


def test_the_encoder_refuses_what_the_format_cannot_hold():
    with pytest.raises(ChangesetError, match="not in the given intern table"):
        encode_changeset([CreateObject("Node", "x")], strings=[(0, "Node")])
    with pytest.raises(ChangesetError, match="cannot encode a GlobalKey payload"):
        encode_changeset([Update("Node", "x", "f", (), Payload("GlobalKey", GlobalKey(1, 2)))])
    with pytest.raises(ChangesetError, match="does not fit a uint32"):
        encode_changeset([ArrayErase("Node", "x", "children", (2**32,), 1)])
    assert decode_changeset(encode_changeset([CreateObject("U", uuid.UUID(int=5))])).instructions[0].object == \
        uuid.UUID(int=5)
