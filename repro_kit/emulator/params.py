"""Every knob of the emulated pipeline, with its default and where that default comes from."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import math
from typing import Any

__all__ = ["EmulatorParams", "PARAM_SOURCES", "CHOICES", "MODES", "ENCODINGS", "REIMPORTS"]

MODES = ("production", "development")
ENCODINGS = ("replace", "diff")
#: Which documents a production deploy re-inserts: every document of the collection (the
#: App Services docs' wording until 2023-03-02) or only those holding a value for the new
#: field (the wording since 2023-03-02, DOCSP-27364).
REIMPORTS = ("all", "new-values")

#: The model's switchable mechanisms: name -> (allowed values, the first is the default; source).
CHOICES: dict[str, tuple[tuple[str, ...], str]] = {
    "mode": (MODES, "the report: the loss was seen in production mode only (\"yet to see it happen in "
                    "development mode\"); the App Services docs describe the re-import for production"),
    "encoding": (ENCODINGS, "realm-core's object store: List::assign under CreatePolicy::UpdateAll is "
                            "Clear + ArrayInserts (list.hpp); what the server's translator calls is unknown"),
    "reimport": (REIMPORTS, "App Services docs, \"Update Your Data Model\": every document until 2023-03-02; "
                            "only documents with values for the new field since (DOCSP-27364)"),
}


@dataclasses.dataclass(frozen=True)
class EmulatorParams:
    """Timings and sizes of the model. Times in seconds."""

    upload_latency_s: float = 0.05
    """Device -> server upload latency. Source: assumption (a nearby region)."""
    download_latency_s: float = 0.05
    """Server -> device download latency. Source: assumption (symmetric with upload)."""
    latency_jitter: float = 0.2
    """Relative jitter on each latency, drawn from the seed. Source: assumption."""
    translator_lag_s: float = 0.1
    """Sync history -> Atlas (and back) translation lag. Source: assumption (DESIGN: ~100 ms)."""
    resync_delay_s: float = 180.0
    """Deploy -> re-import of the snapshot. Source: the report's video ("about 3 minutes")."""
    resync_batch_size: int = 20
    """Documents per re-import changeset. Source: the report ("batches of around 20")."""
    resync_batch_interval_s: float = 0.5
    """Gap between re-import batches. Source: assumption."""
    clock_skew_ms: int = 0
    """Device clock offset against the server's. Source: assumption (synchronised clocks)."""
    prefill: int = 0
    """Notes already under the root before a run. Source: the report resets to an empty
    collection; its production app had many notes, where batches of ~20 showed."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name}: must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{f.name}: must be a finite number, got {value!r}")
            if f.name != "clock_skew_ms" and value < 0:
                raise ValueError(f"{f.name}: must be >= 0, got {value!r}")
        if self.resync_batch_size < 1 or int(self.resync_batch_size) != self.resync_batch_size:
            raise ValueError(f"resync_batch_size: must be a positive integer, got {self.resync_batch_size!r}")
        if not 0 <= self.latency_jitter < 1:
            raise ValueError(f"latency_jitter: must be in [0, 1), got {self.latency_jitter!r}")
        if int(self.prefill) != self.prefill:
            raise ValueError(f"prefill: must be an integer, got {self.prefill!r}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EmulatorParams:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise ValueError(f"{unknown[0]}: not an emulator parameter (known: {', '.join(sorted(names))})")
        return cls(**kwargs)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _sources() -> dict[str, str]:
    """Parameter -> its one-line source, read from the attribute docstrings above."""
    tree = ast.parse(inspect.getsource(EmulatorParams))
    body = tree.body[0].body  # type: ignore[attr-defined]
    out: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr) \
                and isinstance(nxt.value, ast.Constant):
            out[node.target.id] = " ".join(str(nxt.value.value).split())
    return out


PARAM_SOURCES: dict[str, str] = _sources()
