"""A replay as a table and a figure, for notebook 06 (the logic lives here, the notebook calls it).

Why separate from the replay: pandas and matplotlib are for showing a replay, not for doing one,
so `repro-kit replay` never loads matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ._instructions import Link, Payload

if TYPE_CHECKING:
    from ._replay import Replay

__all__ = ["changesets_table", "list_figure"]

_PRESENT, _LOST, _AFTER = "#2e9e4f", "#d7301f", "#e0e0e0"


def changesets_table(replay: Replay) -> pd.DataFrame:
    """One row per changeset the device integrated, in integration order: who made it, its
    versions, when, and its instructions in realm-core's words."""
    rows = []
    for step in replay.steps:
        rows.append({
            "log line": step.line,
            "direction": "upload" if step.kind == "local" else "download",
            "time (s)": round(step.time, 3),
            "client version": step.client_version,
            "server version": step.server_version,
            "based on": step.base_version,
            "origin_file_ident": step.origin,
            "instructions": "; ".join(_brief(i) for i in step.realm),
            "left out": len(step.untranslatable),
        })
    return pd.DataFrame(rows).astype({"server version": "Int64", "based on": "Int64"})


def _brief(instr: Any) -> str:
    """An instruction in a table cell: `ArrayInsert root.children[3] = a1`, `Update a1.text = 'x'`."""
    op = instr.op
    if op in ("AddTable", "EraseTable"):
        return f"{op} {instr.table}"
    if op in ("AddColumn", "EraseColumn"):
        return f"{op} {instr.table}.{instr.field}"
    pk = instr.object
    if op in ("CreateObject", "EraseObject"):
        return f"{op} {pk}"
    target = f"{pk}.{instr.field}" + "".join(f"[{e}]" if isinstance(e, int) else f".{e}" for e in instr.path)
    value = getattr(instr, "value", None)
    if isinstance(value, Payload):
        shown = value.value.key if isinstance(value.value, Link) else value.value
        return f"{op} {target} = {shown!r}" if isinstance(shown, str) and op == "Update" else f"{op} {target} = {shown}"
    return f"{op} {target}"


def _step_label(step: Any) -> str:
    if step.kind == "local":
        return f"upload\ncv {step.client_version}"
    return f"download\nv{step.server_version} from {step.origin}"


def list_figure(replay: Replay) -> Figure:
    """The root's list as the device saw it, changeset by changeset: a row per object that was ever
    in it, green while it was, red once an object that had been appended is gone from it."""
    history = replay.list_history
    members: list[str] = []
    for _step, children in history:
        members += [c for c in children if c not in members]
    members += [pk for pk in replay.lost if pk not in members]
    fig = Figure(figsize=(11, 1.6 + 0.35 * max(1, len(members))), layout="constrained")
    ax = fig.subplots()
    lost = set(replay.lost)
    for row, pk in enumerate(members):
        for col, colour in _member_cells(pk, history, pk in lost):
            ax.barh(row, 1, left=col, color=colour, edgecolor="white", height=0.8)
    _mark_losses(ax, replay, history)
    ax.set_yticks(range(len(members)), members)
    ax.set_ylim(len(members) - 0.4, -1.2)
    ax.set_xticks([n + 0.5 for n in range(len(history))], [_step_label(s) for s, _c in history], fontsize=7)
    ax.set_xlim(0, max(1, len(history)))
    name = f"Node[{replay.root_id}].children" if replay.root_id else "the list"
    ax.set_title(f"{name} as the device saw it, after each changeset it integrated", loc="left", fontsize=10)
    ax.legend(handles=[Patch(color=_PRESENT, label="in the list"), Patch(color=_LOST, label="appended, then gone")],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return fig


def _member_cells(pk: str, history: Any, lost: bool) -> list[tuple[int, str]]:
    """(column, colour) of one object's row: present, then gone (red when it was lost)."""
    cells = []
    seen = False
    for col, (_step, children) in enumerate(history):
        if pk in children:
            seen = True
            cells.append((col, _PRESENT))
        elif seen or (lost and col >= len(history) - 1):
            cells.append((col, _LOST if lost else _AFTER))
    return cells


def _mark_losses(ax: Any, replay: Replay, history: Any) -> None:
    """A dashed line at each changeset that discarded an insert, labelled with the rule."""
    for loss in replay.losses:
        line = (loss.step or {}).get("line")
        col = next((n for n, (step, _c) in enumerate(history) if step.line == line), None)
        if col is not None:
            ax.axvline(col, color=_LOST, lw=1.5, ls="--")
            ax.text(col + 0.05, -0.9, f"{loss.instruction}, rule {loss.rule or 'not named'}", color=_LOST,
                    fontsize=8, va="bottom")
