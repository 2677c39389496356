"""Read a Realm SDK sync-client trace log: the changesets it sent and received, and the protocol
lines that say when each was integrated or acknowledged.

Why a parser of its own: the people who lost data have their app's log, not a model. The
SDKs write realm-core's messages behind their own prefixes (a timestamp and level, Android's
`V/REALM_SYNC: `, a test fixture's `Client[1]: `), so messages are found anywhere in a line,
and only realm-core's own text is relied on (FORMAT_NOTES.md lists the formats, with the
realm-core source of each). Every changeset is checked against its header (size) and decoded;
anything that makes a faithful replay impossible is a `problem` (a truncated hex dump, a header
without its changeset line, a wrong size, bytes that do not decode), and everything else that is
not used is counted in `skipped`, with the reason.

Formats read (message part; see FORMAT_NOTES.md):
- `Received: DOWNLOAD CHANGESET(server_version=.., client_version=.., origin_timestamp=..,
  origin_file_ident=.., original_changeset_size=.., changeset_size=..)` (with or without
  `session_ident=`; older cores spell `origin_client_file_ident`), then `Changeset: <hex>` or
  `Changeset(comp): <size> <base64 of zlib-compressed bytes>`;
- `Fetching changeset for upload (client_version=.., server_version=.., changeset_size=..,
  origin_timestamp=.., origin_file_ident=..)`, then its changeset line;
- `Received: DOWNLOAD(download_server_version=.., download_client_version=.., ...)` (a batch's
  summary), `Integrated N changesets out of M`, `N remote changeset(s) integrated, producing client
  version V`, `Received: IDENT(client_file_ident=..)`, `Sending: UPLOAD(...)`, `Sending: BIND(...)`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as _dt
import os
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

from ._codec import ChangesetError
from ._decoder import DecodedChangeset, decode_changeset

__all__ = ["SyncLog", "LogChangeset", "LogEvent", "LogError", "parse_log", "parse_log_text", "REALM_EPOCH"]

#: origin_timestamp counts milliseconds since 2015-01-01T00:00:00Z (sync::generate_changeset_timestamp).
REALM_EPOCH = _dt.datetime(2015, 1, 1, tzinfo=_dt.UTC)

_STAMP = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?)\s*(Z|[+-]\d{2}:?\d{2})?")
_LOGCAT_STAMP = re.compile(r"^\s*(\d{2})-(\d{2})\s+(\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)")
_DOWNLOAD_HEADER = re.compile(r"Received: DOWNLOAD CHANGESET\(([^)]*)\)")
_UPLOAD_HEADER = re.compile(r"Fetching changeset for upload \(([^)]*)\)")
_SERVER_UPLOAD = re.compile(r"Received: UPLOAD CHANGESET\(([^)]*)\)")
_HEX = re.compile(r"(?<![\w(])Changeset: ?(.*)$")
_COMP = re.compile(r"Changeset\(comp\): (\d+) (\S*)\s*$")
_PARSED = re.compile(r"Changeset \(parsed\):")
_BATCH = re.compile(r"Received: DOWNLOAD\((download_server_version=[^)]*)\)")
_INTEGRATED = re.compile(r"Integrated (\d+) changesets? out of (\d+)")
_PRODUCING = re.compile(r"(\d+) remote changesets? integrated, producing client version (\d+)")
_IDENT = re.compile(r"Received: IDENT\((client_file_ident=[^)]*)\)")
_SENDING_UPLOAD = re.compile(r"Sending: UPLOAD\(([^)]*)\)")
_BIND = re.compile(r"Sending: BIND\(([^)]*)\)")
_DEACTIVATED = re.compile(r"Deactivation completed|Sending: UNBIND")
_SESSION = re.compile(r"Session\[(\d+)\]")
_CONNECTION = re.compile(r"(?<!Sync )Connection\[(\d+)\]")
_CLIENT_TAG = re.compile(r"\bClient\[(\d+)\]: ")
_PRINTED_LINE = re.compile(r"^\s*(InternStrings|AddTable|EraseTable|AddColumn|EraseColumn|CreateObject|EraseObject|"
                           r"Update|AddInteger|ArrayInsert|ArrayMove|ArrayErase|Clear|SetInsert|SetErase)\s")
_KV = re.compile(r"(\w+)=([^,\s)]*)")


class LogError(ValueError):
    """A log that cannot be replayed faithfully; the message is one line naming the log line."""


@dataclasses.dataclass(frozen=True)
class LogChangeset:
    """One changeset the log shows being uploaded or downloaded, with its header's fields.

    `direction`: "upload" (the client's own change, `Fetching changeset for upload`) or
    "download". `fields`: the header's key=value integers (server_version, client_version,
    origin_timestamp, origin_file_ident, changeset_size, ...). `time`: seconds since the log's
    first timestamped line, None without timestamps. `decoded` is None when the changeset line
    was missing, truncated or undecodable (then the log has a `problem` naming it)."""

    line: int
    direction: str
    fields: dict[str, int]
    time: float | None
    changeset_line: int | None
    size: int | None
    compressed: bool
    truncated: bool
    decoded: DecodedChangeset | None
    connection: int | None
    session: int | None

    @property
    def server_version(self) -> int:
        return self.fields.get("server_version", 0)

    @property
    def client_version(self) -> int:
        return self.fields.get("client_version", 0)

    @property
    def origin_timestamp(self) -> int:
        return self.fields.get("origin_timestamp", 0)

    @property
    def origin_file_ident(self) -> int:
        return self.fields.get("origin_file_ident", self.fields.get("origin_client_file_ident", 0))


@dataclasses.dataclass(frozen=True)
class LogEvent:
    """A protocol line the replay needs: "batch" (a DOWNLOAD message's summary), "integrated",
    "ident", "upload_message", "bind", "deactivated". `fields` holds its numbers."""

    line: int
    kind: str
    fields: dict[str, int]
    time: float | None
    session: int | None


@dataclasses.dataclass
class SyncLog:
    """What a trace log holds for a replay, and what was skipped or wrong in it."""

    source: str
    lines: int
    changesets: list[LogChangeset]
    events: list[LogEvent]
    problems: list[str]
    skipped: Counter[str]
    start: _dt.datetime | None
    timestamps: bool
    clients: list[str]

    def check(self) -> None:
        """Raise LogError with the first problem (one line), or when nothing could be replayed."""
        if self.problems:
            more = f" (and {len(self.problems) - 1} more problem{'s' if len(self.problems) > 2 else ''})" \
                if len(self.problems) > 1 else ""
            raise LogError(f"{self.problems[0]}{more}")
        if not self.changesets:
            if self.skipped.get(_SERVER_SKIP):
                raise LogError("this is a sync server's log (uploads a server received); replay reads a client's "
                               "(an app's) trace log")
            raise LogError("no realm sync changesets found: not a Realm sync client trace log, or recorded below "
                           "trace level (see the README's \"Investigate your own app's log\")")

    def skipped_lines(self) -> list[str]:
        """Why lines were not used, most frequent first: "12 lines: ..."."""
        return [f"{n} line{'s' if n != 1 else ''}: {why}" for why, n in self.skipped.most_common()]


_PRINTED_SKIP = "debug-build 'Changeset (parsed):' output (the hex is what is replayed)"
_SERVER_SKIP = "a sync server's line (replay reads the client's side)"


def _fields(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in _KV.findall(text):
        if value.lstrip("-").isdigit():
            out[key] = int(value)
        elif value in ("true", "false"):
            out[key] = int(value == "true")
    return out


def _stamp(line: str, year: int | None) -> _dt.datetime | None:
    match = _STAMP.match(line)
    if match:
        date, clock, zone = match.groups()
        clock = clock.replace(",", ".")
        if "." in clock:
            whole, frac = clock.split(".")
            clock = f"{whole}.{frac[:6].ljust(6, '0')}"
        try:
            stamp = _dt.datetime.fromisoformat(f"{date}T{clock}")
        except ValueError:
            return None
        if zone and zone != "Z":
            zone = zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
            stamp = stamp.replace(tzinfo=_dt.datetime.fromisoformat(f"2000-01-01T00:00:00{zone}").tzinfo)
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=_dt.UTC)
    match = _LOGCAT_STAMP.match(line)
    if match:  # logcat writes no year: the one the caller assumes (only differences matter)
        month, day, clock = match.groups()
        try:
            return _dt.datetime.fromisoformat(f"{year or 2000:04d}-{month}-{day}T{clock}").replace(
                tzinfo=_dt.UTC)
        except ValueError:
            return None
    return None


def _read_hex(text: str) -> tuple[bytes | None, bool, str | None]:
    """(bytes, clamped, problem) of a `Changeset:` line's dump (realm-core clamps a dump at 1024 bytes and ends it
    in "...": clamped_hex_dump.hpp)."""
    body = text.strip()
    clamped = body.endswith("...")
    if clamped:
        body = body[:-3].strip()
    tokens = body.split()
    if any(len(t) != 2 for t in tokens):
        return None, clamped, "its hex dump is not in byte pairs"
    try:
        return bytes.fromhex("".join(tokens)), clamped, None
    except ValueError:
        return None, clamped, "its hex dump holds characters that are not hex digits"


def _read_comp(size: int, text: str) -> tuple[bytes | None, str | None]:
    """Bytes of a `Changeset(comp):` line: base64 of zlib-compressed bytes (realm-core's
    util::compression::allocate_and_compress: deflate with a zlib header), checked against `size`."""
    try:
        packed = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None, "its base64 does not decode"
    try:
        raw = zlib.decompress(packed)
    except zlib.error as exc:
        return None, f"its compressed bytes do not inflate ({exc})"
    if len(raw) != size:
        return None, f"it inflates to {len(raw)} bytes, not the {size} the line declares"
    return raw, None


def parse_log_text(text: str, source: str = "<text>") -> SyncLog:
    """`parse_log` on a log already in memory."""
    return _Parser(source).run(text.splitlines())


def parse_log(path: str | os.PathLike[str]) -> SyncLog:
    """Read the trace log at `path` (OSError if it cannot be read). Bytes that are not UTF-8 are
    replaced, never fatal: a log is read as far as it makes sense, and `check()` says if not."""
    raw = Path(path).read_bytes()
    return _Parser(str(path)).run(raw.decode("utf-8", errors="replace").splitlines())


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.changesets: list[LogChangeset] = []
        self.events: list[LogEvent] = []
        self.problems: list[str] = []
        self.skipped: Counter[str] = Counter()
        self.start: _dt.datetime | None = None
        self.year: int | None = None
        self.pending: dict[str, Any] | None = None  # a header waiting for its changeset line
        self.in_printed = False
        self.clients: set[str] = set()
        self.client_changesets: set[str] = set()
        self.last_time: float | None = None
        self.saw_changeset_line = False
        self.headers_without: list[int] = []

    def run(self, lines: list[str]) -> SyncLog:
        for number, line in enumerate(lines, 1):
            self.line(number, line)
        if self.pending is not None:
            self._missing(self.pending)
        if self.headers_without and not self.saw_changeset_line:
            # Every header lacks its changeset: one cause, one message.
            self.problems = [p for p in self.problems if "without its changeset line" not in p]
            self.problems.insert(0, f"line {self.headers_without[0]}: changeset headers but no 'Changeset:' lines: "
                                    "the log was recorded below trace level (set the sync log level to trace)")
        if len(self.client_changesets) > 1:
            clients = ", ".join(sorted(self.client_changesets))
            self.problems.insert(0, f"the log mixes several clients' changesets ({clients}); "
                                    "give replay one client's lines")
        return SyncLog(self.source, len(lines), self.changesets, self.events, self.problems, self.skipped,
                       self.start, self.start is not None, sorted(self.clients))

    # -- one line ------------------------------------------------------------------------
    def _time(self, line: str) -> float | None:
        stamp = _stamp(line, self.year)
        if stamp is None:
            return self.last_time
        if self.start is None:
            self.start = stamp
            self.year = stamp.year
        self.last_time = max(self.last_time or 0.0, (stamp - self.start).total_seconds())
        return self.last_time

    def line(self, number: int, line: str) -> None:
        if not line.strip():
            self.skipped["blank"] += 1
            return
        stamped = _stamp(line, self.year) is not None
        if self.in_printed and not stamped and _PRINTED_LINE.match(line):
            self.skipped[_PRINTED_SKIP] += 1
            return
        self.in_printed = False
        time = self._time(line)
        tag = _CLIENT_TAG.search(line)
        if tag:
            self.clients.add(f"Client[{tag.group(1)}]")
        session = _SESSION.search(line)
        session_no = int(session.group(1)) if session else None
        if self._header(number, line, time, tag, session_no):
            return
        if _SERVER_UPLOAD.search(line) or "Sync Connection[" in line:
            self.skipped[_SERVER_SKIP] += 1
            return
        comp = _COMP.search(line)
        hex_match = None if comp else _HEX.search(line)
        if comp or hex_match:
            self.saw_changeset_line = True
            self._changeset(number, comp, hex_match)
        elif _PARSED.search(line):
            self.in_printed = True
            self.skipped[_PRINTED_SKIP] += 1
        elif not self._event(number, line, time, session_no):
            self.skipped["other log lines (connection, protocol and SDK messages the replay does not need)"] += 1

    def _header(self, number: int, line: str, time: float | None, tag: re.Match[str] | None,
                session_no: int | None) -> bool:
        """A changeset's header line (download or upload): kept until its changeset line comes."""
        for pattern, direction in ((_DOWNLOAD_HEADER, "download"), (_UPLOAD_HEADER, "upload")):
            match = pattern.search(line)
            if match:
                if self.pending is not None:
                    self._missing(self.pending)
                connection = _CONNECTION.search(line)
                self.pending = {"line": number, "direction": direction, "fields": _fields(match.group(1)),
                                "time": time, "connection": int(connection.group(1)) if connection else None,
                                "session": session_no, "client": f"Client[{tag.group(1)}]" if tag else None}
                return True
        return False

    def _event(self, number: int, line: str, time: float | None, session_no: int | None) -> bool:
        """A line the replay reads as an event (batch, ident, upload, bind, integrated, deactivated)."""
        for pattern, kind in ((_BATCH, "batch"), (_IDENT, "ident"), (_SENDING_UPLOAD, "upload_message"),
                              (_BIND, "bind")):
            match = pattern.search(line)
            if match:
                self.events.append(LogEvent(number, kind, _fields(match.group(1)), time, session_no))
                return True
        match = _INTEGRATED.search(line)
        if match:
            self.events.append(LogEvent(number, "integrated", {"integrated": int(match.group(1)),
                                                               "received": int(match.group(2))}, time, session_no))
            return True
        match = _PRODUCING.search(line)
        if match:
            self.events.append(LogEvent(number, "integrated", {"integrated": int(match.group(1)),
                                                               "client_version": int(match.group(2))},
                                        time, session_no))
            return True
        if _DEACTIVATED.search(line):
            self.events.append(LogEvent(number, "deactivated", {}, time, session_no))
            return True
        return False

    def _missing(self, header: dict[str, Any]) -> None:
        what = "DOWNLOAD CHANGESET" if header["direction"] == "download" else "upload changeset"
        self.problems.append(f"line {header['line']}: {what} header without its changeset line")
        self.headers_without.append(header["line"])
        self.pending = None

    def _changeset(self, number: int, comp: re.Match[str] | None, hex_match: re.Match[str] | None) -> None:
        header = self.pending
        if header is None:
            self.skipped["a changeset line without a header before it"] += 1
            return
        self.pending = None
        declared = header["fields"].get("changeset_size")
        raw: bytes | None
        truncated = False
        problem = None
        if comp:
            raw, problem = _read_comp(int(comp.group(1)), comp.group(2))
        else:
            assert hex_match is not None
            raw, truncated, problem = _read_hex(hex_match.group(1))
            if truncated and problem is None:
                problem = (f"the hex dump is clamped at {len(raw or b'')} bytes ('...'): the changeset "
                           f"({declared if declared is not None else 'size unknown'} bytes) is not all in the log")
                raw = None
        if problem is None and raw is not None and declared is not None and len(raw) != declared:
            problem = f"the changeset has {len(raw)} bytes, its header (line {header['line']}) says {declared}"
            raw = None
        decoded = None
        if problem is None and raw is not None:
            try:
                decoded = decode_changeset(raw)
            except ChangesetError as exc:
                problem = f"the changeset does not decode: {exc}"
        if problem is not None:
            self.problems.append(f"line {number}: {problem}")
        if header["client"]:
            self.client_changesets.add(header["client"])
        self.changesets.append(LogChangeset(
            line=header["line"], direction=header["direction"], fields=header["fields"], time=header["time"],
            changeset_line=number, size=len(raw) if raw is not None else declared, compressed=bool(comp),
            truncated=truncated, decoded=decoded, connection=header["connection"], session=header["session"]))
