"""Columnar run logs: history and events as Arrow IPC record batches (`RunRecorder(format="arrow")`).

Why: a million JSON lines took ~1.3 s to load (pyarrow's JSON reader and pure-Python history
reading, issue 21); the same records as Arrow batches load in tens of milliseconds, memory-mapped.

Layout: `history.arrows` and `events.arrows`, each a sequence of Arrow IPC streams (schema,
one record batch, end-of-stream), one per flush, appended with one write each: a killed
writer leaves every flushed batch, and a cut last one (a full disk) is dropped with a warning.
Each batch has its own schema, so a key first seen late (a fleet's `user`) needs nothing
special. Values keep what JSON lines would give back:

- a key's values of one plain type (str, int, float, bool) are one Arrow column of that type;
  the kit's own keys have fixed types (`time` float64; strings dictionary-encoded per batch);
- any other value (a dict, a list, an int beyond int64, a value of another type than the
  column's) is stored as its JSON text in a companion column (the same name, field metadata
  `repro_kit: json`), as are None values of extra keys (so a key given as null stays a key).

`ArrowLog` reads them back: the analysis's columns (`_columns`) straight from the arrays, and
DataFrames equal, dtype for dtype, to what `load_run` makes of the same records as JSON lines
(where a kit column holds anything unusual, those DataFrames are built by the JSON lines' own
code from the records, so they are equal by construction).
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from repro_kit import _columns
from repro_kit.recording import (
    _HISTORY_KEYS,
    ARROW_BATCH_ROWS,
    EVENT_KINDS,
    EVENTS_ARROW,
    EVENTS_FILE,
    HISTORY_ARROW,
    HISTORY_FILE,
    OBSERVERS,
    _categorical,
    _dumps,
    _events_frame,
    _history_frame,
    _history_frame_of_columns,
    _Log,
    _pyarrow,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["HISTORY_ARROW", "EVENTS_ARROW", "ARROW_BATCH_ROWS", "LogWriter", "encode_columns", "ArrowLog", "read_log",
           "load", "export_jsonl"]

_JSON = {b"repro_kit": b"json"}
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_EXACT = 1 << 53  # kit counts beyond this go through float64 in the JSON lines' reader: stored as JSON
_KIT = {
    "events": {"time": float, "observer": str, "kind": str, "node_id": str,
               "root_children": int, "nodes_total": int, "batch": int},
    "history": {"index": int, "time": float, "process": int, "type": str, "f": str, "value": str},
}
_CODED = {"observer", "kind", "node_id", "type", "f"}  # kit strings stored dictionary-encoded
_ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


class _Json:
    """A value stored as JSON text, encoded when it was recorded (it may change after)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Absent:
    """The key is not in this record."""


_ABSENT = _Absent()
_NONE, _ABSENT_T, _JSON_T = type(None), _Absent, _Json


def _kept(value: Any) -> Any:
    """What a buffered record holds: plain values as they are, anything else as its JSON text now."""
    t = type(value)
    if value is None or t is str or t is float or t is bool or (t is int and _INT64_MIN <= value <= _INT64_MAX):
        return value
    return _Json(_dumps(value))


# -- writing --------------------------------------------------------------------------------------


def _encode(values: list[Any], kit: type | None) -> tuple[pa.Array, pa.Array | None]:
    """One key's values in a batch: the plain column, and the JSON companion when one is needed."""
    py = kit if kit is not None else _first_plain_type(values)
    arrow_type = _ARROW_TYPES.get(py, pa.null())  # type: ignore[arg-type]
    plain = _plain_column(values, py, kit, arrow_type)
    if plain is not None:
        return plain, None
    split = [_split(v, py, kit is None) for v in values]
    return pa.array([p for p, _ in split], arrow_type), pa.array([c for _, c in split], pa.string())


def _first_plain_type(values: list[Any]) -> type | None:
    """An extra key's column type: that of its first plain value (None when it has none)."""
    return next((type(v) for v in values if type(v) in _ARROW_TYPES), None)


def _plain_column(values: list[Any], py: type | None, kit: type | None, arrow_type: pa.DataType) -> pa.Array | None:
    """The values as one plain column, or None when some need their JSON text: a value of another
    type, or a kit count beyond 2**53. A kit key may be absent or null in a record; an int time is a
    float to the JSON lines' reader too."""
    kinds = set(map(type, values))
    fits = {py} if kit is None else {py, _NONE, _ABSENT_T, *((int,) if py is float else ())}
    if not kinds <= fits:
        return None
    plain = pa.array([None if v is _ABSENT else v for v in values] if _ABSENT_T in kinds else values, arrow_type)
    return plain if int not in kinds or kit is None or _in_exact(plain) else None


def _split(value: Any, py: type | None, extra: bool) -> tuple[Any, str | None]:
    """One value as (plain, JSON text): plain where it fits the column, else its JSON text; neither
    for an absent key or a kit key's null; an extra key's null is the text "null" (kept a key)."""
    t = type(value)
    if value is _ABSENT or (value is None and not extra):
        return None, None
    if value is None:
        return None, "null"
    fits = t is py or (t is int and py is float and not extra)
    if fits and (extra or t is not int or -_EXACT <= value <= _EXACT):
        return value, None
    return None, value.text if t is _JSON_T else _dumps(value)


def _in_exact(arr: pa.Array) -> bool:
    bounds = pc.min_max(arr).as_py()
    return bounds["min"] is None or (bounds["min"] >= -_EXACT and bounds["max"] <= _EXACT)


def encode_batch(rows: list[dict[str, Any]], log: str) -> bytes:
    """One Arrow IPC stream holding `rows` as one record batch."""
    keys = dict.fromkeys(itertools.chain.from_iterable(rows))  # order of first appearance
    return encode_columns({key: [r.get(key, _ABSENT) for r in rows] for key in keys}, log)


def encode_columns(columns: dict[str, list[Any]], log: str) -> bytes:
    """One Arrow IPC stream holding one record batch of `columns` (key -> its value in each record,
    `_ABSENT` where a record lacks it; keys in order of first appearance)."""
    kit = _KIT[log]
    fields: list[pa.Field] = []
    arrays: list[pa.Array] = []
    for key, values in columns.items():
        plain, companion = _encode(values, kit.get(key))
        if key in _CODED and key in kit and pa.types.is_string(plain.type):
            plain = plain.dictionary_encode()
        fields.append(pa.field(key, plain.type))
        arrays.append(plain)
        if companion is not None:
            fields.append(pa.field(key, pa.string(), metadata=_JSON))
            arrays.append(companion)
    batch = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


class LogWriter:
    """Buffers one log's records, as columns (what `encode_batch` would make of them as rows, with no
    dict a record kept: a fleet records millions); `flush` appends them as one batch with one write."""

    def __init__(self, path: Path, log: str) -> None:
        self.path, self.log = path, log
        self._columns: dict[str, list[Any]] = {}
        self._rows = 0
        self._fh = open(path, "ab")  # noqa: SIM115 - the log's file, open until close()

    @property
    def name(self) -> str:
        return self._fh.name

    def write(self, line: dict[str, Any]) -> None:
        columns, n = self._columns, self._rows
        for key, value in line.items():
            column = columns.get(key)
            if column is None:
                column = columns[key] = [_ABSENT] * n
            elif len(column) < n:  # the records since this key's last one lack it
                column.extend([_ABSENT] * (n - len(column)))
            t = type(value)  # `_kept`, its common cases inlined (an int is one when it fits in 64 bits)
            column.append(value if t is str or t is float or value is None or t is bool
                          or (t is int and _INT64_MIN <= value <= _INT64_MAX) else _kept(value))
        self._rows = n + 1

    def flush(self) -> None:
        fh = self._fh  # a local: a failed write is named by the traceback (`_errors`)
        n = self._rows
        if n:
            columns = self._columns
            for column in columns.values():  # a key's column ends at its last record: absent after it
                if len(column) < n:
                    column.extend([_ABSENT] * (n - len(column)))
            data = encode_columns(columns, self.log)
            self._columns, self._rows = {}, 0
            fh.write(data)
        fh.flush()

    def close(self) -> None:
        fh = self._fh
        try:
            self.flush()
        finally:
            fh.close()


# -- reading --------------------------------------------------------------------------------------


def read_log(path: Path) -> tuple[list[pa.RecordBatch], list[str]]:
    """Every whole batch of a log, memory-mapped; a cut tail is dropped with a warning."""
    if not path.is_file():
        return [], []
    size = path.stat().st_size
    if size == 0:
        return [], []
    source = pa.memory_map(str(path))
    batches: list[pa.RecordBatch] = []
    warnings: list[str] = []
    good = 0  # where the last whole batch (or stream) ended
    while source.tell() < size:
        try:
            reader = pa.ipc.open_stream(source)
            for batch in reader:
                batch.validate()
                batches.append(batch)
                good = source.tell()
            good = source.tell()
        except (pa.ArrowException, OSError, ValueError):
            warnings.append(f"{path.name}: dropped an incomplete last batch ({size - good} bytes from byte {good})")
            break
    return batches, warnings


def _columns_of(batch: pa.RecordBatch) -> dict[str, tuple[pa.Array, pa.Array | None]]:
    """name -> (plain column, JSON companion or None), in the batch's order."""
    out: dict[str, tuple[pa.Array, pa.Array | None]] = {}
    for i, field in enumerate(batch.schema):
        if field.metadata == _JSON and field.name in out:
            out[field.name] = (out[field.name][0], batch.column(i))
        else:
            out[field.name] = (batch.column(i), None)
    return out


def _objects(arr: pa.Array | None, n: int) -> np.ndarray:
    """An Arrow array as an object array of the Python values JSON would give (None for null)."""
    if arr is None or pa.types.is_null(arr.type):
        return np.full(n, None, dtype=object)
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr.to_numpy(zero_copy_only=False)
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    filled = pc.fill_null(arr, pa.scalar(False if pa.types.is_boolean(arr.type) else 0, arr.type))
    out = filled.to_numpy(zero_copy_only=False).astype(object)  # Python ints, floats, bools
    out[nulls] = None
    return out


def _patch(values: np.ndarray, companion: pa.Array | None) -> np.ndarray:
    """Put the companion's values (JSON text) where it has them."""
    if companion is not None:
        texts = companion.to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(companion.is_valid().to_numpy(zero_copy_only=False)):
            values[i] = json.loads(texts[i])
    return values


def _numbers(col: pa.ChunkedArray, fill: Any) -> np.ndarray:
    """A numeric column as one numpy array, `fill` where null (zero-copy where there are no nulls)."""
    if not len(col):
        return np.zeros(0, col.type.to_pandas_dtype())
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    values = np.frombuffer(arr.buffers()[1], dtype=col.type.to_pandas_dtype(), count=len(arr) + arr.offset)[arr.offset:]
    if arr.null_count:
        values = np.where(arr.is_valid().to_numpy(zero_copy_only=False), values, fill)
    return values


def _nulls(col: pa.ChunkedArray) -> np.ndarray:
    if not col.null_count:
        return np.zeros(len(col), bool)
    return col.is_null().to_numpy()


def _present(plain: pa.Array | None, companion: pa.Array | None, n: int) -> np.ndarray:
    mask = np.zeros(n, bool) if plain is None else plain.is_valid().to_numpy(zero_copy_only=False)
    if companion is not None:
        mask = mask | companion.is_valid().to_numpy(zero_copy_only=False)
    return mask


class ArrowLog(_Log):
    """One columnar log as read: batches in, the analysis's columns and DataFrames out."""

    def __init__(self, kind: str, batches: list[pa.RecordBatch]) -> None:
        self.kind = kind
        self.batches = batches
        self.layout = [_columns_of(b) for b in batches]
        self.names = list(dict.fromkeys(name for cols in self.layout for name in cols))
        self.rows = sum(b.num_rows for b in batches)

    def __len__(self) -> int:
        return self.rows

    # -- the records, as JSON lines would hold them ------------------------------------------------
    def values(self, name: str) -> np.ndarray:
        """A key's values over all batches (None where absent or null), as an object array."""
        parts = []
        for batch, cols in zip(self.batches, self.layout):
            plain, companion = cols.get(name, (None, None))
            parts.append(_patch(_objects(plain, batch.num_rows), companion))
        return np.concatenate(parts) if parts else np.empty(0, dtype=object)

    def records(self) -> Iterator[dict[str, Any]]:
        """The records, keys in order of first appearance: a key is in a record when it had a
        value there (the kit's own events keys only when not null: a null one reads the same)."""
        for batch, cols in zip(self.batches, self.layout):
            n = batch.num_rows
            names = list(cols)
            values = [_patch(_objects(p, n), c).tolist() for p, c in cols.values()]
            if self.kind == "history":  # every op has all six keys
                present_rows = [[True] * n] * len(names)
            else:
                present_rows = [_present(p, c, n).tolist() for p, c in cols.values()]
            for i in range(n):
                yield {name: values[k][i] for k, name in enumerate(names) if present_rows[k][i]}

    def _unusual(self, names: tuple[str, ...] | None = None) -> bool:
        """A kit column (of `names`) holding a value of another type (a JSON companion), or of an
        unexpected type."""
        kit = _KIT[self.kind]
        for cols in self.layout:
            for name, (plain, companion) in cols.items():
                if name not in kit or (names is not None and name not in names):
                    continue
                if companion is not None:
                    return True
                value_type = plain.type.value_type if pa.types.is_dictionary(plain.type) else plain.type
                if not (pa.types.is_null(value_type) or value_type == _ARROW_TYPES[kit[name]]):
                    return True
        return False

    # -- the analysis's columns --------------------------------------------------------------------
    def _arrays(self) -> Any:
        if self.kind == "history":  # process, type, f and value are read as the values they were
            return self._from_frame() if self._unusual(("time",)) else self._history_arrays()
        return self._from_frame() if self._unusual() else self._event_arrays()

    def _chunked(self, name: str, arrow_type: pa.DataType) -> pa.ChunkedArray:
        """A kit column over all batches, as `arrow_type` (nulls where a batch lacks it)."""
        chunks = []
        for batch, cols in zip(self.batches, self.layout):
            plain = cols.get(name, (None, None))[0]
            if plain is None or pa.types.is_null(plain.type):
                plain = pa.nulls(batch.num_rows, arrow_type)
            elif plain.type != arrow_type:
                plain = plain.cast(arrow_type)
            chunks.append(plain)
        return pa.chunked_array(chunks, type=arrow_type)

    def _codes(self, name: str) -> tuple[np.ndarray, list[str]]:
        """Global codes (-1 null) of a dictionary-encoded string column, and the names."""
        indices, dictionaries, starts, offset = [], [], [], 0
        for batch, cols in zip(self.batches, self.layout):
            plain = cols.get(name, (None, None))[0]
            starts.append(offset)
            if plain is None or pa.types.is_null(plain.type):
                indices.append(pa.nulls(batch.num_rows, pa.int32()))
                continue
            if not pa.types.is_dictionary(plain.type):
                plain = plain.dictionary_encode()
            indices.append(plain.indices.cast(pa.int32()) if plain.indices.type != pa.int32() else plain.indices)
            dictionaries.append(plain.dictionary)
            offset += len(plain.dictionary)
        if not dictionaries:
            return np.full(self.rows, -1, np.int64), []
        # every batch's own dictionary entries, coded once over all of them (the encoder's
        # dictionary grows from chunk to chunk: the last one holds every name)
        entries = pc.dictionary_encode(pa.chunked_array(dictionaries, pa.string()))
        lookup = np.append(pa.chunked_array([c.indices for c in entries.chunks]).to_numpy().astype(np.int64), -1)
        local = _numbers(pa.chunked_array(indices, pa.int32()), -1).astype(np.int64)
        at = local + np.repeat(np.array(starts, np.int64), [b.num_rows for b in self.batches])
        return lookup[np.where(local >= 0, at, -1)], entries.chunks[-1].dictionary.to_pylist()

    def _floats(self, name: str) -> np.ndarray:
        return _numbers(self._chunked(name, pa.float64()), np.nan)

    def _ints(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        col = self._chunked(name, pa.int64())
        return _numbers(col, 0), _nulls(col)

    def _event_arrays(self) -> _columns.EventArrays:
        obs, obs_names = self._codes("observer")
        kind, kind_names = self._codes("kind")
        node, node_names = self._codes("node_id")
        counts = {name: self._ints(name) for name in _columns.COUNT_COLUMNS if name in self.names}
        return _columns.EventArrays(
            time=self._floats("time"), observer=obs, observers=tuple(obs_names), kind=kind, kinds=tuple(kind_names),
            node=node, node_ids=np.array(node_names, dtype=object), counts=counts)

    def _history_arrays(self) -> _columns.HistoryArrays:
        f = self.values("f")
        value = self.values("value")
        is_add = (f == "add") & (value != None)  # noqa: E711 (elementwise)
        node_id = np.full(len(f), None, dtype=object)
        node_id[is_add] = [str(v) for v in value[is_add]]
        return _columns.HistoryArrays(time=self._floats("time"), process=self.values("process"),
                                      type=self.values("type"), f=f, value=value.tolist(), node_id=node_id)

    # -- DataFrames --------------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        if self.kind == "history":  # every op has all six keys: each one's values, typed as the records' are
            if not self.rows:
                return _history_frame([])
            return _history_frame_of_columns({key: self.values(key).tolist() for key in _HISTORY_KEYS})
        if self._unusual():  # the JSON lines' own code
            records = list(self.records())
            return _events_frame([records] if records else [])
        return self._events_frame()

    def _events_frame(self) -> pd.DataFrame:
        """What `_events_frame` makes of the same records, built from the arrays."""
        import pandas as pd  # noqa: PLC0415 - lazy pandas: a verdict needs none (see recording's note)

        if not self.rows:
            return _events_frame([])
        arrays = self.arrays()
        frame = pd.DataFrame({
            "time": arrays.time,
            "observer": _categorical(arrays.observer, list(arrays.observers), OBSERVERS),
            "kind": _categorical(arrays.kind, list(arrays.kinds), EVENT_KINDS),
        })
        ids = self._chunked("node_id", pa.string())
        ids = ids.cast(pa.string()) if len(ids) else ids
        if _pyarrow():  # the "str" dtype is pyarrow's own strings: the column shares them
            frame["node_id"] = pd.array(ids, dtype="str")
        else:  # as the JSON lines' reader builds it
            ids_category = _categorical(arrays.node, list(arrays.node_ids), ())
            frame["node_id"] = pd.Series(ids_category, index=frame.index).astype("str")
        for name in _columns.COUNT_COLUMNS:
            values, missing = arrays.count(name)
            frame[name] = pd.arrays.IntegerArray(values.copy(), missing.copy())
        kit = _KIT["events"]
        for name in self.names:
            if name not in kit:
                frame[name] = pd.Series(self.values(name), index=frame.index, dtype=object)
        return frame


def load(path: Path, log: str) -> tuple[ArrowLog, list[str]]:
    batches, warnings = read_log(path)
    return ArrowLog(log, batches), warnings


def export_jsonl(run_dir: Path) -> list[Path]:
    """Write history.jsonl and events.jsonl from a columnar run's logs (the text for people
    who want text; `load_run` reads either). Returns the files written."""
    written = []
    for arrow_name, text_name, log in ((HISTORY_ARROW, HISTORY_FILE, "history"), (EVENTS_ARROW, EVENTS_FILE, "events")):
        source = run_dir / arrow_name
        if not source.exists():
            continue
        arrow_log, _ = load(source, log)
        target = run_dir / text_name
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")  # `_atomic`'s naming
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                for record in arrow_log.records():
                    fh.write(_dumps(record) + "\n")
            os.replace(tmp, target)
        except OSError as exc:  # named by the file it was to be, not the temporary one
            tmp.unlink(missing_ok=True)
            raise OSError(exc.errno, exc.strerror, str(target)) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written.append(target)
    return written
