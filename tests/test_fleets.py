"""Many users through one deploy: the blast radius, per user and in total, from a recorded run."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from repro_kit import findings, recording
from repro_kit.fleets import FleetParams, _Fleet, fleet, load_fleet

SMALL = {"users": 30, "notes_per_user": 5, "writes_per_user": 8, "write_every_s": 1.0, "deploy_at_s": 2.5,
         "resync_delay_s": 20.0, "resync_batch_size": 20}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return fleet(**SMALL, out=tmp_path_factory.mktemp("fleet") / "run", progress=False)


def test_every_user_loses_the_notes_written_after_the_deploy(small):
    users = small.users
    assert len(users) == 30 and small.users_affected == 30
    # writes at offset + 0..7 s (offsets spread over the first second); the deploy at 2.5 s
    assert users["orphaned"].between(5, 6).all()  # the writes after the deploy (and one just before it)
    assert (users["nodes_total"] == 1 + 5 + 8).all()  # documents kept: orphaned, not deleted
    assert (users["root_children"] + users["orphaned"] == 5 + 8).all()
    assert small.notes_orphaned == int(users["orphaned"].sum()) == len(small.losses)
    assert small.meta["converged"] is True


def test_the_summary_and_the_report_say_it_in_one_sentence(small):
    sentence = small.summary()
    assert sentence.startswith(f"This deploy orphaned {small.notes_orphaned:,} notes of 30 users")
    assert f"translation was halted for {small.halt_s:,.0f} s" in sentence
    data = json.loads((small.path / "fleet.json").read_text())
    assert data["notes_orphaned"] == small.notes_orphaned and data["users_affected"] == 30
    assert data["summary"] == sentence
    md = (small.path / "fleet.md").read_text()
    assert sentence in md and "![losses over time and per user](fleet.png)" in md
    assert (small.path / "fleet.png").stat().st_size > 0 and (small.path / "fleet.svg").stat().st_size > 0


def test_the_summary_says_which_notes_were_orphaned_by_when_they_were_written(small):
    """Every note written while translation was halted, and the few written just before the deploy
    (not yet in Atlas when it was snapshotted): the summary says both, with the numbers."""
    in_halt = int(small.users["notes_written_in_halt"].sum())
    by = small.orphaned_by_write_time()
    assert by["in"] == in_halt and by["after"] == 0 and by["unknown"] == 0
    assert by["before"] + by["in"] == small.notes_orphaned
    before = small.losses[small.losses["written_at_s"] < small.halt[0]]
    assert len(before) == by["before"] > 0  # the loss window opens slightly before the deploy
    lead = small.halt[0] - before["written_at_s"].min()
    assert 0 < lead < 0.3
    sentence = small.summary()
    assert f"all {in_halt:,} notes written while it was halted and {by['before']:,} written in the " \
           f"{lead:.2f} s before the deploy." in sentence
    assert "notes were written while translation was halted" not in sentence  # no count beside the total


def test_each_loss_shows_when_its_users_batch_arrives(small):
    first, last = small.losses["lost_at_s"].min(), small.losses["lost_at_s"].max()
    assert first >= SMALL["deploy_at_s"] + SMALL["resync_delay_s"]
    assert last <= small.halt[1] + 1.0  # within the re-import, batch after batch
    assert small.halt[0] == pytest.approx(2.5)


def test_the_halt_grows_with_the_collection(tmp_path):
    halts = []
    for notes in (0, 40):
        a = fleet(**{**SMALL, "notes_per_user": notes}, out=tmp_path / f"n{notes}", progress=False)
        halts.append((a.halt_s, a.batches))
    (short, few), (long, many) = halts
    assert many > few
    assert long - short == pytest.approx(0.5 * (many - few), abs=1.0)  # 0.5 s per extra batch of 20 documents


@pytest.mark.parametrize("kwargs", [{"mode": "development"}, {"encoding": "diff"}])
def test_nothing_is_orphaned_without_the_mechanism(tmp_path, kwargs):
    a = fleet(**SMALL, **kwargs, out=tmp_path / "run", progress=False)
    assert a.notes_orphaned == 0 and a.users_affected == 0
    assert a.summary().startswith("This deploy orphaned 0 notes of 0 users")


def test_poisson_writers_are_seeded(tmp_path):
    p = FleetParams(users=5, writes_per_user=6, poisson=True, seed=3)
    assert p.write_times(2) == FleetParams(users=5, writes_per_user=6, poisson=True, seed=3).write_times(2)
    assert p.write_times(2) != p.write_times(3)
    a = fleet(**SMALL, poisson=True, seed=3, out=tmp_path / "a", progress=False)
    b = fleet(**SMALL, poisson=True, seed=3, out=tmp_path / "b", progress=False)
    assert a.users.equals(b.users)


def test_partitions_keep_the_halt_and_the_losses(tmp_path, small):
    with ThreadPoolExecutor(max_workers=2) as pool:  # any Executor: a process pool or a Dask cluster's too
        parted = fleet(**SMALL, partitions=3, executor=pool, out=tmp_path / "run", progress=False)
    assert parted.halt_s == pytest.approx(small.halt_s, abs=1.0)
    assert parted.batches == pytest.approx(small.batches, abs=3)
    # the partitions' batches interleave over one server's span: the roots (the bootstrap, first in the
    # collection) come back over the same first stretch, so the losses show over the same span
    for when in ("min", "max"):
        assert getattr(parted.losses["lost_at_s"], when)() == pytest.approx(getattr(small.losses["lost_at_s"], when)(),
                                                                           abs=0.5)
    assert parted.users_affected == small.users_affected
    assert abs(parted.notes_orphaned - small.notes_orphaned) <= 3  # latency jitter draws differ by partition
    assert parted.users["notes_written_in_halt"].equals(small.users["notes_written_in_halt"])
    assert parted.meta["converged"] is True and parted.meta["partitions"] == 3


def test_the_fleet_run_directory_loads_like_any_run_and_the_one_checker_judges_it(small):
    run = recording.load_run(small.path)
    assert run.meta["kind"] == "fleet" and run.finished and not run.incomplete
    adds = run.history[run.history.f == "add"]
    assert len(adds[adds.type == "invoke"]) == 30 * 8
    assert set(run.events.kind.astype(str)) >= {"doc_insert", "enter", "leave", "batch"}
    reads = run.history[(run.history.f == "read") & (run.history.type == "ok")]
    assert sorted(reads.process) == list(range(30))  # every user's final read
    verdict = findings.analyse(run).verdict
    assert verdict.outcome == "lost" and len(verdict.orphaned) == small.notes_orphaned
    assert set(verdict.orphaned) == set(small.losses["node_id"])


def test_a_plain_run_is_not_a_fleet(tmp_path):
    from repro_kit.client import connect
    from repro_kit.driver import run_test

    run_test(connect(), writes=3, settle_s=5, out=tmp_path / "plain")
    with pytest.raises(ValueError, match="not a fleet run"):
        load_fleet(tmp_path / "plain")


@pytest.mark.parametrize("kwargs, name", [({"users": 0}, "users"), ({"writes_per_user": -1}, "writes_per_user"),
                                          ({"write_every_s": float("nan")}, "write_every_s"),
                                          ({"mode": "staging"}, "mode"), ({"partitions": 0}, "partitions"),
                                          ({"bogus": 1}, "bogus")])
def test_bad_fleet_input_names_the_parameter(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        fleet(**{**SMALL, **kwargs}, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_the_world_agrees_with_itself_after_settling():
    world = _Fleet(FleetParams(users=4, notes_per_user=3, writes_per_user=3,
                               params=FleetParams().params.__class__(resync_delay_s=5.0)), 0, 4)
    world.bootstrap()
    figures = world.run(recording.MemoryRecorder())
    assert figures["converged"] and world.world.settled()
