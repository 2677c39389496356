"""Build realm-core 13 sync-client trace logs for tests, in the SDKs' line formats.

The changesets are real bytes (the kit's encoder, checked against realm-core's recordings), the
lines are realm-core's messages (FORMAT_NOTES.md) behind a prefix: "iso" (the recorded logs'
`<ISO time>Z <level>: `), "android" (logcat's `MM-DD hh:mm:ss.mmm  pid  tid V REALM_SYNC: `),
"android-short" (`V/REALM_SYNC: `, no time) or "bare" (the message alone).
"""

from __future__ import annotations

import base64
import datetime as dt
import zlib
from typing import Any

from repro_kit.realm_log import ArrayInsert, Clear, CreateObject, Link, Payload, Update, encode_changeset
from repro_kit.realm_log._logparse import REALM_EPOCH

START = dt.datetime(2026, 12, 6, 15, 49, 37, 87000, tzinfo=dt.timezone.utc)
_LEVEL_LETTER = {"trace": "V", "debug": "D", "detail": "D", "info": "I", "warn": "W", "error": "E"}


def create(pk: str, text: str) -> list[Any]:
    return [CreateObject("Node", pk), Update("Node", pk, "text", (), Payload("String", text))]


def append(owner: str, pk: str, index: int) -> ArrayInsert:
    return ArrayInsert("Node", owner, "children", (index,), Payload("Link", Link("Node", pk)), index)


def clear(owner: str) -> Clear:
    return Clear("Node", owner, "children")


class LogBuilder:
    """Lines of one client's log; `t` is seconds since START."""

    def __init__(self, style: str = "iso") -> None:
        self.style = style
        self.lines: list[str] = []
        self.t = 0.0

    def ms(self, t: float | None = None) -> int:
        """origin_timestamp of a change made at `t`."""
        when = START + dt.timedelta(seconds=self.t if t is None else t)
        return int((when - REALM_EPOCH).total_seconds() * 1000)

    def say(self, level: str, message: str, t: float | None = None) -> "LogBuilder":
        if t is not None:
            self.t = t
        when = START + dt.timedelta(seconds=self.t)
        if self.style == "iso":
            prefix = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z {level}: "
        elif self.style == "android":
            prefix = when.strftime("%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}  4242  4243 " \
                     f"{_LEVEL_LETTER[level]} REALM_SYNC: "
        elif self.style == "android-short":
            prefix = f"{_LEVEL_LETTER[level]}/REALM_SYNC: "
        else:
            prefix = ""
        self.lines.append(prefix + message)
        return self

    def ident(self, ident: int) -> "LogBuilder":
        return self.say("debug", f"Connection[1]: Session[1]: Received: IDENT(client_file_ident={ident}, "
                                 "client_file_ident_salt=77)")

    def changeset_line(self, raw: bytes, session: bool, comp: bool = False, clamp: bool = True) -> str:
        where = "Connection[1]: Session[1]: " if session else "Connection[1]: "
        if comp:
            return f"{where}Changeset(comp): {len(raw)} {base64.b64encode(zlib.compress(raw, 1)).decode()}"
        shown = raw[:1024] if clamp else raw
        return f"{where}Changeset: {shown.hex(' ').upper()}{'...' if clamp and len(raw) > 1024 else ''}"

    def upload(self, cv: int, base: int, instructions: list[Any], t: float | None = None, comp: bool = False,
               size: int | None = None) -> "LogBuilder":
        raw = encode_changeset(instructions)
        made = self.ms(t)
        self.say("debug", f"Connection[1]: Session[1]: Sending: UPLOAD(progress_client_version={cv}, "
                          f"progress_server_version={base}, locked_server_version={base}, num_changesets=1)")
        self.say("debug", f"Connection[1]: Session[1]: Fetching changeset for upload (client_version={cv}, "
                          f"server_version={base}, changeset_size={len(raw) if size is None else size}, "
                          f"origin_timestamp={made}, origin_file_ident=0)")
        return self.say("trace", self.changeset_line(raw, True, comp=comp or len(raw) >= 1024))

    def download(self, sv: int, lc: int, origin: int, instructions: list[Any], made_at: float, comp: bool = False,
                 integrated_cv: int | None = None, dcv: int | None = None, raw: bytes | None = None) -> "LogBuilder":
        if raw is None:
            raw = encode_changeset(instructions)
        self.say("debug", f"Connection[1]: Received: DOWNLOAD CHANGESET(session_ident=1, server_version={sv}, "
                          f"client_version={lc}, origin_timestamp={self.ms(made_at)}, origin_file_ident={origin}, "
                          f"original_changeset_size={len(raw)}, changeset_size={len(raw)})")
        self.say("trace", self.changeset_line(raw, False, comp=comp or len(raw) >= 1056))
        self.batch(sv, lc if dcv is None else dcv, 1)
        self.say("debug", "Connection[1]: Session[1]: Integrated 1 changesets out of 1")
        if integrated_cv is not None:
            self.say("debug", f"Connection[1]: Session[1]: 1 remote changeset integrated, producing client version "
                              f"{integrated_cv}")
        return self

    def batch(self, dsv: int, dcv: int, n: int = 0) -> "LogBuilder":
        return self.say("debug", f"Connection[1]: Session[1]: Received: DOWNLOAD(download_server_version={dsv}, "
                                 f"download_client_version={dcv}, latest_server_version={dsv}, "
                                 f"latest_server_version_salt=1, upload_client_version={dcv}, upload_server_version=0, "
                                 f"downloadable_bytes=0, last_in_batch=true, query_version=0, num_changesets={n}, ...)")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def report_scenario(style: str = "iso") -> LogBuilder:
    """Device A of the recorded scenario, rebuilt: root + c1..c3 (server versions 1), a1..a3 appended
    (2..4), another client's Clear + c1..c3 based on version 1 (5), p1 appended after (6)."""
    log = LogBuilder(style)
    log.ident(2)
    log.t = 0.01
    root = create("root", "root") + [x for n, c in enumerate(("c1", "c2", "c3")) for x in
                                     create(c, f"child {c}") + [append("root", c, n)]]
    log.upload(2, 0, root)
    log.t = 0.02
    log.batch(1, 2)
    for n, pk in enumerate(("a1", "a2", "a3")):
        log.t = 0.05 + 0.04 * n
        log.upload(3 + n, 1 + n, create(pk, f"appended {pk}") + [append("root", pk, 3 + n)])
        log.t += 0.02
        log.batch(2 + n, 3 + n)
    log.t = 0.25
    reimport: list[Any] = [clear("root")] + [append("root", c, n) for n, c in enumerate(("c1", "c2", "c3"))]
    log.download(5, 5, 3, reimport, made_at=0.2, integrated_cv=7)
    log.t = 0.3
    log.upload(8, 5, create("p1", "appended after p1") + [append("root", "p1", 3)])
    log.t = 0.32
    log.batch(6, 8)
    return log
