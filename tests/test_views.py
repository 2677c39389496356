"""The device's view against Atlas's in one sentence, from the counts each shows (notebook 02)."""

from __future__ import annotations

from repro_kit._session import Info
from repro_kit.client import connect
from repro_kit.views import compare_views


def info(nodes: int, children: int) -> Info:
    return Info(user_id="u", root_id="r", nodes_total=nodes, root_children=children)


def test_agreement_lag_and_disagreement_each_have_their_sentence():
    assert compare_views(info(2, 1), info(2, 1)) == "Atlas agrees with the device: 2 node documents, 1 child in the root."
    assert compare_views(info(2, 1), info(1, 0)) == (
        "Atlas has not seen the device's latest changes yet: Atlas shows 1 node document and 0 children in the "
        "root, the device 2 nodes and 1 child in the root.")
    assert compare_views(info(1, 0), info(2, 1)).startswith("Atlas and the device disagree: Atlas shows 2 node documents")


def test_what_the_emulator_shows_a_moment_after_a_write_and_after_the_translator_caught_up():
    s = connect(seed=0)
    s.add_to_root("hello")
    assert compare_views(s.info(), s.atlas.info()).startswith("Atlas has not seen the device's latest changes yet")
    s.wait(2)
    assert compare_views(s.info(), s.atlas.info()) == \
        "Atlas agrees with the device: 2 node documents, 1 child in the root."
