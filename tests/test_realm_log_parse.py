"""Reading Realm SDK trace logs: the recorded device log, the SDKs' line prefixes, compressed
changesets, and every way a log can be unfit for a replay (each one line naming the log line)."""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

import pytest

from realm_logs import LogBuilder, append, create, report_scenario
from repro_kit.realm_log import LogError, encode_changeset, parse_log, parse_log_text

DATA = Path(__file__).parent / "data" / "realm-core-13.17.1" / "sync-logs"
DEVICE_LOG = DATA / "device_trace.log"


def test_the_recorded_device_log_pairs_every_header_with_its_changeset():
    log = parse_log(DEVICE_LOG)
    log.check()
    assert log.problems == [] and log.timestamps
    assert [(c.direction, c.client_version, c.server_version) for c in log.changesets] == [
        ("upload", 2, 0), ("upload", 3, 0), ("upload", 7, 2), ("upload", 9, 3), ("upload", 11, 4),
        ("download", 11, 6), ("upload", 14, 6)]
    download = log.changesets[5]
    assert (download.origin_file_ident, download.origin_timestamp, download.size) == (3, 376501777230, 83)
    assert [i.op for i in download.decoded.instructions] == ["Clear", "ArrayInsert", "ArrayInsert", "ArrayInsert"]
    assert download.time == pytest.approx(0.194)  # seconds since the log's first line
    kinds = [e.kind for e in log.events]
    assert kinds.count("batch") == 7 and "ident" in kinds and "integrated" in kinds
    assert log.skipped["other log lines (connection, protocol and SDK messages the replay does not need)"] > 50


def test_the_recorded_headers_match_changesets_jsonl():
    import json

    recorded = [json.loads(line) for line in (DATA / "changesets.jsonl").read_text().splitlines()]
    mine = [r for r in recorded if r["log_file"] == "device_trace.log"]
    log = parse_log(DEVICE_LOG)
    assert [c.line for c in log.changesets] == [r["header_line_no"] for r in mine]
    assert [encode_changeset(c.decoded.instructions, c.decoded.strings if c.decoded.strings_first else None).hex()
            for c in log.changesets] == [r["hex"].replace(" ", "").lower() for r in mine]


@pytest.mark.parametrize("style", ["iso", "android", "android-short", "bare"])
def test_sdk_prefixes_and_logs_without_timestamps(style):
    log = parse_log_text(report_scenario(style).text())
    log.check()
    assert [c.direction for c in log.changesets] == ["upload"] * 4 + ["download", "upload"]
    assert log.timestamps == (style in ("iso", "android"))
    if style == "android":  # logcat has no year: times are still seconds since the first line
        assert log.changesets[4].time == pytest.approx(0.25)


def test_a_compressed_changeset_is_inflated_and_checked_against_its_size():
    big = create("n1", "x" * 1500) + [append("root", "n1", 0)]
    text = LogBuilder().upload(2, 0, big).text()
    assert "Changeset(comp): " in text
    log = parse_log_text(text)
    log.check()
    assert log.changesets[0].compressed and log.changesets[0].decoded.instructions[1].value.value == "x" * 1500
    raw = encode_changeset(big)
    wrong = text.replace(f"Changeset(comp): {len(raw)} ", f"Changeset(comp): {len(raw) + 1} ")
    with pytest.raises(LogError, match=r"line \d+: it inflates to \d+ bytes, not the \d+ the line declares"):
        parse_log_text(wrong).check()
    garbled = text.replace(base64.b64encode(zlib.compress(raw, 1)).decode()[:8], "AAAAAAAA")
    with pytest.raises(LogError, match="do not inflate|does not decode"):
        parse_log_text(garbled).check()


def test_a_clamped_hex_dump_is_reported_as_truncated():
    big = create("n1", "y" * 1100)
    raw = encode_changeset(big)
    log = LogBuilder()
    log.say("debug", f"Connection[1]: Received: DOWNLOAD CHANGESET(server_version=3, client_version=0, "
                     f"origin_timestamp={log.ms()}, origin_file_ident=5, original_changeset_size={len(raw)}, "
                     f"changeset_size={len(raw)})")
    log.say("trace", log.changeset_line(raw, False, clamp=True))
    parsed = parse_log_text(log.text())
    assert parsed.changesets[0].truncated and parsed.changesets[0].decoded is None
    with pytest.raises(LogError, match=r"^line 2: the hex dump is clamped at 1024 bytes \('\.\.\.'\): the changeset "
                                       rf"\({len(raw)} bytes\) is not all in the log$"):
        parsed.check()


def test_a_header_without_its_changeset_line():
    lines = report_scenario().text().splitlines()
    cut = next(n for n, line in enumerate(lines) if "DOWNLOAD CHANGESET" in line)
    del lines[cut + 1]
    with pytest.raises(LogError, match=rf"^line {cut + 1}: DOWNLOAD CHANGESET header without its changeset line$"):
        parse_log_text("\n".join(lines)).check()


def test_a_log_below_trace_level_says_so():
    text = "\n".join(line for line in report_scenario().text().splitlines() if "Changeset: " not in line)
    with pytest.raises(LogError, match="recorded below trace level"):
        parse_log_text(text).check()


def test_a_wrong_size_names_both_lines():
    text = LogBuilder().upload(2, 0, create("n1", "t"), size=999).text()
    with pytest.raises(LogError, match=r"line 3: the changeset has \d+ bytes, its header \(line 2\) says 999"):
        parse_log_text(text).check()


def test_garbage_is_not_a_log():
    with pytest.raises(LogError, match="no realm sync changesets found"):
        parse_log_text("\x00\x01 hello\nnot a log at all\n").check()
    bad_bytes = LogBuilder().upload(2, 0, create("n1", "t")).text().replace("Changeset: 3F", "Changeset: 3G")
    with pytest.raises(LogError, match="not hex digits"):
        parse_log_text(bad_bytes).check()


def test_undecodable_bytes_name_the_line_and_the_byte():
    raw = encode_changeset(create("n1", "t"))
    text = LogBuilder().upload(2, 0, create("n1", "t")).text()
    text = text.replace(raw.hex(" ").upper(), (raw[:-1] + b"\x0e").hex(" ").upper())
    with pytest.raises(LogError, match=rf"line 3: the changeset does not decode: byte {len(raw) - 1}: "):
        parse_log_text(text).check()


def test_debug_build_printouts_and_orphan_changeset_lines_are_skipped_with_reasons():
    lines = report_scenario().text().splitlines()
    at = next(n for n, line in enumerate(lines) if "Changeset: " in line)
    lines[at + 1:at + 1] = ["2026-12-06T15:49:37.100Z trace: Connection[1]: Session[1]: Changeset (parsed):",
                            'InternStrings   0="Node"', 'CreateObject    path=Node["root"]']
    lines.append("2026-12-06T15:49:38.000Z trace: Connection[1]: Changeset: 00")
    log = parse_log_text("\n".join(lines))
    log.check()
    reasons = " | ".join(log.skipped_lines())
    assert "3 lines: debug-build 'Changeset (parsed):' output" in reasons
    assert "1 line: a changeset line without a header before it" in reasons


def test_a_server_log_is_named_as_such():
    text = ("2026-12-06T15:49:37.096Z trace: Sync Connection[1]: Received: UPLOAD CHANGESET(client_version=2, "
            "server_version=0, origin_timestamp=1, origin_file_ident=0, changeset_size=1)\n"
            "2026-12-06T15:49:37.096Z trace: Sync Connection[1]: Changeset: 00\n")
    with pytest.raises(LogError, match="sync server's log"):
        parse_log_text(text).check()


def test_a_log_of_several_clients_is_refused():
    one = report_scenario().text().splitlines()
    mixed = [line.replace(": Connection[1]", ": Client[1]: Connection[1]") for line in one[:8]] + \
            [line.replace(": Connection[1]", ": Client[2]: Connection[1]") for line in one[8:]]
    with pytest.raises(LogError, match=r"mixes several clients' changesets \(Client\[1\], Client\[2\]\)"):
        parse_log_text("\n".join(mixed)).check()
