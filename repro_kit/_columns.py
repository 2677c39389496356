"""A run's records as plain columns (numpy arrays and lists): what the analysis reads.

Why not the DataFrames: importing pandas (with pyarrow, which pandas 3 imports) takes
~0.3 s of the ~0.5 s a fresh process spent on the report's scenario (`python -X importtime`,
issue 21), while a verdict needs a few numpy arrays. `Run` builds these columns from what it
holds (JSON records, Arrow batches, or DataFrames) and its DataFrames only on first use.

Built from records, columns are only taken where the conversion is the one the DataFrame
path makes (plain values: strings, ints below 2**53, floats, None); anything else returns
None and the caller derives the columns from the DataFrame, the reference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["EventArrays", "HistoryArrays", "COUNT_COLUMNS", "events_from_records", "events_from_frame",
           "history_from_records", "history_from_frame", "nan_max"]

COUNT_COLUMNS = ("root_children", "nodes_total", "batch")
HISTORY_KEYS = ("index", "time", "process", "type", "f", "value")
_EXACT = 1 << 53  # ints up to here are exact through float64 too (the DataFrame path's to_numeric)


@dataclasses.dataclass(frozen=True, eq=False)
class EventArrays:
    """events: one entry per recorded observation, in file order."""

    time: np.ndarray                 # float64, NaN where missing
    observer: np.ndarray             # int64 codes into `observers`, -1 where missing
    observers: tuple[str, ...]
    kind: np.ndarray                 # int64 codes into `kinds`, -1 where missing
    kinds: tuple[str, ...]
    node: np.ndarray                 # int64 codes into `node_ids`, -1 where missing
    node_ids: np.ndarray             # object array of str
    counts: Mapping[str, tuple[np.ndarray, np.ndarray]]  # COUNT_COLUMNS: (int64 values, missing mask)

    def __len__(self) -> int:
        return len(self.time)

    def count(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(values, missing) of a count column; all missing when the run never recorded it."""
        found = self.counts.get(name)
        if found is None:
            return np.zeros(len(self), np.int64), np.ones(len(self), bool)
        return found

    def code_of(self, names: tuple[str, ...], name: str) -> int:
        return names.index(name) if name in names else -2  # -2: matches no row (missing is -1)


@dataclasses.dataclass(frozen=True, eq=False)
class HistoryArrays:
    """history: one entry per op, in file order (small: an op per write)."""

    time: np.ndarray                 # float64, NaN where missing
    process: np.ndarray              # object arrays of the values as read
    type: np.ndarray
    f: np.ndarray
    value: list[Any]
    node_id: np.ndarray              # the added node's id (str) on "add" ops, else None

    def __len__(self) -> int:
        return len(self.time)

    def rows(self, f: str, type: str | None = None) -> np.ndarray:
        """Mask of the ops named `f` (of that type)."""
        mask = self.f == f
        return mask & (self.type == type) if type is not None else mask

    def nemesis_rows(self) -> list[int]:
        """Rows of the nemesis (deploy, halt, resume), in time order (stable)."""
        rows = np.flatnonzero(self.process == "nemesis")
        return rows[np.argsort(self.time[rows], kind="stable")].tolist()


def objects(values: Sequence[Any]) -> np.ndarray:
    """A 1-d object array of `values` as they are (lists stay elements, never a second axis)."""
    return np.fromiter(values, dtype=object, count=len(values))


def nan_max(values: np.ndarray) -> float:
    """pandas' Series.max(): NaN skipped, NaN when nothing is left."""
    return float(np.fmax.reduce(values)) if len(values) else float("nan")  # fmax skips NaN


# -- from records (JSON lines, a sweep's lists) ---------------------------------------------------


def _plain_time(v: Any) -> bool:
    return v is None or type(v) is float or (type(v) is int and -_EXACT <= v <= _EXACT)


def _plain_count(v: Any) -> bool:
    return v is None or (type(v) is int and -_EXACT <= v <= _EXACT)


def _codes(values: Iterable[Any]) -> tuple[np.ndarray, list[Any]]:
    """Codes in order of first appearance (None: -1) and the uniques."""
    table: dict[Any, int] = {}
    codes = [-1 if v is None else table.setdefault(v, len(table)) for v in values]
    return np.array(codes, dtype=np.int64), list(table)


def events_from_records(records: Sequence[Mapping[str, Any]]) -> EventArrays | None:
    """The columns of plain records (what RunRecorder writes), or None for anything else."""
    times = [r.get("time") for r in records]
    observers = [r.get("observer") for r in records]
    kinds = [r.get("kind") for r in records]
    ids = [r.get("node_id") for r in records]
    if not all(map(_plain_time, times)):
        return None
    for col in (observers, kinds, ids):
        if not all(v is None or type(v) is str for v in col):
            return None
    counts = {}
    for name in COUNT_COLUMNS:
        values = [r.get(name) for r in records]
        if not all(map(_plain_count, values)):
            return None
        missing = np.array([v is None for v in values], dtype=bool)
        counts[name] = (np.array([0 if v is None else v for v in values], dtype=np.int64), missing)
    obs_codes, obs_names = _codes(observers)
    kind_codes, kind_names = _codes(kinds)
    node_codes, node_names = _codes(ids)
    return EventArrays(
        time=np.array([np.nan if t is None else t for t in times], dtype=np.float64),
        observer=obs_codes, observers=tuple(obs_names), kind=kind_codes, kinds=tuple(kind_names),
        node=node_codes, node_ids=np.array(node_names, dtype=object), counts=counts)


def history_from_records(records: Sequence[Mapping[str, Any]]) -> HistoryArrays | None:
    """The columns of plain ops (every key present, a plain time), or None for anything else."""
    if not all(len(r) == len(HISTORY_KEYS) and all(k in r for k in HISTORY_KEYS) for r in records):
        return None
    times = [r["time"] for r in records]
    if not all(map(_plain_time, times)):
        return None
    f = [r["f"] for r in records]
    value = [r["value"] for r in records]
    return HistoryArrays(
        time=np.array([np.nan if t is None else t for t in times], dtype=np.float64),
        process=objects([r["process"] for r in records]), type=objects([r["type"] for r in records]),
        f=objects(f), value=value,
        node_id=objects([None if v is None or fn != "add" else str(v) for fn, v in zip(f, value)]))


# -- from DataFrames (the reference; any frame a user built or changed) ---------------------------


def _category_codes(col: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    import pandas as pd  # noqa: PLC0415 - lazy pandas: see the module docstring

    if not isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object).astype("category")
    return col.cat.codes.to_numpy().astype(np.int64), tuple(str(c) for c in col.cat.categories)


def events_from_frame(ev: pd.DataFrame) -> EventArrays:
    import pandas as pd  # noqa: PLC0415 - lazy pandas: see the module docstring

    obs, obs_names = _category_codes(ev["observer"])
    kind, kind_names = _category_codes(ev["kind"])
    node, uniques = pd.factorize(ev["node_id"])  # a missing id: -1
    counts = {}
    for name in COUNT_COLUMNS:
        if name not in ev.columns:
            continue
        values = ev[name]
        missing = values.isna().to_numpy(bool)
        if pd.api.types.is_integer_dtype(values.dtype):  # Int64, as loaded
            ints = values.to_numpy(dtype=np.int64, na_value=0)
        else:  # what int() makes of it, as the DataFrame path did
            ints = np.array([int(v) for v in values.astype(object).where(~missing, 0)], dtype=np.int64)
        counts[name] = (ints, missing)
    return EventArrays(
        time=ev["time"].to_numpy(np.float64), observer=obs, observers=obs_names, kind=kind, kinds=kind_names,
        node=np.asarray(node, dtype=np.int64), node_ids=np.asarray(uniques, dtype=object), counts=counts)


def history_from_frame(h: pd.DataFrame) -> HistoryArrays:
    import pandas as pd  # noqa: PLC0415 - lazy pandas: see the module docstring

    def values(col: str) -> list[Any]:
        return h[col].astype(object).tolist() if col in h.columns else [None] * len(h)

    ids = h["node_id"] if "node_id" in h.columns else pd.Series(pd.NA, index=h.index, dtype=object)
    missing = ids.isna().to_numpy(bool)
    return HistoryArrays(
        time=h["time"].to_numpy(np.float64), process=objects(values("process")), type=objects(values("type")),
        f=objects(values("f")), value=values("value"),
        node_id=objects([None if gone else str(v) for v, gone in zip(ids.astype(object).tolist(), missing)]))
