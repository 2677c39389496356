"""The run directory: append-only evidence that survives a killed process.

A run is the unit of evidence (DESIGN.md, "Recording"): `meta.json` (parameters and
versions), `history.jsonl` (Jepsen-style ops) and `events.jsonl` (observations).
Every line is written and flushed as it happens, so a SIGKILL leaves at worst one
truncated last line, which `load_run` drops. Bulk recordings keep history and events as
Arrow record batches instead (`format="arrow"`, `_arrow_log`), appended a batch per flush.

`load_run` returns a `Run` whose DataFrames are built on first use; the analysis reads
plain columns (`_columns`), so judging a run needs neither pandas nor pyarrow.
"""

from __future__ import annotations

import datetime as _dt
import importlib.machinery
import io
import itertools
import json
import math
import os
import platform
import re
import sys
import threading
import time as _time
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata as _metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, overload

import numpy as np

from repro_kit import _checks, _columns
from repro_kit._atomic import write_text_atomic
from repro_kit._redaction import redact
from repro_kit._runlock import RunLock
from repro_kit._strict_json import loads_finite

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# pandas is imported where a DataFrame is built, not here: with pyarrow (which pandas 3 imports)
# it took ~0.3 s of the ~0.5 s a fresh process spent recording and judging the report's scenario
# (`python -X importtime`, issue 21), and a run's verdict needs no DataFrame (`_columns`).

__all__ = [
    "RunRecorder",
    "MemoryRecorder",
    "RUN_KINDS",
    "Run",
    "load_run",
    "latest_run",
    "runs_root",
    "project_root",
    "default_versions",
    "HISTORY_FILE",
    "EVENTS_FILE",
    "META_FILE",
    "TRACE_FILE",
    "HISTORY_ARROW",
    "EVENTS_ARROW",
    "FORMATS",
]

META_FILE = "meta.json"
HISTORY_FILE = "history.jsonl"
EVENTS_FILE = "events.jsonl"
TRACE_FILE = "trace.jsonl"
HISTORY_ARROW = "history.arrows"  # columnar logs (`RunRecorder(format="arrow")`, `_arrow_log`)
EVENTS_ARROW = "events.arrows"
LOG_FILES = (HISTORY_FILE, EVENTS_FILE, HISTORY_ARROW, EVENTS_ARROW)
FORMATS = ("jsonl", "arrow")
ARROW_BATCH_ROWS = 8192  # records per Arrow batch by default

OP_TYPES = ("invoke", "ok", "fail", "info")
#: What a run directory holds (meta.json "kind"): one timed run, a fleet through one deploy, a replayed log.
RUN_KINDS = ("run", "fleet", "replay")
OBSERVERS = ("device", "atlas")
EVENT_KINDS = ("enter", "leave", "doc_insert", "doc_delete", "counts", "batch", "poll")
_INT_EVENT_COLUMNS = ("root_children", "nodes_total", "batch")
_CHUNK_BYTES = 8 << 20

_VERSIONED = ("repro_kit", "pandas", "numpy", "matplotlib", "simpy", "pymongo", "requests")


def default_versions() -> dict[str, str]:
    """Versions worth quoting in a bug report (missing packages are left out)."""
    versions = {"python": platform.python_version()}
    found = _installed_versions(_VERSIONED)
    for dist in _VERSIONED:
        version = found.get(dist) if found is not None else None
        if version is None:  # not found by the one scan: importlib.metadata decides, as before
            try:
                version = _metadata.version(dist)
            except Exception:  # not installed, or a broken install's metadata: a version table never stops a run
                continue
        versions[dist] = version
    return versions


def _normalise_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def _installed_versions(names: tuple[str, ...]) -> dict[str, str] | None:
    """`importlib.metadata.version` of each name, found by one listing of each sys.path folder.

    Why: seven `version()` calls took 17-38 ms of a fresh process's first run (each searches
    every folder on sys.path again; measured on a shared 2-core machine, issue 21). The search is
    importlib.metadata's own (path order, `name-version.dist-info` / `.egg-info` folders matched
    by normalised name, the first wins, Version read from METADATA or PKG-INFO); where it could
    differ (a zip or an egg on sys.path, another distribution finder), None: the caller asks
    importlib.metadata, and a name found here without a readable version is left to it too."""
    finders = [f for f in sys.meta_path if getattr(f, "find_distributions", None) is not None]
    if finders != [importlib.machinery.PathFinder]:
        return None
    folders = _metadata_folders(names)
    if folders is None:
        return None
    out = {}
    for name, folder in folders.items():
        version = _metadata_version(folder)
        if version is not None:
            out[name] = version
    return out


def _metadata_folders(names: tuple[str, ...]) -> dict[str, str] | None:
    """Each name's first `.dist-info` / `.egg-info` folder along sys.path, or None where
    importlib.metadata would look elsewhere too (an egg or a zip on the path)."""
    wanted = {_normalise_dist(n): n for n in names}
    folders: dict[str, str] = {}
    for entry in sys.path:
        root = entry or "."
        children = _listing(root)
        if children is None:
            return None
        for child in children:
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")):
                name = wanted.get(_normalise_dist(low.rpartition(".")[0].partition("-")[0]))
                if name is not None and name not in folders:
                    folders[name] = os.path.join(root, child)
    return folders


def _listing(root: str) -> list[str] | None:
    """A sys.path folder's entries ([] when it is missing or unreadable), or None for an egg or a
    zip file, which importlib.metadata looks inside."""
    if root.lower().endswith(".egg"):
        return None
    try:
        return os.listdir(root)
    except (FileNotFoundError, PermissionError):
        return []
    except OSError:  # a zip file
        return None


def _metadata_version(folder: str) -> str | None:
    """The Version header of the folder's METADATA, else of its PKG-INFO (the first that opens)."""
    for meta in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(folder, meta), encoding="utf-8") as fh:
                return _version_header(fh)
        except OSError:
            continue
    return None


def _version_header(lines: Iterable[str]) -> str | None:
    """The value of the first `Version:` header (the headers end at the first blank line)."""
    for line in lines:
        if not line.strip():
            return None
        key, _, value = line.partition(":")
        if key.strip().lower() == "version":
            return value.strip()
    return None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    return str(obj)  # uuid.UUID, bson ObjectId, Path: their string form is what reports show


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def _write_json_atomic(path: Path, obj: Any) -> None:
    """Write-then-rename, so a reader sees the old or the new file, never half of one."""
    write_text_atomic(path, json.dumps(obj, default=_json_default, indent=2, ensure_ascii=False) + "\n")


def _arrow_module(needing: str) -> Any:
    """`_arrow_log`, imported for columnar recordings only (pyarrow); a one-line ValueError without pyarrow.

    Imported here, not at the top: pyarrow is optional, its import alone takes ~0.1 s (see
    `_ARROW_MIN_BYTES`), and `_arrow_log` builds on this module."""
    try:
        from repro_kit import _arrow_log  # noqa: PLC0415 - optional pyarrow: see the docstring
    except ImportError:
        raise ValueError(f"{needing} needs pyarrow, which is not installed (pip install pyarrow)") from None
    return _arrow_log


class _JsonlSink(io.IOBase):
    """A JSON-lines log: each record is one line, written now (flushed by the recorder). It is a
    file to `_errors` (an IOBase with a name), as is the file it writes through, so a failed
    write is named by the traceback whichever frame it is raised in."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - the log's file, open until close()

    @property
    def name(self) -> str:
        return self._fh.name

    def write(self, line: dict[str, Any]) -> None:
        fh = self._fh
        fh.write(_dumps(line) + "\n")

    def flush(self) -> None:
        fh = self._fh
        fh.flush()

    def close(self) -> None:
        fh = self._fh
        try:
            super().close()  # flushes
        finally:
            fh.close()


def _claim(path: Path) -> RunLock:
    """`path` made a run directory (new, or holding no run) and locked for this run's life: one run
    at a time; a killed run's lock is stale. Appending a second run to the first would corrupt both."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"path is not a directory: {path}")
    path.mkdir(parents=True, exist_ok=True)
    lock = RunLock(path).acquire()
    held = [name for name in (META_FILE, *LOG_FILES) if (path / name).exists()]
    if held:
        lock.release()
        raise ValueError(f"out: {path} already holds a run ({held[0]}); choose a new directory or remove it")
    return lock


class RunRecorder:
    """Append ops and observations to a run directory, one flushed line each.

    `time` arguments are seconds since run start; when omitted, the recorder's own
    monotonic clock (started at construction) is used, which suits real-time runs.
    Thread-safe: the watcher may record from callbacks while the writer records ops.

    `format="jsonl"` (the default, DESIGN's contract for a run) writes history.jsonl and
    events.jsonl, a line each, flushed every `flush_every` lines (default 1: a killed run
    loses nothing). `format="arrow"` is for bulk recordings (a fleet, a million events):
    history.arrows and events.arrows, records buffered into columns and appended as one Arrow
    record batch per log at each flush, every `flush_every` records (default 8,192) and at the
    end; a killed run keeps every flushed batch. `flush()` flushes now. `load_run` reads both;
    `repro-kit export DIR --jsonl` turns the columnar logs into the JSON-lines files.
    The sync server's trace is trace.jsonl in both formats.
    """

    def __init__(self, path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None, *,
                 flush_every: int | None = None, format: str = "jsonl") -> None:
        if meta is not None:
            _checks.instance("meta", meta, Mapping, "a mapping")
        self.format = _checks.choice("format", format, FORMATS)
        arrow_log = _arrow_module('format="arrow"') if format == "arrow" else None  # before touching the disk
        if flush_every is None:
            flush_every = 1 if format == "jsonl" else ARROW_BATCH_ROWS
        self._flush_every = _checks.integer("flush_every", flush_every, low=1)  # 1: each line reaches the disk now
        self.path = Path(path)
        self._run_lock = _claim(self.path)
        self.meta: dict[str, Any] = {
            "kind": "run",
            "started_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"),
            "versions": default_versions(),
            **redact(dict(meta or {})),
            "finished": False,
        }
        self._lock = threading.Lock()
        self._t0 = _time.monotonic()
        self._index = 0
        self._history_file, self._events_file = ((HISTORY_ARROW, EVENTS_ARROW) if arrow_log is not None
                                                 else (HISTORY_FILE, EVENTS_FILE))
        # records written per log: meta.json says them at the end, so a reader can tell a file cut short
        self._counts = {self._history_file: 0, self._events_file: 0, TRACE_FILE: 0}
        self._last_time = 0.0
        self._closed = False
        _write_json_atomic(self.path / META_FILE, self.meta)
        self._history, self._events = self._open_logs(arrow_log)
        self._trace: Any = None  # trace.jsonl, opened by the first record (backends that see the server)
        self._unflushed = 0

    def _open_logs(self, arrow_log: Any) -> tuple[Any, Any]:
        """The history and events logs: Arrow writers (`_arrow_log`), or JSON-lines sinks."""
        history, events = self.path / self._history_file, self.path / self._events_file
        if arrow_log is not None:
            return arrow_log.LogWriter(history, "history"), arrow_log.LogWriter(events, "events")
        return _JsonlSink(history), _JsonlSink(events)

    # -- clock -------------------------------------------------------------------------
    def now(self) -> float:
        """Seconds since this recorder started (for real-time runs)."""
        return _time.monotonic() - self._t0

    def _time(self, time: float | None) -> float:
        t = self.now() if time is None else float(time)
        if not math.isfinite(t):  # checked here first: `_checks.number` on every record cost ~7% of event()
            _checks.number("time", t)  # raises, naming the input
        return t

    # -- history -----------------------------------------------------------------------
    def op(self, process: int | str, type: str, f: str, value: Any = None, time: float | None = None) -> dict[str, Any]:
        """Append one Jepsen-style op; assigns `index` in file order and returns the line's dict."""
        if type not in OP_TYPES:
            _checks.choice("type", type, OP_TYPES)  # raises, naming the input
        if f.__class__ is not str or not f:  # (`_checks.text`, its common case inlined: a fleet records millions)
            _checks.text("f", f)
        if process.__class__ is not int:  # (a plain int is one: no ABC check on a fleet's millions)
            process = _checks.process("process", process)
        t = self._time(time)
        with self._lock:
            self._check_open()
            line = {
                "index": self._index,
                "time": t,
                "process": process,
                "type": type,
                "f": f,
                "value": value,
            }
            self._history.write(line)
            self._flush(self._history)
            self._index += 1
            self._counts[self._history_file] += 1
            if t > self._last_time:
                self._last_time = t
        return line

    def invoke(self, process: int | str, f: str, value: Any = None, time: float | None = None) -> dict[str, Any]:
        return self.op(process, "invoke", f, value, time)

    def ok(self, process: int | str, f: str, value: Any = None, time: float | None = None) -> dict[str, Any]:
        return self.op(process, "ok", f, value, time)

    def fail(self, process: int | str, f: str, value: Any = None, time: float | None = None) -> dict[str, Any]:
        return self.op(process, "fail", f, value, time)

    def info(self, process: int | str, f: str, value: Any = None, time: float | None = None) -> dict[str, Any]:
        return self.op(process, "info", f, value, time)

    # -- events ------------------------------------------------------------------------
    def event(self, event: Mapping[str, Any], *, take: bool = False) -> dict[str, Any]:
        """Append one observation ({"time", "observer", "kind", ...}); `time` defaults to now.

        `take=True`: `event` is a new dict the caller hands over as the line, already as one is
        written (time, observer and kind first and set, the time finite, a node_id a string; what
        the driver makes of a history `Event`), kept as it is: no copy and no checks for each of a
        fleet's million records."""
        line = cast(dict[str, Any], event) if take else self._event_line(event)
        t = line["time"]
        with self._lock:
            self._check_open()
            self._events.write(line)
            self._flush(self._events)
            self._counts[self._events_file] += 1
            if t > self._last_time:
                self._last_time = t
        return line

    def event_all(self, events: Sequence[Mapping[str, Any]], *, take: bool = False) -> list[dict[str, Any]]:
        """Append several observations at once, in order: each as `event` appends it, under one lock
        and flushed together (one device notification's events, of which a fleet records millions)."""
        lines = cast(list[dict[str, Any]], list(events)) if take else [self._event_line(e) for e in events]
        if not lines:
            return lines
        with self._lock:
            self._check_open()
            sink, last = self._events, self._last_time
            write = sink.write
            for line in lines:
                write(line)
                t = line["time"]
                if t > last:
                    last = t
            self._last_time = last
            self._counts[self._events_file] += len(lines)
            self._flush(sink, len(lines))
        return lines

    def _event_line(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """`event` checked, as the line written: time, observer and kind first, then the rest in order."""
        if type(event) is not dict:  # (a plain dict is one: no ABC check on a fleet's millions)
            _checks.instance("event", event, Mapping, "a mapping")
        if not event.get("observer") or not event.get("kind"):
            raise ValueError(f"event needs 'observer' and 'kind', got keys {sorted(event)}")
        line: dict[str, Any] = {"time": None, "observer": None, "kind": None}  # these first, the rest in order
        line.update(event)
        line["time"] = self._time(event.get("time"))
        node_id = line.get("node_id")
        if node_id is not None and type(node_id) is not str:
            line["node_id"] = str(node_id)
        return line

    # -- the sync server's trace ------------------------------------------------------------
    def trace(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record of the merge's evidence ({"time", "kind", ...}) to trace.jsonl."""
        if not isinstance(record, Mapping) or not record.get("kind"):
            raise ValueError(f"trace record needs a 'kind', got {record!r}")
        line = {"time": self._time(record.get("time")), **{k: v for k, v in record.items() if k != "time"}}
        with self._lock:
            self._check_open()
            if self._trace is None:
                self._trace = _JsonlSink(self.path / TRACE_FILE)
            self._trace.write(line)
            self._flush(self._trace)
            self._counts[TRACE_FILE] += 1
        return line

    def _flush(self, sink: Any, written: int = 1) -> None:
        """Flush after every line (the default: a killed run loses nothing), or every
        `flush_every` records for bulk recordings such as a fleet's (a kill loses the last ones);
        `written`: records just written to `sink` together (`events`), flushed together."""
        self._unflushed += written
        if self._unflushed >= self._flush_every:
            sink.flush()
            if self._flush_every > 1:
                for other in (self._history, self._events, self._trace):
                    if other is not None and other is not sink:
                        other.flush()
            self._unflushed = 0

    def flush(self) -> None:
        """Write everything recorded so far (a columnar recording's pending records become a batch)."""
        with self._lock:
            self._check_open()
            for sink in (self._history, self._events, self._trace):
                if sink is not None:
                    sink.flush()
            self._unflushed = 0

    def _close_logs(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sink in (self._history, self._events, self._trace):
            if sink is not None:
                sink.close()

    # -- lifecycle ---------------------------------------------------------------------
    def finish(self, extra_meta: Mapping[str, Any] | None = None) -> Path:
        """Close the logs and rewrite meta.json atomically with finished=True (and duration_s), and
        how many records each log holds (`records`), so a reader can tell a file cut short."""
        with self._lock:
            try:
                self._close_logs()
            except BaseException:
                self._run_lock.release()
                raise
            self.meta.setdefault("duration_s", self._last_time)
            extra = redact(dict(extra_meta or {}))
            self.meta.update(extra)
            self.meta["finished"] = extra.get("finished", True) is not False  # a stopped run says so
            self.meta["records"] = dict(self._counts)
            try:
                _write_json_atomic(self.path / META_FILE, self.meta)
            finally:
                self._run_lock.release()
        return self.path

    def close(self) -> None:
        """Close the logs without marking the run finished (what a crash leaves, minus the crash)."""
        with self._lock:
            try:
                self._close_logs()
            finally:
                self._run_lock.release()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"recorder for {self.path} is already finished")

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # An exception leaves finished=False in meta.json: the run is partial, and says so.
        if exc_type is None:
            if not self._closed:
                self.finish()
        else:
            self.close()


class MemoryRecorder:
    """A recorder that keeps ops, events and trace in lists: sweeps and fleet partitions need no
    run directory. Same interface as `RunRecorder`; `load()` returns the run in memory."""

    def __init__(self, path: Any = None, meta: Mapping[str, Any] | None = None) -> None:
        self.path = path
        self.meta: dict[str, Any] = {"kind": "run", **dict(meta or {})}
        self.ops: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.trace_records: list[dict[str, Any]] = []

    def __enter__(self) -> MemoryRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def op(self, process: int | str, type: str, f: str, value: Any = None, time: float = 0.0) -> dict[str, Any]:
        line = {"index": len(self.ops), "time": time, "process": process, "type": type, "f": f, "value": value}
        self.ops.append(line)
        return line

    def event(self, event: Mapping[str, Any], *, take: bool = False) -> dict[str, Any]:
        line = cast(dict[str, Any], event) if take else dict(event)
        self.events.append(line)
        return line

    def event_all(self, events: Sequence[Mapping[str, Any]], *, take: bool = False) -> list[dict[str, Any]]:
        lines = [cast(dict[str, Any], e) if take else dict(e) for e in events]
        self.events.extend(lines)
        return lines

    def trace(self, record: Mapping[str, Any]) -> dict[str, Any]:
        line = dict(record)
        self.trace_records.append(line)
        return line

    def finish(self, extra_meta: Mapping[str, Any] | None = None) -> None:
        extra = dict(extra_meta or {})
        self.meta.update(extra)
        self.meta["finished"] = extra.get("finished", True) is not False

    def load(self) -> Run:
        """The recorded run, in memory, typed as `load_run` types a run directory."""
        return Run.from_records(self.meta, self.ops, self.events, self.trace_records, path=self.path)


# ---------------------------------------------------------------------------------------
# Loading


class _Log:
    """One log of a run (history or events) as loaded: its DataFrame and the columns the analysis
    reads (`_columns`), each built on first use from what was read."""

    kind: str  # "history" | "events"

    def frame(self) -> pd.DataFrame:
        raise NotImplementedError

    def _arrays(self) -> Any:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def arrays(self) -> Any:
        found = self.__dict__.get("_cached")
        if found is None:
            found = self.__dict__["_cached"] = self._arrays()
        return found

    def _from_frame(self) -> Any:
        """The columns, from the DataFrame."""
        return _frame_columns(self.kind, self.frame())


def _frame_columns(kind: str, frame: pd.DataFrame) -> Any:
    """The analysis's columns (`_columns.HistoryArrays` / `EventArrays`) of a log's DataFrame."""
    return _columns.history_from_frame(frame) if kind == "history" else _columns.events_from_frame(frame)


class _FrameLog(_Log):
    """A DataFrame: given (a user's), or read by the pyarrow JSON reader."""

    def __init__(self, kind: str, frame: pd.DataFrame) -> None:
        self.kind, self._frame = kind, frame

    def frame(self) -> pd.DataFrame:
        return self._frame

    def __len__(self) -> int:
        return len(self._frame)

    def _arrays(self) -> Any:
        return self._from_frame()


class _RecordLog(_Log):
    """Records read from JSON lines (or a sweep's lists), in chunks; typed only when asked."""

    def __init__(self, kind: str, chunks: list[list[dict[str, Any]]]) -> None:
        self.kind, self.chunks = kind, chunks

    def __len__(self) -> int:
        return sum(map(len, self.chunks))

    def frame(self) -> pd.DataFrame:
        if self.kind == "history":
            return _history_frame([r for chunk in self.chunks for r in chunk])
        return _events_frame(self.chunks)

    def _arrays(self) -> Any:
        records = [r for chunk in self.chunks for r in chunk]
        read = _columns.history_from_records if self.kind == "history" else _columns.events_from_records
        found = read(records)
        return found if found is not None else self._from_frame()


class _LogFrame:
    """A `Run`'s DataFrame of one log (the attribute's name: history or events), built on first use;
    a DataFrame set in its place is the run's log from then on (the analysis reads it)."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, run: None, owner: type | None = None) -> _LogFrame: ...

    @overload
    def __get__(self, run: Run, owner: type | None = None) -> pd.DataFrame: ...

    def __get__(self, run: Run | None, owner: type | None = None) -> _LogFrame | pd.DataFrame:
        return self if run is None else run._frame(self.name)

    def __set__(self, run: Run, frame: pd.DataFrame) -> None:
        run._set_frame(self.name, frame)


class Run:
    """A loaded run directory: meta, typed `history` and `events` DataFrames, warnings, trace.

    The DataFrames are built on first use: the analysis reads plain columns (`_columns`), so a
    run judged in a fresh process never imports pandas. Once a DataFrame has been handed out,
    the analysis reads that DataFrame (it may have been changed)."""

    def __init__(self, path: str | os.PathLike[str] | None, meta: dict[str, Any],
                 history: pd.DataFrame | None = None, events: pd.DataFrame | None = None,
                 warnings: tuple[str, ...] = (), trace: list[dict[str, Any]] | None = None,
                 incomplete: tuple[str, ...] = (), *, logs: tuple[_Log, _Log] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.meta = meta
        self.warnings = tuple(warnings)
        self.trace: list[dict[str, Any]] = list(trace) if trace is not None else []
        """The sync server's trace (trace.jsonl): integrated changesets and what the merge discarded
        or rewrote, with rule names. Empty where the backend cannot see the server."""
        self.incomplete = tuple(incomplete)
        """Why the evidence is not whole (a file cut short, meta.json missing or invalid): a verdict
        from it would be a guess, so the checker calls such a run inconclusive and says why."""
        history_log, events_log = logs or (_RecordLog("history", []), _RecordLog("events", []))
        self._logs: dict[str, _Log] = {"history": history_log, "events": events_log}
        self._frames: dict[str, pd.DataFrame] = {}
        if history is not None:
            self.history = history
        if events is not None:
            self.events = events

    def __repr__(self) -> str:
        return f"Run(path={str(self.path)!r}, finished={self.finished}, warnings={len(self.warnings)})"

    @property
    def kind(self) -> str:
        """What the directory holds (meta.json "kind"): "run", "fleet" or "replay"."""
        kind = self.meta.get("kind", "run")
        return kind if kind in RUN_KINDS else "run"

    @classmethod
    def from_records(cls, meta: Mapping[str, Any], ops: list[dict[str, Any]], events: list[dict[str, Any]],
                     trace: list[dict[str, Any]] | None = None, path: str | os.PathLike[str] | None = None) -> Run:
        """A run kept in memory (a sweep's), typed exactly as `load_run` types a run directory."""
        events = [{**e, "node_id": str(e["node_id"])} if e.get("node_id") is not None else e for e in events]
        return cls(path=path, meta=dict(meta), trace=list(trace or []),
                   logs=(_RecordLog("history", [ops]), _RecordLog("events", [events] if events else [])))

    # -- the DataFrames, built on first use --------------------------------------------------
    def _frame(self, name: str) -> pd.DataFrame:
        frame = self._frames.get(name)
        if frame is None:
            frame = self._frames[name] = self._logs[name].frame()
        return frame

    def _set_frame(self, name: str, frame: pd.DataFrame) -> None:
        """A DataFrame given for a log: the run's log from now on."""
        self._logs[name] = _FrameLog(name, frame)
        self._frames[name] = frame

    history = _LogFrame("The ops, one row each: index, time, process, type, f, value, node_id.")
    events = _LogFrame("The observations, one row each: time, observer, kind, node_id, the counts, extra keys.")

    def _columns(self, name: str) -> Any:
        """The columns the analysis reads (`_columns.HistoryArrays` / `EventArrays`)."""
        frame = self._frames.get(name)
        if frame is not None:  # handed out, perhaps changed since: the DataFrame is the run now
            return _frame_columns(name, frame)
        return self._logs[name].arrays()

    def _latest(self, name: str) -> float | None:
        """The log's last time (pandas' max: NaN skipped), or None when the log is empty."""
        frame = self._frames.get(name)
        if frame is not None:
            return float(frame["time"].max()) if len(frame) else None
        times = self._logs[name].arrays().time
        return _columns.nan_max(times) if len(times) else None

    @property
    def finished(self) -> bool:
        return bool(self.meta.get("finished", False))

    @property
    def end_s(self) -> float:
        """Run end in seconds: the last recorded time, or meta duration_s if later."""
        times = [0.0]
        for name in ("history", "events"):
            latest = self._latest(name)
            if latest is not None:
                times.append(latest)
        duration = self.meta.get("duration_s")
        if isinstance(duration, (int, float)) and not isinstance(duration, bool) and math.isfinite(duration):
            times.append(float(duration))
        return max(times)


def _first_bad_line(path: Path, lines: list[str], first_lineno: int) -> tuple[int, str] | None:
    """Slow path, only after a block failed to parse: which line is bad, and why."""
    for offset, text in enumerate(lines):
        if not text.strip():
            continue
        try:
            rec = json.loads(text)
        except ValueError as err:
            return first_lineno + offset, str(err).splitlines()[0]
        if not isinstance(rec, dict):
            return first_lineno + offset, f"expected an object, got {type(rec).__name__}"
    return None


def _read_jsonl(path: Path) -> tuple[Iterable[list[dict[str, Any]]], list[str]]:
    """Yield parsed records in blocks; tolerate a garbled last line, reject one in the middle.

    Blocks are parsed with one json.loads call each (the per-line loop only runs to
    locate a bad line), which is what keeps a million events loadable in seconds.
    """
    warnings: list[str] = []

    def parse(lines: list[str], first_lineno: int, at_eof: bool) -> list[dict[str, Any]]:
        body = [text for text in lines if text.strip()]
        try:
            records = json.loads("[" + ",".join(body) + "]")
            if set(map(type, records)) <= {dict}:
                return records
        except ValueError:
            pass
        bad = _first_bad_line(path, lines, first_lineno)
        if bad is None:  # pragma: no cover - the fast path only fails on a bad line
            raise ValueError(f"{path.name}: could not parse lines {first_lineno}..{first_lineno + len(lines) - 1}")
        last_lineno = max((first_lineno + i for i, t in enumerate(lines) if t.strip()), default=-1)
        if not (at_eof and bad[0] == last_lineno):
            raise ValueError(f"{path.name}: line {bad[0]} is not valid JSON ({bad[1]})")
        warnings.append(f"{path.name}: dropped an incomplete last line ({bad[0]})")
        keep = [t for i, t in enumerate(lines) if t.strip() and first_lineno + i != bad[0]]
        return json.loads("[" + ",".join(keep) + "]")

    def chunks() -> Iterable[list[dict[str, Any]]]:
        if not path.exists():
            return
        with open(path, encoding="utf-8", errors="replace") as fh:
            lineno = 1
            held: list[str] = []  # the newest line waits for EOF: only the true last line may be partial
            while True:
                lines = fh.readlines(_CHUNK_BYTES)
                at_eof = not lines
                block = held + lines
                if not at_eof:  # hold the last non-blank line back, with the blank lines after it
                    cut = len(block)
                    while cut and not block[cut - 1].strip():
                        cut -= 1
                    cut = max(cut - 1, 0)
                    block, held = block[:cut], block[cut:]
                if block:
                    records = parse(block, lineno, at_eof)
                    lineno += len(block)
                    if records:
                        yield records
                if at_eof:
                    break

    return chunks(), warnings


def _as_category(values: pd.Series, known: tuple[str, ...]) -> pd.Series:
    import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

    extra = sorted(set(values.dropna().astype(str).unique()) - set(known))
    return values.astype(pd.CategoricalDtype(list(known) + extra))


def _load_history(path: Path) -> tuple[_Log, list[str]]:
    chunks, warnings = _read_jsonl(path)
    return _RecordLog("history", list(chunks)), warnings  # history is small: one op per write


_HISTORY_KEYS = ("index", "time", "process", "type", "f", "value")


def _history_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

    return _typed_history(pd.DataFrame.from_records(records, columns=list(_HISTORY_KEYS)))


def _history_frame_of_columns(columns: dict[str, list[Any]]) -> pd.DataFrame:
    """`_history_frame` of records given as columns (each key's value in every record, all six keys
    in each: a columnar log's), without making a dict a record."""
    import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

    return _typed_history(pd.DataFrame({key: columns[key] for key in _HISTORY_KEYS}, columns=list(_HISTORY_KEYS)))


def _typed_history(df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

    for col in ("process", "value"):
        df[col] = df[col].astype(object)
    df["index"] = pd.to_numeric(df["index"], errors="coerce").astype("Int64")
    df["time"] = pd.to_numeric(df["time"], errors="coerce").astype("float64")
    df["type"] = _as_category(df["type"], OP_TYPES)
    df["f"] = df["f"].astype("category")
    is_add = (df["f"] == "add").to_numpy(dtype=bool, na_value=False)
    node_id = pd.Series(pd.NA, index=df.index, dtype="str")
    if is_add.any():
        node_id[is_add] = [None if v is None else str(v) for v in df["value"][is_add]]
    df["node_id"] = node_id
    return df


def _floats(values: list[Any]) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)  # None -> nan
    except (TypeError, ValueError):
        import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)


class _Factorizer:
    """Global codes for a string column built chunk by chunk (keeps 1M events compact)."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.parts: list[np.ndarray] = []

    def add(self, values: list[Any]) -> None:
        import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        local, uniques = pd.factorize(arr, use_na_sentinel=True)
        lookup = np.empty(len(uniques) + 1, dtype=np.int32)
        lookup[-1] = -1  # NA sentinel -1 indexes the last slot
        for i, u in enumerate(uniques):
            lookup[i] = self.codes.setdefault(str(u), len(self.codes))
        self.parts.append(lookup[local])

    def categorical(self, known: tuple[str, ...] = ()) -> pd.Categorical:
        codes = np.concatenate(self.parts) if self.parts else np.empty(0, dtype=np.int32)
        return _categorical(codes, list(self.codes), known)


def _categorical(codes: np.ndarray, names: list[str], known: tuple[str, ...]) -> pd.Categorical:
    """Codes into `names` (-1: null) as a Categorical whose categories are `known`, then the other
    names sorted (the order the kit's columns always have)."""
    import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

    order = list(known) + sorted(set(names) - set(known))
    position = {n: i for i, n in enumerate(order)}
    remap = np.array([position[n] for n in names] + [-1], dtype=np.int32)
    return pd.Categorical.from_codes(remap[codes], categories=pd.Index(order, dtype=object))


def _load_events(path: Path) -> tuple[_Log, list[str]]:
    """Small files as records (typed on first use; neither pandas nor pyarrow imported for them),
    large ones through pyarrow's JSON reader when it reads them exactly, else the Python path."""
    try:
        small = path.stat().st_size < _ARROW_MIN_BYTES
    except OSError:
        small = True
    if _USE_ARROW and not small:
        loaded = _load_events_arrow(path)
        if loaded is not None:
            return _FrameLog("events", loaded[0]), loaded[1]
    chunks, warnings = _read_jsonl(path)
    chunks = list(chunks)
    if small:
        return _RecordLog("events", chunks), warnings
    return _FrameLog("events", _events_frame(chunks)), warnings


# -- events.jsonl through pyarrow ----------------------------------------------------------
#
# `pyarrow.json.read_json` parses a million events several times faster than json.loads and
# the frame building above. It must give exactly the frame the pure-Python path gives, so it
# is used only where it provably does; anything else (no pyarrow, a bad line that is not the
# last, a line pyarrow reads differently, an extra key whose values pyarrow would change)
# goes to the pure-Python path, which stays the reference and says what is wrong.

_USE_ARROW = True
"""False: always the pure-Python path (the tests compare the two; not public API)."""
_ARROW_MIN_BYTES = 4 << 20
"""Smaller events files are read as records by the Python path: pyarrow's import alone (~0.1 s)
costs more than reading them (the tests set 0 to compare the two paths on small files)."""

_ARROW_BLOCK_BYTES = 16 << 20  # larger blocks parse faster; pyarrow still spreads blocks over the cores
_ARROW_ONE_BLOCK_MAX = (1 << 31) - 2  # a block size is an int32
_SCAN_BYTES = 1 << 16
# Lines pyarrow reads but the Python path does not read the same way: two objects on one line
# (`{..} {..}`: pyarrow makes two rows, json.loads refuses), and a carriage return (the Python
# path reads text with universal newlines, so its lines and line numbers would differ). Two
# patterns, not one alternation: each alone is a fast scan.
_ARROW_UNSAFE = (re.compile(rb"\r"), re.compile(rb"\}[ \t]*\{"))
_arrow_modules: Any = None  # (pyarrow, pyarrow.json, pyarrow.compute), or False without pyarrow


def _pyarrow() -> Any:
    """(pyarrow, pyarrow.json, pyarrow.compute) where pyarrow reads events.jsonl as the Python path
    does, else False. Imported on first use: pyarrow is optional and its import takes ~0.1 s."""
    global _arrow_modules
    if _arrow_modules is None:
        try:
            import pyarrow  # noqa: PLC0415 - optional pyarrow: see the docstring
            import pyarrow.compute  # noqa: PLC0415 - optional pyarrow: see the docstring
            import pyarrow.json  # noqa: PLC0415 - optional pyarrow: see the docstring
        except ImportError:
            _arrow_modules = False
        else:
            import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

            # node_id's "str" dtype must be pyarrow's own strings (pandas >= 3), which the column
            # then shares as it is; elsewhere the Python path builds it
            dtype = pd.array([], dtype="str").dtype
            arrow_str = isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"
            _arrow_modules = (pyarrow, pyarrow.json, pyarrow.compute) if arrow_str else False
    return _arrow_modules


def _rfind_newline(view: memoryview, stop: int) -> int:
    """Offset of the last newline before `stop`, or -1 (reads backwards, a window at a time)."""
    while stop > 0:
        lo = max(0, stop - _SCAN_BYTES)
        found = bytes(view[lo:stop]).rfind(b"\n")
        if found >= 0:
            return lo + found
        stop = lo
    return -1


def _find_newline(view: memoryview, start: int) -> int:
    """Offset of the first newline at or after `start`, or len(view)."""
    while start < len(view):
        hi = min(len(view), start + _SCAN_BYTES)
        found = bytes(view[start:hi]).find(b"\n")
        if found >= 0:
            return start + found
        start = hi
    return len(view)


def _last_line(view: memoryview) -> tuple[int, int] | None:
    """(start, stop) offsets of the last line that is not blank (as str.strip() judges), or None."""
    end = len(view)
    while end > 0:
        stop = end - 1 if view[end - 1] == 0x0A else end
        start = _rfind_newline(view, stop) + 1
        if bytes(view[start:stop]).decode("utf-8", errors="replace").strip():
            return start, stop
        end = start
    return None


def _load_events_arrow(path: Path) -> tuple[pd.DataFrame, list[str]] | None:
    """events.jsonl read by pyarrow, or None when the pure-Python path must read it."""
    arrow = _pyarrow()
    if not arrow:
        return None
    pa = arrow[0]
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return None  # nothing to read: the Python path is instant
        mapped = pa.memory_map(str(path))
    except (OSError, pa.ArrowException):
        return None
    try:
        return _arrow_events(path, mapped.read_buffer(), *arrow)
    finally:
        mapped.close()


def _arrow_events(path: Path, buf: Any, pa: Any, pj: Any, pc: Any) -> tuple[pd.DataFrame, list[str]] | None:
    """The events DataFrame pyarrow reads from `buf` (events.jsonl, memory-mapped), and the
    warnings; None wherever it might not be exactly the Python path's."""
    view = memoryview(buf)
    if any(pattern.search(view) for pattern in _ARROW_UNSAFE):
        return None
    judged = _arrow_readable_end(path, view)
    if judged is None:
        return None
    end, warnings = judged
    table = _read_events_table(buf, end, pa, pj)
    if table is None or not _counts_exact(table, pc):
        return None
    extra = _exact_extra_keys(table, view[:end], pa)
    if extra is None:
        return None
    return _table_frame(table, extra, pa, pc), warnings


def _arrow_readable_end(path: Path, view: memoryview) -> tuple[int, list[str]] | None:
    """Where pyarrow should stop reading, and the warnings; None for the Python path.

    Only the last line may be cut short (a killed writer). It is judged as the Python path
    judges it: its block is that line alone, parsed as "[" + line + "]"."""
    last = _last_line(view)
    if last is None:
        return None  # blank lines only
    start, stop = last
    try:
        records = json.loads("[" + bytes(view[start:stop]).decode("utf-8", errors="replace") + "]")
    except ValueError:
        records = None
    if records is None or not all(isinstance(r, dict) for r in records):
        if _last_line(view[:start]) is None:
            return None  # nothing before it: the Python path is instant
        lineno = bytes(view[:start]).count(b"\n") + 1
        return start, [f"{path.name}: dropped an incomplete last line ({lineno})"]
    if len(records) != 1:
        return None  # `{..},{..}`: json.loads reads two records, pyarrow none
    return len(view), []


def _events_schema(pa: Any) -> Any:
    """The kit's own keys of an event, typed: nothing inferred."""
    return pa.schema([("time", pa.float64()), ("observer", pa.string()), ("kind", pa.string()),
                      ("node_id", pa.string()), *((col, pa.int64()) for col in _INT_EVENT_COLUMNS)])


def _read_events_table(buf: Any, end: int, pa: Any, pj: Any) -> Any:
    """The first `end` bytes of `buf` as an Arrow table, or None where pyarrow finds a bad line or a
    value of another type than the schema's (the Python path decides)."""
    schema = _events_schema(pa)

    def read(unexpected: str, block_size: int) -> Any:
        return pj.read_json(pa.BufferReader(buf.slice(0, end)), read_options=pj.ReadOptions(block_size=block_size),
                            parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior=unexpected))

    try:
        try:  # the kit's own keys, typed by the schema: nothing inferred
            table = read("error", _ARROW_BLOCK_BYTES)
        except pa.ArrowInvalid as err:
            if "unexpected field" not in str(err) or end >= _ARROW_ONE_BLOCK_MAX:
                raise
            # Extra keys: pyarrow infers their types, safely only within one block (pyarrow 26
            # crashes the process when an inferred column changes type from one block to the next,
            # e.g. a number, then a boolean; in one block that is an error).
            table = read("infer", end + 1)
        table.validate(full=True)  # pyarrow keeps invalid UTF-8 in a string; the Python path replaces it
    except pa.ArrowException:
        return None
    return table


def _counts_exact(table: Any, pc: Any) -> bool:
    """Whether every count is within 2**53: beyond, the Python path goes through float64 (and rounds)."""
    for col in _INT_EVENT_COLUMNS:
        bounds = pc.min_max(table.column(col)).as_py()
        if bounds["min"] is not None and max(-bounds["min"], bounds["max"]) > 1 << 53:
            return False
    return True


def _exact_extra_keys(table: Any, view: memoryview, pa: Any) -> list[str] | None:
    """The table's keys beyond the kit's, in the Python path's order, or None where pyarrow's
    values could differ from json.loads's.

    Extra keys are kept as json.loads gives them. pyarrow gives the same values only for strings,
    int64, booleans and nulls (not for a double that mixes 1 and 1.5, an ISO date it makes a
    timestamp, or an object it merges into a struct)."""
    extra = table.column_names[len(_events_schema(pa)):]
    if not extra:
        return []
    exact = (pa.types.is_string, pa.types.is_int64, pa.types.is_boolean, pa.types.is_null)
    if not all(any(ok(table.schema.field(col).type) for ok in exact) for col in extra):
        return None
    return _first_appearance(view, extra)


def _table_frame(table: Any, extra: list[str], pa: Any, pc: Any) -> pd.DataFrame:
    """The events DataFrame of a table pyarrow read, dtype for dtype the Python path's."""
    import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

    events = pd.DataFrame({
        "time": table.column("time").to_numpy().astype(np.float64, copy=False),  # null -> NaN
        "observer": _table_category(table.column("observer"), OBSERVERS, pa, pc),
        "kind": _table_category(table.column("kind"), EVENT_KINDS, pa, pc),
        "node_id": pd.array(table.column("node_id"), dtype="str"),
    })
    for col in _INT_EVENT_COLUMNS:
        values = table.column(col)
        events[col] = pd.arrays.IntegerArray(pc.fill_null(values, 0).to_numpy().astype(np.int64, copy=False),
                                             values.is_null().to_numpy())
    for col in extra:
        events[col] = pd.Series(table.column(col).to_pylist(), dtype=object)
    return events


def _table_category(values: Any, known: tuple[str, ...], pa: Any, pc: Any) -> pd.Categorical:
    """A string column as a Categorical: the `known` names first, then the others sorted."""
    import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

    seen = {v for v in pc.unique(values).to_pylist() if v is not None}
    order = list(known) + sorted(seen - set(known))
    codes = pc.fill_null(pc.index_in(values, value_set=pa.array(order, pa.string())), -1).to_numpy()
    return pd.Categorical.from_codes(codes, categories=pd.Index(order, dtype=object))


def _first_appearance(view: memoryview, keys: list[str]) -> list[str] | None:
    """`keys` in the Python path's order: by the first line holding each, then by place in it.

    pyarrow's nulls do not tell a null value from a missing key (nor is its column order
    documented), so the raw lines decide. In a file without a backslash a key is spelt one way
    and `"key"` is a whole string token; json.loads says whether a line holding it holds the key
    (not a nested one, not a value). None when that does not settle it in a few lines."""
    if re.search(rb"\\", view):
        return None
    first: dict[str, tuple[int, int]] = {}
    for key in keys:
        token = re.compile(re.escape(json.dumps(key, ensure_ascii=False).encode("utf-8")))
        for tries, match in enumerate(token.finditer(view)):
            if tries >= 100:
                return None
            start = _rfind_newline(view, match.start()) + 1
            try:
                record = json.loads(bytes(view[start:_find_newline(view, match.end())]).decode("utf-8"))
            except ValueError:
                return None
            if isinstance(record, dict) and key in record:
                first[key] = (start, list(record).index(key))
                break
        else:
            return None
    return sorted(keys, key=first.__getitem__)


def _events_frame(chunks: Iterable[list[dict[str, Any]]]) -> pd.DataFrame:
    import pandas as pd  # noqa: PLC0415 - lazy pandas: see the note at the top

    cats = {col: _Factorizer() for col in ("observer", "kind", "node_id")}
    frames: list[pd.DataFrame] = []
    extra: dict[str, None] = {}  # keys beyond the kit's own, in order of first appearance
    for records in chunks:
        keys = dict.fromkeys(itertools.chain.from_iterable(records))  # first appearance, not set order
        columns = {k: list(map(dict.get, records, itertools.repeat(k))) for k in keys}
        for col, fac in cats.items():
            fac.add(columns.pop(col, [None] * len(records)))
        df = pd.DataFrame({"time": _floats(columns.pop("time", [None] * len(records)))})
        for col in _INT_EVENT_COLUMNS:
            if col in columns:
                df[col] = pd.to_numeric(pd.Series(columns.pop(col), dtype=object), errors="coerce").astype("Int64")
        for col, values in columns.items():
            extra.setdefault(col)
            df[col] = pd.Series(values, dtype=object)
        frames.append(df)
    for df in frames:  # a key absent from a whole chunk is absent as in any row of a chunk: None, not concat's NaN
        for col in extra:
            if col not in df.columns:
                df[col] = pd.Series([None] * len(df), dtype=object)
    rest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"time": pd.Series(dtype="float64")})
    events = pd.DataFrame({
        "time": rest.pop("time").astype("float64"),
        "observer": cats["observer"].categorical(OBSERVERS),
        "kind": cats["kind"].categorical(EVENT_KINDS),
        # node_id as the plain string dtype (what users filter on); built from categories, so shared strings
        "node_id": pd.Series(cats["node_id"].categorical(), index=rest.index).astype("str"),
    })
    for col in _INT_EVENT_COLUMNS:
        events[col] = (rest.pop(col).astype("Int64") if col in rest.columns
                       else pd.Series(pd.NA, index=events.index, dtype="Int64"))
    for col in extra:  # extra keys a watcher added, kept as they are
        events[col] = rest[col]
    return events


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load a run directory; a truncated last line (a killed writer) is dropped with a warning.

    Reads the columnar logs (history.arrows, events.arrows) when the run has them, else the JSON
    lines; both give the same DataFrames for the same records. A cut last Arrow batch is dropped
    with a warning too.

    Raises ValueError (one line) when the directory is missing or not a run, or a line
    other than the last is not valid JSON.
    """
    p = Path(path)
    if not p.is_dir():
        raise ValueError(f"run directory not found: {p}")
    files = [p / META_FILE, p / HISTORY_FILE, p / EVENTS_FILE]
    if not any((p / name).exists() for name in (META_FILE, *LOG_FILES)):
        raise ValueError(f"not a run directory (no {META_FILE}, {HISTORY_FILE} or {EVENTS_FILE}): {p}")
    warnings: list[str] = []
    meta, problem = _read_meta(files[0])
    incomplete = [problem] if problem else []
    logs: tuple[str, str] = (HISTORY_FILE, EVENTS_FILE)
    if any((p / name).exists() for name in (HISTORY_ARROW, EVENTS_ARROW)):
        # a columnar recording (its JSON lines, if exported too, hold the same records)
        _arrow_log = _arrow_module(f"{p} holds a columnar recording ({HISTORY_ARROW}, {EVENTS_ARROW}): reading it")
        logs = (HISTORY_ARROW, EVENTS_ARROW)
        history, w1 = _arrow_log.load(p / HISTORY_ARROW, "history")
        events, w2 = _arrow_log.load(p / EVENTS_ARROW, "events")
    else:
        history, w1 = _load_history(files[1])
        events, w2 = _load_events(files[2])
    chunks, w3 = _read_jsonl(p / TRACE_FILE)
    trace = [record for chunk in chunks for record in chunk]
    incomplete += _cut_short(meta, {logs[0]: len(history), logs[1]: len(events)}, w1 + w2)
    # the trace explains a loss, it does not count one: a trace cut short is said, and leaves causes unexplained
    trace_cut = _cut_short(meta, {TRACE_FILE: len(trace)}, [])
    warnings += w1 + w2 + w3 + [w for w in incomplete + trace_cut if "is cut short: its last" not in w]
    return Run(path=p, meta=meta, warnings=tuple(warnings), trace=trace, incomplete=tuple(dict.fromkeys(incomplete)),
               logs=(history, events))


def _read_meta(path: Path) -> tuple[dict[str, Any], str | None]:
    """meta.json, or ({}, why it cannot be trusted): missing, unreadable, not JSON (NaN and
    Infinity included: the recorder never writes them), or not an object."""
    if not path.exists():
        return {}, f"{META_FILE} is missing (the run's parameters and whether it finished are unknown)"
    try:
        meta = loads_finite(path.read_text(encoding="utf-8"), META_FILE)
    except (OSError, UnicodeDecodeError) as err:
        return {}, f"{META_FILE} cannot be read ({getattr(err, 'strerror', None) or err})"
    except json.JSONDecodeError as err:
        return {}, f"{META_FILE} is not valid JSON ({str(err).splitlines()[0]})"
    except ValueError as err:  # NaN or Infinity, named
        return {}, str(err)
    if not isinstance(meta, dict):
        return {}, f"{META_FILE} is not a JSON object"
    return meta, None


def _cut_last(warning: str) -> str:
    """A dropped last line (JSON lines) or batch (Arrow), said as incomplete evidence:
    "events.jsonl is cut short: its last line (17) is incomplete"."""
    return re.sub(r"^(\S+): dropped an incomplete last (line|batch) \((.*)\)$",
                  r"\1 is cut short: its last \2 (\3) is incomplete", warning)


def _cut_short(meta: Mapping[str, Any], loaded: Mapping[str, int], warnings: list[str]) -> list[str]:
    """Files holding fewer (or more) records than the run said it wrote, or a cut last line."""
    out = [_cut_last(w) for w in warnings if "dropped an incomplete last" in w]
    written = meta.get("records")
    if not meta.get("finished") or not isinstance(written, Mapping):
        return out
    for name, count in loaded.items():
        expected = written.get(name)
        if isinstance(expected, int) and not isinstance(expected, bool) and count != expected:
            how = "cut short" if count < expected else "holds records of another run"
            out.append(f"{name} {how}: it holds {count:,} of the {expected:,} records the run wrote")
    return out


def _started_at(run_dir: Path) -> float:
    try:
        meta = json.loads((run_dir / META_FILE).read_text(encoding="utf-8"))
        stamp = _dt.datetime.fromisoformat(str(meta["started_at"]).replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=_dt.UTC)
        return stamp.timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        return run_dir.stat().st_mtime


RUNS_ENV = "REPRO_KIT_RUNS"


def project_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The repro_kit checkout holding `start` (default: the current directory), or None.

    Recognised by its pyproject.toml naming repro_kit beside a notebooks/ folder, so a
    notebook (run from notebooks/) and the CLI (run from the top) find the same runs/."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in [here, *here.parents][:6]:
        pyproject = folder / "pyproject.toml"
        try:
            if (folder / "notebooks").is_dir() and 'name = "repro_kit"' in pyproject.read_text(encoding="utf-8"):
                return folder
        except OSError:
            continue
    return None


def runs_root() -> Path:
    """Where runs are recorded by default, for the CLI, the control panel and the notebooks alike,
    whatever the current directory: $REPRO_KIT_RUNS if set; else, when repro_kit is imported
    from a checkout (an editable install, `make`), that checkout's runs/ (JupyterLab started by
    `make lab` lists it); else ~/repro-kit-runs (`repro-kit notebooks` links it beside the
    notebooks it copies, so JupyterLab lists it there too)."""
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV]).expanduser()
    checkout = project_root(Path(__file__).resolve().parent)  # the package's checkout, never the cwd's
    return checkout / "runs" if checkout is not None else Path.home() / "repro-kit-runs"


def _runs_under(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [d for d in root.iterdir() if d.is_dir() and any((d / name).exists() for name in (META_FILE, *LOG_FILES))]
    if (root / META_FILE).exists() or (root / EVENTS_FILE).exists():
        found.append(root)
    return found


def latest_run(root_dir: str | os.PathLike[str] | None = None) -> Path:
    """The newest run directory under `root_dir` (by meta started_at, else mtime).

    Without `root_dir`: the newest of the default runs root (`runs_root()`) and, in a
    checkout, `reports/` (where `make demo` writes): runs made by the CLI, the panel and
    the notebooks all count."""
    if root_dir is None:
        roots = [runs_root()]
        checkout = project_root()
        if checkout is not None:
            roots.append(checkout / "reports")
        candidates = [d for r in roots for d in _runs_under(r)]
        if not candidates:
            raise ValueError(f"no run directories under {' or '.join(str(r) for r in roots)}")
    else:
        root = Path(root_dir)
        if not root.is_dir():
            raise ValueError(f"root_dir not found: {root}")
        candidates = _runs_under(root)
        if not candidates:
            raise ValueError(f"root_dir holds no run directories: {root}")
    return max(candidates, key=lambda d: (_started_at(d), d.name))
