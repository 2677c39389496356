"""Many users of one app through one schema deploy: the emulator at a production app's size.

One sync server, translator, Atlas collection and control plane serve `users` owners, each
with `devices_per_user` devices (flexible sync scopes each device to its owner, and the
server fans a changeset out only to the devices of the owners it touches). Every user
starts with `notes_per_user` notes under their root (written through their own device, so
the collection, and the re-import's length, grow as a real app's does), then writes on
their own seeded schedule: one note every `write_every_s` (users staggered across the
interval) or, with `poisson=True`, at exponentially distributed gaps of that mean.
A production deploy re-imports the whole collection in batches, so the halt grows with it.

`FleetWorld.run(observer)` drives it and reports what happens through `observer`'s
methods (`add`, `ack`, `nemesis`, `leave`, `batch`, `final`): the recording lives in
`repro_kit.fleet`, which turns it into a run directory and a report.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import random
from collections.abc import Callable
from typing import Any

import simpy

from repro_kit import _schema
from repro_kit.emulator._scheduling import ModelEnvironment, call_later, relaxed_gc, run_until
from repro_kit.emulator.appservices import ControlPlane
from repro_kit.emulator.atlas import AtlasCollection
from repro_kit.emulator.device import Device, _create_node
from repro_kit.emulator.params import CHOICES, EmulatorParams
from repro_kit.emulator.server import SyncServer
from repro_kit.emulator.translator import Translator

__all__ = ["FleetWorld", "FleetParams", "MAX_USERS"]

#: Most users one fleet run models (a bound on memory: about 60 KB per user with 20 notes).
MAX_USERS = 200_000
#: Seconds between checks whether the re-import is done and every view agrees.
_SETTLE_STEP_S = 5.0


@dataclasses.dataclass(frozen=True)
class FleetParams:
    """A fleet scenario. Times in seconds since the run starts (after the notes exist)."""

    users: int = 1000
    devices_per_user: int = 1
    notes_per_user: int = 20
    writes_per_user: int = 20
    write_every_s: float = 1.0
    poisson: bool = False
    deploy_at_s: float | None = 5.5
    settle_s: float | None = None
    """Seconds to keep watching after the last write; None: until the re-import has ended
    and every device, the server and Atlas agree (bounded by `max_duration_s`)."""
    max_duration_s: float = 30 * 86_400.0
    mode: str = "production"
    encoding: str = "replace"
    reimport: str = "all"
    seed: int = 0
    field: str = "tags"
    bson_type: str = "array<string>"
    params: EmulatorParams = dataclasses.field(default_factory=EmulatorParams)

    def __post_init__(self) -> None:
        def integer(name: str, low: int, high: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name}: must be an integer from {low:,} to {high:,}, got {value!r}")

        integer("users", 1, MAX_USERS)
        integer("devices_per_user", 1, 1000)
        integer("notes_per_user", 0, 100_000)
        integer("writes_per_user", 0, 100_000)
        integer("seed", 0, 2**63 - 1)
        if self.users * (self.notes_per_user + self.writes_per_user) > 20_000_000:
            raise ValueError("users: users x (notes_per_user + writes_per_user) must stay under 20,000,000 notes")
        for name in ("write_every_s", "max_duration_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
        for name in ("deploy_at_s", "settle_s"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise ValueError(f"{name}: must be a finite number >= 0 or None, got {value!r}")
        if not isinstance(self.poisson, bool):
            raise ValueError(f"poisson: must be True or False, got {self.poisson!r}")
        for name in ("mode", "encoding", "reimport"):
            allowed = CHOICES[name][0]
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not isinstance(self.params, EmulatorParams):
            raise ValueError(f"params: must be an EmulatorParams, got {type(self.params).__name__}")
        if self.deploy_at_s is not None:
            _schema.validate_field_name(self.field)
            _schema.parse_bson_type(self.bson_type)
        if self.write_span_s > self.max_duration_s:
            raise ValueError(f"write_every_s: the writes would span {self.write_span_s:,.0f} s; "
                             f"at most max_duration_s={self.max_duration_s:,.0f} s")

    @property
    def write_span_s(self) -> float:
        """When the last scheduled write is due (Poisson: the mean's worth, as a bound)."""
        return self.writes_per_user * self.write_every_s * (3 if self.poisson else 1)

    def user_rng(self, user: int) -> random.Random:
        """Each user's own schedule generator: the same for a user whatever the others do."""
        return random.Random(self.seed * 1_000_003 + user)

    def write_times(self, user: int) -> list[float]:
        """When `user` writes, in seconds since the run starts."""
        n = self.writes_per_user
        if not self.poisson:
            offset = self.write_every_s * user / self.users
            return [offset + k * self.write_every_s for k in range(n)]
        rng = self.user_rng(user)
        t, out = 0.0, []
        for _ in range(n):
            t += rng.expovariate(1.0 / self.write_every_s)
            out.append(t)
        return out


class FleetWorld:
    """The app's whole user base on the emulator, in virtual time."""

    def __init__(self, p: FleetParams, first_user: int = 0, users: int | None = None) -> None:
        self.p = p
        self.first_user = first_user
        self.count = p.users if users is None else users
        self.env = ModelEnvironment()
        self.rng = random.Random(p.seed * 7_919 + first_user)
        ep = p.params
        self.collection = AtlasCollection(_schema.COLLECTION)
        self.collection._clock = lambda: self.env.now
        self.server = SyncServer(self.env, self.rng, ep.download_latency_s, ep.latency_jitter)
        self.translator = Translator(self.env, self.server, self.collection, p.encoding, ep.translator_lag_s)
        self.control = ControlPlane(self.env, self.translator, p.mode, ep, p.reimport)
        self.devices: list[list[Device]] = []
        self.roots: list[str] = []
        self.owners: list[str] = []
        peer = 2
        for u in range(first_user, first_user + self.count):
            owner = f"user-{u:06d}"
            devices = []
            for _ in range(p.devices_per_user):
                devices.append(Device(self.env, self.server, peer, owner, self.rng, ep.upload_latency_s,
                                      int(ep.clock_skew_ms)))
                peer += 1
            self.owners.append(owner)
            self.devices.append(devices)

    # -- start-up --------------------------------------------------------------------------
    def bootstrap(self) -> None:
        """Every user's root and notes, written in one transaction on their first device and
        synced to the server and Atlas before the run starts."""
        p = self.p
        for i, devices in enumerate(self.devices):
            device = devices[0]
            root = device.new_id()
            instructions = _create_node(root, "root", self.owners[i], True)
            for k in range(p.notes_per_user):
                pk = device.new_id()
                instructions += _create_node(pk, f"note {k + 1}", self.owners[i], False)
                instructions.append({"op": "ArrayInsert", "table": "Node", "object": root, "field": "children",
                                     "index": k, "value": pk, "prior_size": k})
            device.write(instructions)
            self.roots.append(root)
        self.settle_until_quiet(bound_s=3600.0)

    def quiet(self) -> bool:
        """Nothing left to sync: every device acknowledged, Atlas caught up, no halt."""
        return self.translator.caught_up and all(d.idle for ds in self.devices for d in ds)

    def settle_until_quiet(self, bound_s: float) -> None:
        end = self.env.now + bound_s
        with relaxed_gc(pause=True):
            while not self.quiet() and self.env.now < end:
                run_until(self.env, min(end, self.env.now + _SETTLE_STEP_S))

    # -- the run -----------------------------------------------------------------------------
    def run(self, observer: Any, progress: Callable[[float, float], None] | None = None) -> dict[str, Any]:
        """Write, deploy and settle; report through `observer`; returns the run's figures."""
        p = self.p
        env = self.env
        t0 = env.now
        rel = lambda t: round(t - t0, 6)  # noqa: E731 - a tiny local conversion
        nemesis_seen = len(self.translator.log)

        def drain() -> None:
            nonlocal nemesis_seen
            for entry in self.translator.log[nemesis_seen:]:
                observer.nemesis(entry["f"], rel(entry["time"]), entry.get("value"))
            nemesis_seen = len(self.translator.log)

        for i, devices in enumerate(self.devices):
            user = self.first_user + i
            first = devices[0]
            first.leave_listeners.append(lambda left, batch, t, user=user: self._observe(observer, user, left, batch,
                                                                                           rel(t)))
            for device in devices:
                device.ack_listeners.append(lambda pk, t, user=user: observer.ack(user, pk, rel(t)))
            times = p.write_times(user)
            for k, at in enumerate(times):
                device = devices[k % len(devices)]
                call_later(env, at, self._write, observer, user, device, k, rel)
        deployed_at = None
        if p.deploy_at_s is not None:
            deployed_at = t0 + p.deploy_at_s

            def deploy() -> None:
                observer.nemesis("deploy", rel(env.now), {"field": p.field, "bson_type": p.bson_type})
                self.control.deploy_schema_change(p.field, p.bson_type)
                drain()

            call_later(env, p.deploy_at_s, deploy)
        last_write = max((max(p.write_times(self.first_user + i), default=0.0) for i in range(self.count)),
                         default=0.0)
        gc.freeze()  # the notes that exist stay to the end: no collector pass need look at them again
        try:
            self._drive(env, t0, last_write, deployed_at, drain, progress)
        finally:
            gc.unfreeze()
        drain()
        for i, devices in enumerate(self.devices):
            device = devices[0]
            root = device.root_id()
            observer.final(self.first_user + i, rel(env.now), device.visible_children(root), len(device.owned_ids()),
                           root)
        resumes = [e for e in self.translator.log if e["f"] == "resume"]
        return {"ended_at_s": rel(env.now), "server_versions": self.server.version, "converged": self.agree(),
                "reimport_batches": sum(int(e["value"].get("batches", 0)) for e in resumes)}

    def _drive(self, env: simpy.Environment, t0: float, last_write: float, deployed_at: float | None,
               drain: Callable[[], None], progress: Callable[[float, float], None] | None) -> None:
        p = self.p
        with relaxed_gc(pause=True):
            horizon = t0 + last_write + (p.settle_s if p.settle_s is not None else 0.0)
            while env.now < horizon:
                run_until(env, min(horizon, env.now + _SETTLE_STEP_S))
                drain()
                if progress is not None:
                    progress(env.now - t0, horizon - t0)
            if p.settle_s is None:  # until the re-import is done and the views agree
                bound = t0 + p.max_duration_s
                while env.now < bound and not (self.quiet() and (deployed_at is None or env.now > deployed_at)):
                    run_until(env, min(bound, env.now + _SETTLE_STEP_S))
                    drain()
                    if progress is not None:
                        progress(env.now - t0, max(env.now - t0, horizon - t0))

    def _write(self, observer: Any, user: int, device: Device, k: int, rel: Callable[[float], float]) -> None:
        pk = device.add_to_root(f"note {self.p.notes_per_user + k + 1}")
        observer.add(user, pk, rel(self.env.now))

    @staticmethod
    def _observe(observer: Any, user: int, left: list[str], batch: int | None, t: float) -> None:
        for pk in left:
            observer.leave(user, pk, t)
        if batch:
            observer.batch(user, batch, t)

    def agree(self) -> bool:
        """Every device of every user, the server and Atlas show the same root children."""
        table = self.server.state["Node"]
        for i, devices in enumerate(self.devices):
            views = {tuple(d.visible_children(d.root_id())) for d in devices}
            if len(views) != 1:
                return False
            root = self.roots[i] if i < len(self.roots) else devices[0].root_id()
            server_view = tuple(c for c in table.get(root, {}).get("children", ()) if c in table)
            atlas_root = self.collection.get(root)
            atlas_view = tuple(atlas_root["children"]) if atlas_root else ()
            if views != {server_view} or server_view != atlas_view:
                return False
        return True
