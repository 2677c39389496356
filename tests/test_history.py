"""The history stream: one listener hears every op, nemesis record, event and trace record of a
session, in the order they happen, after the views' current state."""

import threading

import pytest

from repro_kit._history import Event, Nemesis, Notification, Op, Stream, Trace, events_of, notification
from repro_kit.client import connect


def lines(records, kind=Event):
    return [r for r in records if isinstance(r, kind)]


def test_baseline_then_both_views_as_they_change():
    s = connect(seed=1, prefill=2)
    records = []
    unsubscribe = s.history(records.append)
    base = lines(records)
    root = s.info().root_id
    for obs in ("device", "atlas"):
        kinds = [e.kind for e in base if e.observer == obs]
        assert kinds.count("doc_insert") == 3 and kinds.count("enter") == 2 and kinds[-1] == "counts"
        assert all(e.fields.get("node_id") != root for e in base if e.kind == "enter")
    node = s.add_to_root("x")
    s.wait(1)
    mine = [e for e in lines(records) if e.fields.get("node_id") == node]
    assert [(e.observer, e.kind) for e in mine] == [
        ("device", "doc_insert"), ("device", "enter"), ("atlas", "doc_insert"), ("atlas", "enter")]
    assert mine[2].time > mine[0].time  # Atlas sees it after upload + translation
    unsubscribe()
    count = len(records)
    s.add_to_root("y")
    s.wait(1)
    assert len(records) == count  # unsubscribed: nothing more heard


def test_an_add_is_invoked_then_acknowledged_and_the_trace_shows_its_changeset():
    s = connect(seed=2)
    records = []
    s.history(records.append)
    node = s.add_to_root("x")
    assert lines(records, Op) == [Op(s.now(), 0, "invoke", "add", node)]  # the ack has not come yet
    s.wait(1)
    invoke, ok = lines(records, Op)
    assert (ok.type, ok.value, ok.process) == ("ok", node, 0) and ok.time > invoke.time
    integrated = [t for t in lines(records, Trace) if t.fields["kind"] == "integrate"]
    assert any(i["object"] == node for t in integrated for i in t.fields["instructions"])
    assert all(t.time <= ok.time for t in integrated)


def test_the_deploy_and_the_control_plane_are_nemesis_records_in_causal_order():
    s = connect(seed=1, resync_delay_s=10)
    records = []
    s.history(records.append)
    s.add_to_root("a")
    s.wait(1)
    s.deploy_schema_change("tags", "array<string>")
    s.add_to_root("b")
    s.wait(20)
    nemesis = [(r.type, r.f) for r in lines(records, Nemesis)]
    assert nemesis == [("invoke", "deploy"), ("info", "halt"), ("ok", "deploy"), ("info", "resume")]
    batches = [e for e in lines(records) if e.kind == "batch"]
    assert [e.fields["batch"] for e in batches] == [2] and batches[0].observer == "device"
    leaves = [e for e in lines(records) if e.kind == "leave"]
    assert [e.observer for e in leaves] == ["device"] and leaves[0].time == batches[0].time
    resume = next(r for r in lines(records, Nemesis) if r.f == "resume")
    assert resume.time <= batches[0].time  # the last batch is integrated, then downloaded


def test_a_listener_that_comes_during_a_halt_hears_it_first():
    s = connect(seed=1, resync_delay_s=30)
    s.deploy_schema_change("tags", "array<string>")
    s.wait(5)
    records = []
    s.history(records.append)
    halt = lines(records, Nemesis)
    assert [(r.type, r.f) for r in halt] == [("info", "halt")]
    assert halt[0].value["before_run"] is True and halt[0].value["halted_for_s"] == pytest.approx(5.0)


def test_a_second_deploy_during_the_wait_gets_its_own_full_halt():
    """The panel's stale halt: a deploy while an earlier one's re-import still waits must not be
    cut short by the earlier timer; the re-import comes a full delay after the new deploy."""
    s = connect(seed=1, resync_delay_s=30)
    records = []
    s.history(records.append)
    s.deploy_schema_change("tags", "array<string>")
    s.wait(20)
    second = s.now()
    s.deploy_schema_change("tags_2", "array<string>")
    s.wait(15)
    assert not [r for r in lines(records, Nemesis) if r.f == "resume"]  # the first timer did not end it
    assert s.pending_halt() == (pytest.approx(second), pytest.approx(second + 30))
    s.wait(30)
    resumes = [r for r in lines(records, Nemesis) if r.f == "resume"]
    assert len(resumes) == 1 and resumes[0].time >= second + 30
    assert s.pending_halt() is None


def test_the_one_diff_of_two_view_states():
    note = notification(3.0, "atlas", (["a", "b", "b"], {"r", "a", "b"}), (["b", "c", "c"], {"r", "b", "c"}), batch=2)
    assert note == Notification(3.0, "atlas", 3, 3, entered=("c",), left=("a",), inserted=("c",), deleted=("a",),
                                batch=2)
    kinds = [e.kind for e in events_of(note)]
    assert kinds == ["doc_insert", "enter", "leave", "doc_delete", "batch", "counts"]


def _diff_by_sets(before, after):
    """The diff as sets define it (what `notification` must equal, however it computes it)."""
    (old_kids, old_docs), (new_kids, new_docs) = before, after
    old_set, new_set, old_docs, new_docs = set(old_kids), set(new_kids), set(old_docs), set(new_docs)
    return (tuple(dict.fromkeys(c for c in new_kids if c not in old_set)),
            tuple(dict.fromkeys(c for c in old_kids if c not in new_set)),
            tuple(sorted(new_docs - old_docs)), tuple(sorted(old_docs - new_docs)), len(new_kids), len(new_docs))


def test_the_diff_is_the_same_for_an_append_a_long_tail_and_any_other_change():
    import random

    rng = random.Random(5)
    ids = [f"n{i}" for i in range(40)]
    cases = [(["a", "b"], ["a", "b", "c"]), (["a", "b"], ["a", "b", "a", "c", "c"]), (["a"], ["a"]),
             ([], ["a", "a"]), (["a", "b"], ["a"]), (["a", "b"], ["b", "a"]), (ids[:5], ids[:5] + ids[30:40]),
             (ids[:5], ids[:4] + ids[:3])]
    for _ in range(300):  # appends of 0-12 (old or new ids), and arbitrary lists
        old = rng.choices(ids, k=rng.randrange(0, 15))
        cases.append((old, old + rng.choices(ids, k=rng.randrange(0, 13))))
        cases.append((old, rng.choices(ids, k=rng.randrange(0, 15))))
    for old_kids, new_kids in cases:
        old_docs, new_docs = set(old_kids) | {"root"}, set(new_kids) | {"root", "x"}
        for before, after in [((old_kids, old_docs), (new_kids, new_docs)),  # lists and sets, as a device has them
                              ((tuple(old_kids), list(old_docs)), (new_kids, sorted(new_docs)))]:  # other sequences
            note = notification(1.0, "device", before, after)
            assert (note.entered, note.left, note.inserted, note.deleted, note.root_children,
                    note.nodes_total) == _diff_by_sets(before, after), (old_kids, new_kids)


def test_a_stream_is_safe_to_subscribe_to_from_several_threads():
    stream = Stream()
    heard: list[list[int]] = [[] for _ in range(8)]
    stops = []

    def join(k):
        stops.append(stream.subscribe(heard[k].append))

    threads = [threading.Thread(target=join, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stream.emit(1)
    assert all(h == [1] for h in heard)
    for stop in stops:
        stop()
    stream.emit(2)
    assert all(h == [1] for h in heard) and not stream
    with pytest.raises(ValueError, match="listener"):
        stream.subscribe(None)


def test_a_batch_listener_hears_each_notifications_events_together_and_the_same_records():
    """`EmulatedWorld.history(batch=...)` (a fleet's recorder): a device notification's events in one
    call, in order; everything else one by one; together exactly what a plain listener hears."""
    import random

    from repro_kit.emulator.params import EmulatorParams
    from repro_kit.emulator.session import EmulatedSession, EmulatedWorld

    world = EmulatedWorld("production", "replace", rng=random.Random(3), params=EmulatorParams(resync_delay_s=5.0))
    world.tag_users = True  # (a fleet's: each event says its user)
    sessions = [EmulatedSession.join(world, f"user-{k}", k) for k in range(2)]
    for session in sessions:
        session.device.create_tree(["a", "b"])
    world.settle(step_s=1.0)
    plain, calls = [], []
    world.history(plain.append, atlas=False, trace=False, baseline=False)
    world.history(lambda r: calls.append([r]), atlas=False, trace=False, baseline=False, batch=calls.append)
    for k in range(3):
        for session in sessions:
            world.write(session.user, session.device, f"note {k}")
        world.wait_until(world.now() + 1.0)
    world.deploy("tags", "array<string>")
    world.write(sessions[0].user, sessions[0].device, "during the halt")
    world.settle(step_s=1.0)
    assert [r for call in calls for r in call] == plain
    notes = [call for call in calls if isinstance(call[0], Event)]
    assert notes and all(call[-1].kind == "counts" and len({(e.time, e.fields["user"]) for e in call}) == 1
                         for call in notes)
    assert any(len(call) > 1 for call in notes) and any(e.kind == "leave" for call in notes for e in call)
    with pytest.raises(ValueError, match="batch"):
        world.history(plain.append, batch="not a function")
