"""One analysis per run: the verdict (lost / clean / inconclusive), and every loss explained
from the sync server's trace, node by node, never guessed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro_kit import recording
from repro_kit.client import connect
from repro_kit.findings import Analysis, analyse, check
from repro_kit.sweeps import run_scenario
from repro_kit.driver import run_test

from runs import post_deploy_ids, record_scenario


def recorded(tmp_path: Path, name: str = "run", settle_s: float = 300.0, **kwargs) -> Analysis:
    session = connect(**{"seed": 3, **kwargs})
    run_test(session, settle_s=settle_s, out=tmp_path / name)
    return analyse(recording.load_run(tmp_path / name))


@pytest.fixture(scope="module")
def default(tmp_path_factory) -> Analysis:
    return recorded(tmp_path_factory.mktemp("default"))


def test_every_lost_node_is_attributed_to_one_clear_in_reimport_batch_1(default):
    v = default.verdict
    assert v.outcome == "lost" and v.valid is False and len(v.lost) == 14
    (cause,) = default.causes
    assert cause.rule == "clear-vs-array-insert"
    assert list(cause.nodes) == v.orphaned == v.lost
    cs = cause.changeset
    assert cs["origin"] == "re-import" and cs["reimport_batch"] == 1 and cs["instruction"] == "Clear(root.children)"
    halt_version = default.nemesis("halt")[0][1]["snapshot_version"]
    assert cs["base_version"] == halt_version < min(default.evidence.created_in[n] for n in v.lost)
    assert default.unexplained == ()
    assert "Cause: 14 nodes lost to one Clear(root.children) in re-import batch 1" in v.summary()


def test_explain_gives_the_causal_chain_in_time_order(default):
    node = default.verdict.lost[3]
    exp = default.explain(node)
    assert exp.explained and exp.cause is default.causes[0]
    text = str(exp)
    for needle in ("wrote the node", "acknowledged", "halted translation and snapshotted Atlas",
                   "re-import batch 1 of 1 integrated as server version", "(before the node existed)",
                   "carried Clear(root.children)", "rule clear-vs-array-insert discarded the node's ArrayInsert",
                   "left the root's children", "its document was kept (orphaned)"):
        assert needle in text, needle
    times = [s.time for s in exp.steps if s.time is not None]
    assert times == sorted(times)
    ack = default._adds[node]["ok"]
    assert any(abs(s.time - ack) < 1e-9 for s in exp.steps if s.time is not None)
    with pytest.raises(ValueError, match="not a lost node"):
        default.explain(default.verdict.acknowledged[0])  # written before the deploy: kept


def test_explain_says_which_kind_of_id_has_no_chain(default):
    """A surviving node, the root, an unknown id, "" and None each get their own reason."""
    v = default.verdict
    cases = {
        v.acknowledged[0]: "it survived, in the root's children on the device at the end",
        default.meta["root_id"]: "it is the root node",
        "f" * 36: "is no node of this run",
        "": "empty string given",
        None: "None given",
    }
    messages = []
    for node_id, reason in cases.items():
        with pytest.raises(ValueError) as raised:
            default.explain(node_id)
        message = str(raised.value)
        assert reason in message and message.startswith("node_id: "), (node_id, message)
        assert "\n" not in message
        messages.append(message.split(" (")[0])
    assert len(set(messages)) == len(messages)  # no two kinds share a message
    with pytest.raises(ValueError, match="empty string given"):
        default.explain("   ")


def test_explain_takes_the_prefix_the_figures_show(default):
    from repro_kit import plots

    node = default.verdict.lost[3]
    short = plots._short_labels(list(default.node_ids))[list(default.node_ids).index(node)]
    assert short == node[:8]
    assert default.explain(short) == default.explain(node) == default.explain(node[:12])
    assert default.resolve_node(short) == node
    with pytest.raises(ValueError, match="it survived"):  # a unique prefix of a surviving node says so too
        default.explain(default.verdict.acknowledged[0][:8])


def test_an_ambiguous_prefix_names_its_candidates(default):
    ids = list(default.node_ids)
    # 21+ uuid4 ids over 16 hex digits: some first digit starts at least two of them
    first = next(c for c in "0123456789abcdef" if sum(n.startswith(c) for n in ids) >= 2)
    candidates = [n for n in ids if n.startswith(first)]
    with pytest.raises(ValueError, match="ambiguous") as raised:
        default.explain(first)
    message = str(raised.value)
    assert f"{len(candidates)} nodes start with it" in message
    for n in candidates[:5]:
        assert n in message
    if len(candidates) > 5:
        assert f"and {len(candidates) - 5} more" in message


def test_analyse_takes_a_run_directory_path(tmp_path, default):
    path = default.run.path
    for given in (path, str(path)):
        a = analyse(given)
        assert a.verdict.lost == default.verdict.lost and a.causes == default.causes
    assert check(str(path)).lost == default.verdict.lost
    with pytest.raises(ValueError, match="run directory not found"):
        analyse(tmp_path / "missing")
    with pytest.raises(ValueError, match="must name a run directory"):
        analyse("")


@pytest.mark.parametrize("sizes, words", [
    ([], "no re-import batch"),
    ([7], "1 batch of 7 documents"),
    ([1], "1 batch of 1 document"),
    ([20, 20], "2 batches of 20 documents"),
    ([20, 20, 6], "3 batches of 20, 20 and 6 documents"),
    ([20] * 2229 + [10], "2,230 batches of 10 to 20 documents (44,590 documents in all)"),
])
def test_batches_are_described_as_documents_per_batch(sizes, words):
    from repro_kit.findings import describe_batches

    assert describe_batches(sizes) == words


def test_each_piece_is_computed_once(default):
    assert default.intervals is default.intervals
    assert default.verdict is default.verdict
    assert default.causes is default.causes


def test_prefill_45_every_lost_node_is_attributed_to_the_batch_that_carried_the_roots_clear(tmp_path):
    a = recorded(tmp_path, prefill=45)
    assert a.verdict.resync_batches[:2] == [20, 20]
    (cause,) = a.causes
    batch = cause.changeset["reimport_batch"]
    record = a.evidence.integrated[cause.changeset["version"]]
    assert record["reimport_batch"] == batch and record["reimport_batches"] >= 3
    assert any(i["op"] == "Clear" and i["object"] == a.meta["root_id"] for i in record["instructions"])
    assert list(cause.nodes) == a.verdict.lost and len(cause.nodes) == 14


@pytest.mark.parametrize("kwargs", [{"encoding": "diff"}, {"mode": "development"}, {"reimport": "new-values"}])
def test_no_loss_no_causes_and_clean(tmp_path, kwargs):
    a = recorded(tmp_path, **kwargs)
    assert a.verdict.outcome == "clean" and a.verdict.valid is True
    assert a.causes == () and a.verdict.lost == []


def test_stopped_before_the_reimport_is_inconclusive(tmp_path):
    a = recorded(tmp_path, settle_s=20)
    v = a.verdict
    assert v.outcome == "inconclusive" and v.valid is None and v.lost == []
    assert v.inconclusive_reason.startswith("translation was still halted when the run ended at 39.0 s")
    assert v.summary().startswith("Inconclusive:")


def test_a_reimport_that_has_not_reached_the_device_is_inconclusive(tmp_path):
    # 45 prefilled notes: 3 batches 0.5 s apart; the run ends between the resume and the last download
    # root + 45 + 2 pre-deploy notes: batches at 11.5, 12.0 and 12.5 s; the resume comes with the
    # last one, its download ~50 ms later; the run ends at 12.52 s, in between
    session = connect(seed=3, prefill=45, resync_delay_s=10.0)
    run_test(session, writes=5, deploy_at_s=1.5, settle_s=8.52, out=tmp_path / "r")
    a = analyse(recording.load_run(tmp_path / "r"))
    resumes = a.nemesis("resume")
    assert resumes and resumes[0][1]["batches"] == 3
    assert len(a.batches) == 2
    assert a.inconclusive_reason.startswith("the device had received 2 of 3 re-import batches")
    # the root's Clear came in batch 1, so the loss already shows: lost, and the summary warns of more
    assert a.verdict.outcome == "lost" and len(a.verdict.lost) == 3  # writes at 2, 3 and 4 s
    assert "The run ended early (the device had received 2 of 3" in a.verdict.summary()


def test_a_run_killed_before_its_deploy_is_inconclusive(tmp_path):
    path = record_scenario(tmp_path / "run", deploy_at_s=None, finish=False, meta={"deploy_at_s": 150.0},
                           end_s=60.0, loss=False)
    v = check(recording.load_run(path))
    assert v.outcome == "inconclusive" and "before the deploy planned at 150 s" in v.inconclusive_reason


def test_lost_nodes_the_trace_does_not_show_are_unexplained_never_guessed(tmp_path, default):
    # a copy of the default run without its trace: the loss is still seen, its cause is not
    src = default.run.path
    dst = tmp_path / "no-trace"
    dst.mkdir()
    for name in ("meta.json", "history.jsonl", "events.jsonl"):
        (dst / name).write_bytes((src / name).read_bytes())
    loaded = recording.load_run(dst)
    assert "trace.jsonl cut short: it holds 0 of the 35 records the run wrote" in loaded.warnings
    a = analyse(loaded)
    assert a.verdict.lost == default.verdict.lost
    assert a.causes == () and a.unexplained == tuple(default.verdict.lost)
    exp = a.explain(a.verdict.lost[0])
    assert not exp.explained and "unexplained: the trace shows no instruction that removed it" in str(exp)
    assert "14 unexplained" in a.verdict.summary()


def test_a_backend_that_cannot_see_the_server_says_so(tmp_path):
    path = record_scenario(tmp_path / "run", meta={"backend": "live", "server_trace": False})
    a = analyse(recording.load_run(path))
    assert a.verdict.lost == post_deploy_ids()
    assert not a.trace_available and a.causes == ()
    assert "the backend cannot see the sync server's merge" in a.verdict.summary()
    assert "cannot see the sync server's merge (no trace)" in str(a.explain(a.verdict.lost[0]))


def test_synthetic_runs_without_server_trace_flag_are_judged_as_recorded(tmp_path):
    v = check(recording.load_run(record_scenario(tmp_path / "run")))
    assert v.outcome == "lost" and v.lost == post_deploy_ids() and v.valid is False


def test_analyse_rejects_what_is_not_a_run():
    with pytest.raises(ValueError, match="run"):
        analyse("runs/x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be a loaded Run"):
        analyse(42)  # type: ignore[arg-type]


SCENARIOS = [
    {},
    {"prefill": 5},
    {"prefill": 45, "resync_batch_size": 20},
    {"encoding": "diff"},
    {"deploy_at_s": 0.0},
    {"settle_s": 20.0},
    {"writes": 8, "interval_s": 0.5, "deploy_at_s": 1.25, "clock_skew_ms": 300_000},
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "defaults")
def test_a_sweep_row_is_the_analysis_of_the_same_run_recorded_to_disk(tmp_path, scenario):
    """sweep rows come from the same analysis as `repro-kit report` on the recorded run."""
    from repro_kit.scenario import Scenario
    from repro_kit.sweeps import SCENARIO_DEFAULTS

    row = run_scenario(scenario)
    sc = Scenario.from_flat({**SCENARIO_DEFAULTS, **scenario})
    run_test(sc.connect(), scenario=sc, out=tmp_path / "run")
    on_disk = analyse(recording.load_run(tmp_path / "run")).figures()
    assert row == on_disk
    assert row["orphaned"] == row["lost_count"]  # every loss here is an orphan, prefill or not


def test_report_json_matches_the_analysis(tmp_path, default):
    from repro_kit.report import build_report

    data = build_report(default)
    assert data["causes"] == [c.as_dict() for c in default.causes]
    json.dumps(data)


def test_a_run_that_starts_inside_an_earlier_halt_is_inconclusive(tmp_path):
    """Deploy, then start a run before the re-import: translation is halted all along."""
    session = connect(seed=4)
    session.deploy_schema_change("tags", "array<string>")
    session.wait(1.5)
    run_test(session, writes=4, deploy_at_s=None, settle_s=3.0, out=tmp_path / "run")
    a = analyse(recording.load_run(tmp_path / "run"))
    assert a.verdict.outcome == "inconclusive" and a.verdict.valid is None
    assert "still halted" in a.inconclusive_reason
    halt = a.nemesis("halt")[0]
    assert halt[0] == 0.0 and halt[1]["before_run"] is True and halt[1]["halted_for_s"] == pytest.approx(1.5, abs=0.2)
