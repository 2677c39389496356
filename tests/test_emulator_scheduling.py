"""The emulator's scheduling helpers: the same order as SimPy's own, and a GC left as found."""

from __future__ import annotations

import gc
import heapq

import pytest
import simpy

from repro_kit.emulator._scheduling import (
    NORMAL,
    ModelDelivery,
    ModelEnvironment,
    TimedCall,
    fired_before,
    heap_parts,
    relaxed_gc,
    run_until,
)
from repro_kit.emulator.delivery import Delivery


def _schedule_mix(env: simpy.Environment, log: list[tuple[float, str]]) -> None:
    """Timeouts, timed calls and heap pushes, many at equal times: order is decided by event ids."""
    queue, eids = heap_parts(env)
    delivery = ModelDelivery(env)

    def proc(name: str, delays: list[float]):  # type: ignore[no-untyped-def]
        for d in delays:
            yield env.timeout(d)
            log.append((env.now, name))
            delivery.call_later(0.5, lambda n=name: log.append((env.now, f"{n} later")))
            Delivery.call_later(delivery, 0.5, lambda n=name: log.append((env.now, f"{n} by a Timeout")))
            heapq.heappush(queue, (env.now + 0.5, NORMAL, next(eids), TimedCall(log.append, ((env.now + 0.5, f"{name} pushed"),))))

    for k, delays in enumerate([[0.5, 0.5, 1.0], [1.0, 0.5], [0.5, 1.5, 0.25]]):
        env.process(proc(f"p{k}", delays))


@pytest.mark.parametrize("kind", [simpy.Environment, ModelEnvironment])
def test_run_until_fires_in_the_order_env_run_does(kind):
    by_run: list[tuple[float, str]] = []
    env = kind()
    _schedule_mix(env, by_run)
    for t in (0.75, 1.5, 2.0, 4.0):
        env.run(until=t)
    by_ours: list[tuple[float, str]] = []
    env = kind()
    _schedule_mix(env, by_ours)
    for t in (0.75, 1.5, 2.0, 4.0):
        run_until(env, t)
    assert by_ours == by_run and len(by_run) > 20
    assert env.now == 4.0


@pytest.mark.parametrize("drive", ["run_until", "env.run", "step"])
def test_a_model_environment_knows_the_entry_fired_last(drive):
    env = ModelEnvironment()
    assert fired_before(env) < (0.0,)  # nothing has fired: no key is below the bound
    seen: list[tuple[float, int, int]] = []
    queue, eids = heap_parts(env)
    keys = [(t, NORMAL, next(eids)) for t in (1.0, 1.0, 2.0)]
    for key in keys:
        heapq.heappush(queue, (*key, TimedCall(lambda: seen.append(fired_before(env)[:3]), ())))
    if drive == "run_until":
        run_until(env, 3.0)
    elif drive == "env.run":
        env.run(until=3.0)
    else:
        for _ in keys:
            env.step()
    assert seen == keys  # inside each call, the bound is that call's own entry
    assert all(key < fired_before(env) for key in keys)


def test_relaxed_gc_leaves_the_collector_as_it_found_it():
    saved, was_enabled = gc.get_threshold(), gc.isenabled()
    try:
        gc.enable()
        with relaxed_gc():
            assert gc.get_threshold()[0] >= 200_000 and gc.isenabled()
            with relaxed_gc(pause=True):
                assert not gc.isenabled()
                with relaxed_gc(pause=True):
                    assert not gc.isenabled()
                assert not gc.isenabled()  # the outer pause still holds
            assert gc.isenabled()
        assert gc.get_threshold() == saved and gc.isenabled()
        gc.disable()
        with relaxed_gc(pause=True):
            pass
        assert not gc.isenabled()  # the caller had it off: it stays off
    finally:
        gc.set_threshold(*saved)
        (gc.enable if was_enabled else gc.disable)()


def test_relaxed_gc_restores_on_an_exception():
    saved = gc.get_threshold()
    with pytest.raises(RuntimeError):
        with relaxed_gc(pause=True):
            raise RuntimeError("boom")
    assert gc.get_threshold() == saved and gc.isenabled()
