"""The device's view against Atlas's, in one sentence computed from the two `Info`s.

Notebook 02 prints this after Add to root and after Wait instead of asserting in prose what
Atlas shows: in real time whether Atlas has the new node a moment after the click depends on
how soon the click follows the write (upload and translation take about 0.15 s), so only the
observed counts may say it.
"""

from __future__ import annotations

from repro_kit._session import Info

__all__ = ["compare_views"]


def _docs(n: int) -> str:
    return f"{n} node document{'' if n == 1 else 's'}"


def _children(n: int) -> str:
    return f"{n} child{'' if n == 1 else 'ren'} in the root"


def compare_views(device: Info, atlas: Info) -> str:
    """"Atlas agrees with the device: 2 node documents, 1 child in the root." when the counts
    match, else what each shows and which way they differ (Atlas behind the device: it has not
    seen the latest changes yet)."""
    same = (device.nodes_total, device.root_children) == (atlas.nodes_total, atlas.root_children)
    if same:
        return f"Atlas agrees with the device: {_docs(atlas.nodes_total)}, {_children(atlas.root_children)}."
    shows = (f"Atlas shows {_docs(atlas.nodes_total)} and {_children(atlas.root_children)}, the device "
             f"{device.nodes_total} node{'' if device.nodes_total == 1 else 's'} and "
             f"{_children(device.root_children)}")
    if atlas.nodes_total <= device.nodes_total and atlas.root_children <= device.root_children:
        return f"Atlas has not seen the device's latest changes yet: {shows}."
    return f"Atlas and the device disagree: {shows}."
