"""Replaying a client's trace log through the kit's merge: the recorded realm-core run names
exactly a1, a2, a3 and the rule, the run directory is judged the same by the kit's checker, and
what a log cannot tell (history before it starts, instructions the kit cannot express) is said."""

from __future__ import annotations

from pathlib import Path

import pytest

from realm_logs import LogBuilder, append, clear, create, report_scenario
from repro_kit import findings, recording
from repro_kit.realm_log import (
    ArrayMove, CreateObject, Link, Payload, SetInsert, Update, parse_log_text, replay, replay_log, translate,
)

DATA = Path(__file__).parent / "data" / "realm-core-13.17.1" / "sync-logs"
DEVICE_LOG = DATA / "device_trace.log"


@pytest.fixture(scope="module")
def recorded():
    return replay(DEVICE_LOG)


def test_the_recorded_run_names_a1_a2_a3_and_the_rule(recorded):
    assert recorded.verdict == "lost" and recorded.inconclusive == []
    assert recorded.orphaned == ["a1", "a2", "a3"]
    (loss,) = recorded.losses
    assert loss.sentence() == (
        "a1, a2, a3 left Node[root].children when the client integrated server version 6 from origin_file_ident 3 "
        "(based on server version 2): Clear(root.children), rule clear-vs-array-insert")
    assert (loss.rule, loss.at, loss.outcome) == ("clear-vs-array-insert", "server", "left")
    # the device's final state is realm-core's (final_states.json, final_A)
    import json

    final = json.loads((DATA / "final_states.json").read_text())["final_A"]
    assert recorded.root_children() == final["root_children"]
    assert sorted(recorded.state["Node"]) == sorted(o["_id"] for o in final["objects"])
    assert {pk: obj["text"] for pk, obj in recorded.state["Node"].items()} == \
        {o["_id"]: o["text"] for o in final["objects"]}


def test_versions_order_the_steps_and_batches_acknowledge_the_devices_changes(recorded):
    steps = [(s.kind, s.client_version, s.server_version, s.base_version) for s in recorded.steps]
    assert steps == [("local", 2, 1, 0), ("local", 3, 2, 0), ("local", 7, 3, 2), ("local", 9, 4, 3),
                     ("local", 11, 5, 4), ("download", 11, 6, 2), ("local", 14, 7, 6)]
    assert all(s.ack_exact for s in recorded.steps if s.kind == "local")
    assert recorded.client_file_ident == 2


def test_the_base_is_inferred_and_says_which_fields_bound_it(recorded):
    download = next(s for s in recorded.steps if s.kind == "download")
    assert (download.base.version, download.base.how, download.base.at_most) == (2, "inferred", 5)
    assert "client_version=11 bounds it by server version 5" in download.base.why


def test_the_run_directory_is_judged_by_the_kits_checker(recorded, tmp_path):
    out = recorded.write_run(tmp_path / "run")
    run = recording.load_run(out)
    assert run.meta["kind"] == "replay" and run.meta["backend"] == "replay" and run.meta["finished"] is True
    assert run.meta["root_id"] == "root" and run.meta["encoding"] == "replace" and run.meta["mode"] == "unknown"
    assert "log_sha256" in run.meta and "baas_at" not in (out / "meta.json").read_text()  # the log is not copied
    analysis = findings.analyse(run)
    verdict = analysis.verdict
    assert verdict.outcome == "lost" and verdict.lost == ["a1", "a2", "a3"] == verdict.orphaned
    (cause,) = verdict.causes
    assert cause.rule == "clear-vs-array-insert" and cause.nodes == ("a1", "a2", "a3")
    assert cause.changeset["version"] == 6 and cause.changeset["base_version"] == 2 and cause.changeset["origin"] == 3
    adds = run.history[run.history["f"].astype(str) == "add"]
    assert set(adds["process"]) == {0} and set(adds["node_id"]) == {"c1", "c2", "c3", "a1", "a2", "a3", "p1"}
    assert "sync server: rule clear-vs-array-insert discarded the node's ArrayInsert(root.children[3] = a1)" in \
        str(analysis.explain("a1"))


def test_report_turns_the_replay_into_a_report(recorded, tmp_path, capsys):
    from repro_kit import cli

    out = recorded.write_run(tmp_path / "run")
    assert cli.main(["report", str(out), "--fail-on-loss"]) == 1
    printed = capsys.readouterr().out
    assert "LOST 3 of 7 acknowledged nodes" in printed and "clear-vs-array-insert" in printed
    for name in ("report.md", "report.json", "timeline.png", "sequence.png"):
        assert (out / name).is_file(), name
    assert "rule clear-vs-array-insert" in (out / "report.md").read_text()


def test_a_rebuilt_log_in_every_sdk_style_gives_the_same_answer():
    answers = set()
    for style in ("iso", "android", "android-short", "bare"):
        result = replay_log(parse_log_text(report_scenario(style).text()))
        assert result.orphaned == ["a1", "a2", "a3"], style
        answers.add(result.losses[0].sentence())
    assert answers == {"a1, a2, a3 left Node[root].children when the client integrated server version 5 from "
                       "origin_file_ident 3 (based on server version 1): Clear(root.children), rule "
                       "clear-vs-array-insert"}


def test_the_clearing_clients_own_log_shows_the_appends_discarded_on_the_device():
    """Client B's side: its offline Clear (client version 4, based on server version 2) is not yet
    uploaded when versions 3-5 (A's appends) arrive; the device's rebase discards them."""
    log = LogBuilder()
    log.ident(3)
    log.download(1, 0, 2, create("root", "root") + [x for n, c in enumerate(("c1", "c2", "c3"))
                                                   for x in create(c, c) + [append("root", c, n)]], made_at=0.0)
    log.t = 0.1
    reimport = [clear("root")] + [append("root", c, n) for n, c in enumerate(("c1", "c2", "c3"))]
    made = log.t
    for n, pk in enumerate(("a1", "a2", "a3")):
        log.t = 0.2 + n * 0.01
        log.download(2 + n, 0, 2, create(pk, pk) + [append("root", pk, 3 + n)], made_at=0.05 + n * 0.01)
    log.t = 0.3
    log.upload(4, 1, reimport, t=made)
    log.batch(5, 4)
    result = replay_log(parse_log_text(log.text()))
    assert result.orphaned == ["a1", "a2", "a3"]
    (loss,) = result.losses
    assert loss.outcome == "never-entered" and loss.at == "device" and loss.rule == "clear-vs-array-insert"
    assert loss.sentence().startswith("a1, a2, a3 never entered Node[root].children: the client integrated server "
                                      "versions 2-4 from origin_file_ident 2 against its own change not yet uploaded "
                                      "(client version 4, based on server version 1)")


def test_a_log_that_starts_late_still_names_the_loss_and_says_it_is_incomplete():
    log = LogBuilder()
    log.ident(2)
    log.t = 0.01
    log.upload(9, 5, create("a1", "a1") + [append("root", "a1", 3)])  # root and its 3 children predate the log
    log.batch(6, 9)
    log.t = 0.1
    log.download(7, 9, 3, [clear("root"), append("root", "c1", 0)], made_at=0.05)
    result = replay_log(parse_log_text(log.text()))
    assert result.orphaned == ["a1"]
    assert any("Node[root] was created before the log starts" in r for r in result.inconclusive)
    assert any("held 3 element(s) before the log starts" in r for r in result.inconclusive)
    assert "(based on an unknown server version" in result.losses[0].sentence()  # nothing to infer it from


def test_nothing_lost_but_history_missing_is_inconclusive(tmp_path):
    log = LogBuilder()
    log.t = 0.01
    log.upload(9, 5, create("a1", "a1") + [append("root", "a1", 3)])
    log.batch(6, 9)
    result = replay_log(parse_log_text(log.text()))
    assert result.verdict == "inconclusive" and result.lost == []
    analysis = findings.analyse(recording.load_run(result.write_run(tmp_path / "run")))
    assert analysis.verdict.outcome == "inconclusive"
    assert "created before the log starts" in analysis.verdict.inconclusive_reason


def test_a_clean_log_is_clean():
    log = LogBuilder()
    log.t = 0.01
    log.upload(2, 0, create("root", "root") + create("a1", "a1") + [append("root", "a1", 0)])
    log.batch(1, 2)
    result = replay_log(parse_log_text(log.text()))
    assert result.verdict == "clean" and result.root_children() == ["a1"]
    assert result.summary_lines() == ["No appended object left Node[root].children: 1 appends replayed, 1 objects "
                                      "in the list at the end."]


def test_what_the_kits_format_cannot_express_is_reported_and_never_dropped_in_silence():
    t = translate([
        CreateObject("Tag", "t1"),
        ArrayMove("Node", "root", "children", (0,), 1, 2),
        SetInsert("Node", "root", "labels", (), Payload("String", "x")),
        Update("Node", "root", "when", (), Payload("Timestamp", None)),
        Update("Node", "n1", "parent", (), Payload("Link", Link("Node", "root"))),
        CreateObject("Node", 300),
    ])
    assert t.instructions == [{"op": "Update", "table": "Node", "object": "n1", "field": "parent", "value": "root",
                               "is_default": False}, {"op": "CreateObject", "table": "Node", "object": "300"}]
    reasons = {u.instruction: (u.reason, u.touches_list) for u in t.untranslatable}
    assert reasons['CreateObject Tag["t1"]'][1] is False and "one table" in reasons['CreateObject Tag["t1"]'][0]
    assert reasons['ArrayMove Node["root"].children[0]'] == ("ArrayMove has no equivalent in the kit's format", True)
    assert reasons['SetInsert Node["root"].labels'][1] is False
    assert "Timestamp" in reasons['Update Node["root"].when'][0]


def test_an_array_move_in_the_list_makes_the_replay_inconclusive():
    log = report_scenario()
    log.t = 0.4
    log.download(7, 8, 3, [ArrayMove("Node", "root", "children", (0,), 1, 4)], made_at=0.35)
    result = replay_log(parse_log_text(log.text()))
    assert any("ArrayMove" in r and "cannot be trusted" in r for r in result.inconclusive)
    assert result.orphaned == ["a1", "a2", "a3"]  # the loss is still named
    listed = result.as_dict()["untranslatable"]
    assert listed and listed[0]["instruction"] == 'ArrayMove Node["root"].children[0]'


def _recorded(source: str) -> list[dict]:
    import json

    return [r for r in map(json.loads, (DATA / "changesets.jsonl").read_text().splitlines()) if r["source"] == source]


def test_a_debug_build_log_with_parsed_printouts_replays_the_same():
    """Debug builds log `Changeset (parsed):` and realm-core's rendering after each changeset line
    (FORMAT_NOTES: the *.debug_full.log files); those lines are skipped, the answer is the same."""
    printed = {r["header_line_no"]: r["decoded_text"] for r in _recorded("device(A)")}
    lines = DEVICE_LOG.read_text().splitlines()
    out = []
    for number, line in enumerate(lines, 1):
        out.append(line)
        if number - 1 in printed:  # the changeset line after a header
            stamp = line.split(" ", 2)[:2]
            out.append(f"{stamp[0]} trace: Connection[1]: Session[1]: Changeset (parsed):")
            out += printed[number - 1].splitlines() + [""]
    result = replay_log(parse_log_text("\n".join(out)))
    assert result.losses[0].sentence() == replay(DEVICE_LOG).losses[0].sentence()
    assert any("debug-build 'Changeset (parsed):' output" in s for s in result.log.skipped_lines())


def test_the_clearing_clients_recorded_changesets_name_the_same_objects():
    """Client B's changesets as realm-core logged them (headers and bytes from changesets.jsonl):
    B's own Clear, not yet uploaded, discards A's appends when B integrates them."""
    lines = []
    for r in sorted(_recorded("reimport(B)"), key=lambda r: r["header_line_no"]):
        lines.append(r["header"])
        stamp = r["header"].split(" ")[0]
        where = "Connection[1]: Session[2]: " if r["direction"] == "upload" else "Connection[1]: "
        lines.append(f"{stamp} trace: {where}Changeset: {r['hex']}")
    result = replay_log(parse_log_text("\n".join(lines)))
    assert result.orphaned == ["a1", "a2", "a3"]
    (loss,) = result.losses
    assert (loss.outcome, loss.rule, loss.at) == ("never-entered", "clear-vs-array-insert", "device")
    assert "(client version 4, based on server version 2)" in loss.sentence()
    assert result.root_children() == ["c1", "c2", "c3", "p1"]  # final_states.json's final_B
