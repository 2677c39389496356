"""A scenario: every input of one timed write-plus-deploy run, checked and bounded once.

The CLI, `run_test`, the control panel, the menu and `sweep` all build a `Scenario`, so
one set of rules decides what is valid, every message names the input the way its
caller spells it (`--interval` on the command line, `interval_s` in Python), and no
input can make a run unbounded: the limits below cap the simulated duration, the writes
and the events a run records. The schedule is produced lazily, so even the largest
valid run never builds it up front.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterator, Mapping
from typing import Any

from repro_kit import _checks, _schema
from repro_kit._checks import TREES, InputError
from repro_kit._session import Session
from repro_kit.client import connect
from repro_kit.emulator.params import CHOICES, EmulatorParams

__all__ = [
    "Scenario", "ScenarioError", "MAX_WRITES", "MAX_DURATION_S", "MAX_EVENTS", "AUTO",
    "DEFAULT_FIELD", "DEFAULT_BSON_TYPE", "TREES", "WRITE", "DEPLOY", "POLL", "END",
]

#: Most writes one run may make.
MAX_WRITES = 1_000_000
#: Longest simulated run, writes plus settling: 30 days.
MAX_DURATION_S = 30 * 86_400.0
#: Most events a run may be expected to record (about 10 per note, 1 per Atlas poll).
MAX_EVENTS = 10_000_000
#: Events recorded per note (device and Atlas: document, enter, counts, ...), for the bound.
EVENTS_PER_NOTE = 10
#: Largest seed (the emulator's random generator takes any 63-bit one).
MAX_SEED = 2**63 - 1

DEFAULT_FIELD = "tags"
DEFAULT_BSON_TYPE = "array<string>"  # the report's "Array<String>"

#: `deploy_at_s="auto"`: a few seconds in, between two writes (the report's 5.5 s for 20
#: writes 1 s apart), moved earlier when there are fewer writes.
AUTO = "auto"

# Schedule kinds, in the order they happen when due at the same instant.
WRITE, DEPLOY, POLL, END = 0, 1, 2, 3

#: A bad scenario input (the kit's one InputError): `str()` reads "interval_s: must be > 0,
#: got 0"; `named(FLAG_NAMES)` the same with the command line's spelling ("--interval: ...").
ScenarioError = InputError


def _seconds(value: float) -> str:
    return f"{value:,.0f} s" if value >= 10 else f"{value:g} s"


def _schema_check(field: str, check: Any, value: Any) -> None:
    """The Node schema's own check of a deploy input, its message under the input's name."""
    try:
        check(value)
    except ValueError as exc:
        raise InputError(field, str(exc).split(": ", 1)[-1]) from None


@dataclasses.dataclass(frozen=True)
class Scenario:
    """Every input of a run on the emulator. Times in seconds since the run starts.

    Session settings: `mode`, `encoding`, `reimport`, `tree`, `seed`, `realtime` and the
    model's `params`. The run: `writes` appended `interval_s` apart from 0 s, the schema
    change (`field`, `bson_type`) deployed at `deploy_at_s` ("auto": between two early
    writes; None: no deploy), `settle_s` of watching after the last write, Atlas polled
    every `poll_s`. `pause_during_resync`: the app holds writes while translation is halted.
    Raises ScenarioError (the kit's InputError) naming the first bad input.
    """

    mode: str = "production"
    encoding: str = "replace"
    reimport: str = "all"
    tree: str = "children"
    seed: int = 0
    realtime: bool = False
    writes: int = 20
    interval_s: float = 1.0
    deploy_at_s: float | str | None = AUTO
    settle_s: float = 300.0
    poll_s: float = 5.0
    field: str = DEFAULT_FIELD
    bson_type: str = DEFAULT_BSON_TYPE
    pause_during_resync: bool = False
    params: EmulatorParams = dataclasses.field(default_factory=EmulatorParams)

    def __post_init__(self) -> None:
        self._check_session()
        self._check_writes()
        self._check_deploy()
        events = self.estimated_events
        if events > MAX_EVENTS:
            culprit = "poll_s" if self.end_s / self.poll_s > EVENTS_PER_NOTE * self.notes else "writes"
            raise InputError(culprit, f"the run would record about {events:,.0f} events; at most "
                             f"{MAX_EVENTS:,}, got {getattr(self, culprit)!r}")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # a frozen dataclass normalising its own inputs

    def _check_session(self) -> None:
        for name in ("mode", "encoding", "reimport"):
            _checks.choice(name, getattr(self, name), CHOICES[name][0])
        _checks.choice("tree", self.tree, TREES)
        self._set("seed", _checks.integer("seed", self.seed, 0, MAX_SEED))
        _checks.flag("realtime", self.realtime)
        _checks.flag("pause_during_resync", self.pause_during_resync)
        _checks.instance("params", self.params, EmulatorParams, "an EmulatorParams")

    def _check_writes(self) -> None:
        """The writes and the watching after them, bounded to 30 days of simulated time."""
        self._set("writes", _checks.integer("writes", self.writes, 1, MAX_WRITES))
        _checks.number("interval_s", self.interval_s, 0, above=True)
        _checks.number("settle_s", self.settle_s, 0)
        _checks.number("poll_s", self.poll_s, 0, above=True)
        if self.last_write_s > MAX_DURATION_S:
            raise InputError("interval_s", f"{self.writes:,} writes {self.interval_s:g} s apart would span "
                             f"{_seconds(self.last_write_s)}; a run may last at most {_seconds(MAX_DURATION_S)} "
                             "(30 days)")
        if self.end_s > MAX_DURATION_S:
            raise InputError("settle_s", f"the run would last {_seconds(self.end_s)}; at most "
                             f"{_seconds(MAX_DURATION_S)} (30 days), got {self.settle_s!r}")

    def _check_deploy(self) -> None:
        """When to deploy (within the run), and what: the field and its type are checked even
        without a scheduled deploy, as the menu and the panel deploy by hand with them, and a
        name the Node schema already has (children, text, ...) would only fail mid-run."""
        if self.deploy_at_s == AUTO:
            self._set("deploy_at_s", self.auto_deploy_at(self.writes, self.interval_s))
        elif self.deploy_at_s is not None:
            at = _checks.number("deploy_at_s", self.deploy_at_s, 0)
            if at > self.end_s:
                raise InputError("deploy_at_s", f"must fall within the run (0 to {self.end_s:g} s: the last write "
                                 f"at {self.last_write_s:g} s plus {self.settle_s:g} s of settling), "
                                 f"got {self.deploy_at_s!r}")
            self._set("deploy_at_s", at)
        _schema_check("field", _schema.validate_field_name, self.field)
        _schema_check("bson_type", _schema.parse_bson_type, self.bson_type)

    # -- derived ---------------------------------------------------------------------------
    @staticmethod
    def auto_deploy_at(writes: int, interval_s: float) -> float:
        """Between two writes, a few in: 5.5 s for the report's 20 writes 1 s apart; for fewer
        writes, between the two in the middle (never after the last write)."""
        k = min(5, max(0, (writes - 2) // 2)) if writes > 1 else 0
        return (k + 0.5) * interval_s if writes > 1 else 0.0

    @property
    def last_write_s(self) -> float:
        return (self.writes - 1) * self.interval_s

    @property
    def end_s(self) -> float:
        return self.last_write_s + self.settle_s

    @property
    def notes(self) -> int:
        return self.writes + int(self.params.prefill)

    @property
    def estimated_events(self) -> float:
        return EVENTS_PER_NOTE * self.notes + self.end_s / self.poll_s

    def schedule(self) -> Iterator[tuple[float, int, int]]:
        """(time, kind, n) in time order, ties in WRITE, DEPLOY, POLL, END order: produced
        lazily, so a long run never holds its schedule in memory."""
        writes = ((i * self.interval_s, WRITE, i) for i in range(self.writes))
        deploy = [(float(self.deploy_at_s), DEPLOY, 0)] if self.deploy_at_s is not None else []
        polls = ((k * self.poll_s, POLL, k) for k in range(1, int(self.end_s // self.poll_s) + 1))
        yield from heapq.merge(writes, deploy, polls, [(self.end_s, END, 0)])

    # -- building ------------------------------------------------------------------------
    @classmethod
    def from_flat(cls, values: Mapping[str, Any] | None = None, **more: Any) -> Scenario:
        """A scenario from flat keys: its own fields and `EmulatorParams` fields side by side
        (what sweeps, the CLI and the panel hold). Unknown keys are refused, named."""
        flat = {**(values or {}), **more}
        own = {f.name for f in dataclasses.fields(cls)} - {"params"}
        param_names = {f.name for f in dataclasses.fields(EmulatorParams)}
        unknown = sorted(set(flat) - own - param_names - {"params"})
        if unknown:
            raise InputError(unknown[0], f"not a scenario input (known: {', '.join(sorted(own | param_names))})")
        params = flat.get("params") or EmulatorParams()
        overrides = {k: v for k, v in flat.items() if k in param_names}
        if overrides:
            try:
                params = dataclasses.replace(params, **overrides)
            except ValueError as exc:
                name, _, problem = str(exc).partition(": ")
                raise InputError(name, problem) from None
        return cls(**{k: v for k, v in flat.items() if k in own}, params=params)

    def flat(self) -> dict[str, Any]:
        """Every input as flat keys (the inverse of `from_flat`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "params"}
        return {**out, **self.params.as_dict()}

    def run_meta(self) -> dict[str, Any]:
        """What a run directory's meta.json says of the run (the session's part comes from the session)."""
        return {"writes": self.writes, "interval_s": self.interval_s, "deploy_at_s": self.deploy_at_s,
                "settle_s": self.settle_s, "poll_s": self.poll_s, "field": self.field, "bson_type": self.bson_type,
                "pause_during_resync": self.pause_during_resync}

    def session_kwargs(self) -> dict[str, Any]:
        """`connect()` keywords for this scenario's session."""
        return {"mode": self.mode, "encoding": self.encoding, "reimport": self.reimport, "tree": self.tree,
                "seed": self.seed, "realtime": self.realtime, **self.params.as_dict()}

    def connect(self) -> Session:
        """A new emulated session set up as this scenario says."""
        return connect("emulator", **self.session_kwargs())
