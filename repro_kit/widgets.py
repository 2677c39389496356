"""The original tool as an ipywidgets control panel, for notebooks: a thin front end over `Actions`.

Buttons call the same operations as the menu (`repro_kit.actions`) and show the lines they
return; the lines that come on their own (listener lines, a Run test's writes, its verdict)
arrive from the model's threads. Every click runs off the kernel's thread, so a real-time
Run test goes on while the user deploys by hand, prints info or stops it.

What a person watching for three minutes needs is in one screen (a 1400x1000 window): the
status (both views' counts, the clock, what the session waits for with a countdown,
"analysing…"), the verdict in a result box beside it, the buttons, a live chart (redrawn every
second while a run goes; seconds since Run test started) and the log. The log keeps the whole
history and scrolls: it follows new lines while its view is at the bottom and stays put when the
user scrolled up (a column-reverse box: its scroll origin is its newest line, so at the bottom
the view follows, and scrolled up it stays that far from the bottom instead of jumping to it).
Export writes the run's report (report.md, report.html, the timeline and sequence figures) and
the live chart (PNG and SVG) into the run directory and shows them as links JupyterLab opens,
with the run directory as a link that opens it in Lab's file browser. An action's exception
shows in the panel as one line: an error is never lost in a thread.
"""

from __future__ import annotations

import datetime as _dt
import html
import io
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as w
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from repro_kit import report
from repro_kit._session import Session
from repro_kit.actions import COMMANDS, Actions, countdown, error_line, shown_path
from repro_kit.client import connect
from repro_kit.plots import BATCH_COLOR, WINDOW_COLOR

__all__ = ["ControlPanel", "live_chart_png", "lab_location"]

#: Height of the log's scrolling box: its newest lines stay in view with the rest of the panel.
LOG_HEIGHT = "230px"
#: Seconds between redraws of the live chart while a run goes (at least once a second).
CHART_PERIOD_S = 1.0
#: What Export writes beside the report: the live chart.
LIVE_CHART = "live_chart"
#: The report's files Export links to, in the order shown.
EXPORTED = ("report.md", "report.html", "timeline.png", "timeline.svg", "sequence.png", "sequence.svg",
            f"{LIVE_CHART}.png", f"{LIVE_CHART}.svg")

#: The live chart's line styles: a view by its dash, a count by its colour.
_VIEW_STYLES = {"device": "-", "atlas": "--"}
_COUNT_COLORS = {"root's children": "#1f6fb4", "total nodes": "#555555"}
#: The marks drawn as lines: (colour, style, width, legend name).
_MARK_LINES = {"batch": (BATCH_COLOR, ":", 1.2, "re-import batch"), "deploy": ("#b8860b", "--", 0.9, "deploy")}


def live_chart_png(series: list[tuple[float, str, int, int]], marks: list[tuple[float, str, Any]], now: float,
                   start: float | None = None, title: str = "", fmt: str = "png") -> bytes:
    """The views' counts over time (root's children and total nodes, device and Atlas, the halt
    shaded and re-import batches marked) as PNG or SVG bytes: what the panel shows during a run.

    `start`: the session time the Run test started: the axis is then seconds since it (the
    user's one clock); without it, session time, labelled so."""
    lo = 0.0 if start is None else start  # the axis' zero, and where it starts
    fig = Figure(figsize=(8.5, 2.3), dpi=90, layout="constrained")
    ax = fig.subplots()
    end = max(now, lo + 1.0)
    _draw_counts(ax, series, lo, end)
    _draw_marks(ax, marks, lo, end)
    ax.set_xlim(0.0, end - lo)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds (session time)" if start is None else "seconds since Run test started")
    ax.set_title(title, loc="left", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt)
    return buffer.getvalue()


def _draw_counts(ax: Axes, series: list[tuple[float, str, int, int]], lo: float, end: float) -> None:
    """Each view's two counts as steps from `lo` (the count it had then carried to it) to `end`."""
    for observer in ("device", "atlas"):
        points = [(t, rc, nt) for t, o, rc, nt in series if o == observer and t >= lo - 1e-9]
        before = [(t, rc, nt) for t, o, rc, nt in series if o == observer and t < lo]
        if before:
            points.insert(0, (lo, before[-1][1], before[-1][2]))
        if not points:
            continue
        xs = [p[0] - lo for p in points] + [end - lo]
        for col, name in ((1, "root's children"), (2, "total nodes")):
            ys = [p[col] for p in points]
            ax.step(xs, [*ys, ys[-1]], where="post", color=_COUNT_COLORS[name], ls=_VIEW_STYLES[observer], lw=1.5,
                    label=f"{observer}: {name}")


def _draw_marks(ax: Axes, marks: list[tuple[float, str, Any]], lo: float, end: float) -> None:
    """The control plane's marks from `lo` on: the halt shaded (a later deploy's halt continues the
    same one; one still going is shaded to `end`), re-import batches and deploys as lines; each
    kind named once in the legend."""
    label = _FirstLabel()
    halt_at: float | None = None
    for t, kind, _value in marks:
        if kind == "halt":
            halt_at = t if halt_at is None else halt_at
        elif kind == "resume" and halt_at is not None:
            if t >= lo:
                _shade_halt(ax, halt_at, t, lo, label)
            halt_at = None
        elif t >= lo and kind in _MARK_LINES:
            color, style, width, name = _MARK_LINES[kind]
            ax.axvline(t - lo, color=color, ls=style, lw=width, label=label(name))
    if halt_at is not None:
        _shade_halt(ax, halt_at, end, lo, label)


def _shade_halt(ax: Axes, since: float, until: float, lo: float, label: Callable[[str], str | None]) -> None:
    ax.axvspan(max(since, lo) - lo, until - lo, color=WINDOW_COLOR, alpha=0.35, lw=0, label=label("translation halted"))


class _FirstLabel:
    """A legend name the first time it is asked for, None after (one legend entry a kind)."""

    def __init__(self) -> None:
        self.given: set[str] = set()

    def __call__(self, name: str) -> str | None:
        if name in self.given:
            return None
        self.given.add(name)
        return name


def lab_location(path: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
                 session_path: str | None = None) -> tuple[str, str] | None:
    """Where JupyterLab sees `path`: (href relative to the notebook, path from Lab's root), or
    None when it lies outside Lab's root.

    A kernel started by JupyterLab runs in its notebook's folder and is told the notebook's path
    from Lab's root ($JPY_SESSION_NAME), which gives the root; without it, the notebook's folder
    is taken as the root. A folder linked into the root (a symbolic link, as `repro-kit
    notebooks` makes for runs/) counts as inside it."""
    here = Path(cwd if cwd is not None else os.getcwd()).absolute()
    session = session_path if session_path is not None else os.environ.get("JPY_SESSION_NAME", "")
    root = here
    if session and not Path(session).is_absolute():
        for _part in Path(session).parent.parts:
            root = root.parent
    target = Path(path).absolute()
    found: str | None = None
    for base, candidate in ((root, target), (root.resolve(), target.resolve())):
        try:
            found = candidate.relative_to(base).as_posix()
            break
        except ValueError:
            continue
    if found is None:
        resolved = target.resolve()
        try:
            links = [p for p in root.iterdir() if p.is_symlink()]
        except OSError:
            links = []
        for link in links:
            try:
                found = (Path(link.name) / resolved.relative_to(link.resolve())).as_posix()
                break
            except (ValueError, OSError):
                continue
    if found is None:
        return None
    href = os.path.relpath(root / found, here).replace(os.sep, "/")
    return href, found


def _button(label: str, handler: Callable[[], Any], style: str = "", tip: str = "") -> w.Button:
    """A button that calls `handler()` when clicked."""
    b = w.Button(description=label, button_style=style, tooltip=tip or label, layout=w.Layout(width="auto"))
    b.on_click(lambda _b: handler())
    return b


class ControlPanel:
    """Buttons for Add to root, Run test, Print nodes, Print info, Reset, Deploy schema change,
    Wait, Stop and Export, over `Actions`.

    `session` defaults to a new real-time emulator session (the menu's default too; pass
    `rk.connect(realtime=False)` for fast virtual-time experiments). Run test records to
    `runs_dir` (default `recording.runs_root()`, shared with the CLI and notebook 03). Its
    automatic deploy is off unless "deploy at" is ticked: deploy by hand while it runs.
    Display it with `display(panel)`; `wait_idle()` blocks until clicks and the run end.
    """

    def __init__(self, session: Session | None = None, runs_dir: str | Path | None = None) -> None:
        if session is None:
            session = connect(realtime=True)
        self.session = session
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.exported: dict[str, Path] = {}
        self._lines_lock = threading.Lock()
        self._blocks: list[tuple[w.HTML, list[str]]] = []
        self._threads: list[threading.Thread] = []
        self._build()
        self.actions = Actions(session, emit=self.say, runs_dir=runs_dir)
        self.runs_dir = self.actions.runs_dir
        self._closed = threading.Event()
        self._chart_drawn_at = -1.0
        self._chart_series_len = -1
        self._chart_title = ""
        self._ticker = threading.Thread(target=self._tick, name="repro_kit panel: live view", daemon=True)
        self._ticker.start()
        self._refresh()

    # -- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        self._build_buttons()
        self._build_inputs()
        self._build_outputs()
        self._build_log()
        self.buttons = [self.add_button, self.run_button, self.nodes_button, self.info_button, self.reset_button,
                        self.deploy_button, self.wait_button, self.stop_button, self.export_button]
        self.widget = self._layout()

    def _build_buttons(self) -> None:
        """A button per command of the table the menu reads too (its label and tip, its handler
        here), Export, and the Reset's Confirm/Cancel pair (hidden until Reset)."""
        handlers = {"add_to_root": self.add_to_root, "run_test": self.run_test, "print_nodes": self.print_nodes,
                    "print_info": self.print_info, "reset": self.ask_reset, "deploy": self.deploy, "wait": self.wait,
                    "stop": self.stop}
        styles = {"run_test": "primary", "reset": "danger", "deploy": "warning", "stop": "danger"}
        made = {c.name: _button(c.label, handlers[c.name], styles.get(c.name, ""), c.tip) for c in COMMANDS}
        self.add_button, self.run_button = made["add_to_root"], made["run_test"]
        self.nodes_button, self.info_button = made["print_nodes"], made["print_info"]
        self.reset_button, self.deploy_button = made["reset"], made["deploy"]
        self.wait_button, self.stop_button = made["wait"], made["stop"]
        self.export_button = _button("Export", self.export, "info",
                                     "Write the run's report, timeline, sequence diagram and the live chart into its "
                                     "run directory, and link them")
        self.stop_button.disabled = True

        self.confirm_label = w.HTML()
        self.confirm_button = _button("Confirm reset", self.confirm_reset, "danger")
        self.cancel_button = _button("Cancel", self.cancel_reset)
        self.confirm_box = w.HBox([self.confirm_label, self.confirm_button, self.cancel_button],
                                  layout=w.Layout(display="none"))

    def _build_inputs(self) -> None:
        """The Run test's, the deploy's and the Wait's inputs, with the menu's defaults."""
        narrow = w.Layout(width="150px")
        style = {"description_width": "initial"}
        self.writes = w.BoundedIntText(value=20, min=1, max=1_000_000, description="writes", layout=narrow, style=style)
        self.interval = w.BoundedFloatText(value=1.0, min=0.001, max=86_400, description="interval s", layout=narrow,
                                           style=style)
        self.settle = w.BoundedFloatText(value=300.0, min=0, max=2_592_000, description="settle s", layout=narrow,
                                         style=style)
        self.deploy_in_run = w.Checkbox(value=False, description="deploy at", indent=False,
                                        layout=w.Layout(width="90px"))
        self.deploy_at = w.BoundedFloatText(value=5.5, min=0, max=2_592_000, description="s", layout=narrow,
                                            style=style)
        self.field = w.Text(value="", placeholder="tags (next free)", description="field",
                            layout=w.Layout(width="190px"), style=style)
        self.bson_type = w.Text(value="array<string>", description="BSON type", layout=w.Layout(width="210px"),
                                style=style)
        self.wait_s = w.BoundedFloatText(value=10.0, min=0, max=86_400, description="seconds", layout=narrow,
                                         style=style)

    def _build_outputs(self) -> None:
        """What the panel shows: the run's progress, status, result box, Export's links, the last error
        and the live chart (classed for the browser test and the notebook's styles)."""
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="run",
                                        layout=w.Layout(width="320px"), style={"description_width": "initial"})
        self.progress_label = w.Label("no run yet")
        self.status_html = w.HTML(layout=w.Layout(flex="1 1 0", min_width="0"))
        self.status_html.add_class("rk-status")
        self.result_html = w.HTML(layout=w.Layout(width="100%"))
        self.result_html.add_class("rk-result")
        self.export_out = w.Output(layout=w.Layout(width="100%"))
        self.export_out.add_class("rk-export")
        self.error_html = w.HTML()
        self.error_html.add_class("rk-error")
        self.chart = w.Image(format="png", layout=w.Layout(max_width="780px"))
        self.chart.add_class("rk-chart")

    def _build_log(self) -> None:
        """The log: blocks of lines appended to a column in a column-reverse scroller. The scroller's
        origin is its bottom, so at the bottom it follows new lines; scrolled up, the browser's
        scroll anchoring keeps the lines in view where they are (a block, once full, never changes)."""
        self.log_column = w.VBox([], layout=w.Layout(flex="0 0 auto", width="100%"))
        self.log_box = w.Box([self.log_column], layout=w.Layout(
            display="flex", flex_flow="column-reverse", overflow="auto", height=LOG_HEIGHT, width="100%",
            border="1px solid #ccc", padding="2px 6px"))
        self.log_box.add_class("rk-log")

    def _layout(self) -> w.VBox:
        """One screen: title, status beside the result box, the buttons and inputs, the error, the
        chart and the log."""
        # No scroll anchoring in the log: the browser would otherwise hold whichever line it chose
        # as its anchor (the oldest, once the log has been scrolled to its top) and stop following;
        # the column-reverse box alone keeps the view at the newest line while it is at the bottom.
        title = w.HTML("<style>.rk-log { overflow-anchor: none; }</style>"
                       f"<b>repro_kit control panel</b> &middot; {html.escape(self.session.backend)}, "
                       f"{html.escape(str(getattr(self.session, 'mode', '')))} mode, "
                       f"{'real time' if self.session.realtime else 'virtual time'}; times are seconds since "
                       f"the latest Run test started")
        right = w.VBox([self.result_html, self.export_out], layout=w.Layout(flex="1 1 0", min_width="0"))
        return w.VBox([
            title,
            w.HBox([self.status_html, right], layout=w.Layout(width="100%", align_items="flex-start")),
            w.HBox([self.add_button, self.nodes_button, self.info_button, self.reset_button, self.deploy_button,
                    self.wait_button, self.export_button]),
            self.confirm_box,
            w.HBox([self.run_button, self.stop_button, self.writes, self.interval, self.settle, self.deploy_in_run,
                    self.deploy_at]),
            w.HBox([self.field, self.bson_type, self.wait_s, self.progress, self.progress_label]),
            self.error_html,
            self.chart,
            self.log_box,
        ])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- output ------------------------------------------------------------------------
    @staticmethod
    def _block_html(lines: list[str]) -> str:
        body = html.escape("\n".join(lines)).replace("\t", "&nbsp;&nbsp;&nbsp;&nbsp;")
        return f"<pre class='rk-lines' style='margin:0;white-space:pre-wrap;line-height:1.35'>{body}</pre>"

    def say(self, text: str) -> None:
        """Add lines to the panel's log (safe from any thread): the whole history stays in it."""
        new = str(text).rstrip("\n").split("\n")
        with self._lines_lock:
            self.lines.extend(new)
            # a new block for each say, never a block rewritten: the browser's scroll anchoring then
            # keeps a reader's place, and at the bottom the view follows (a block that grew in place
            # could pull the view up with it); one answer stays whole (Print nodes keeps its head line)
            block = w.HTML(self._block_html(new), layout=w.Layout(width="100%"))
            self._blocks.append((block, list(new)))
            self.log_column.children = (*self.log_column.children, block)

    def _error(self, action: str, exc: BaseException) -> None:
        line = error_line(action, exc)
        self.errors.append(line)
        self.say(line)
        self.error_html.value = f"<span style='color:#b00020'>{html.escape(line)}</span>"

    @property
    def text(self) -> str:
        """Every line the panel has shown, as plain text."""
        with self._lines_lock:
            return "\n".join(self.lines) + ("\n" if self.lines else "")

    # -- running clicks ------------------------------------------------------------------
    def _start(self, action: str, fn: Callable[[], list[str] | None]) -> bool:
        """Run `fn` off the kernel's thread; show its lines, or its error as one line."""
        self.error_html.value = ""

        def work() -> None:
            try:
                lines = fn() or []
                if lines:
                    self.say("\n".join(lines))  # one answer, one block: Print nodes keeps its head line
            except Exception as exc:  # shown in the panel: a thread's exception must not vanish
                self._error(action, exc)
            finally:
                self._refresh()

        thread = threading.Thread(target=work, name=f"repro_kit panel: {action}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return True

    @property
    def busy(self) -> bool:
        return any(t.is_alive() for t in self._threads) or self.actions.running

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every click's action and any running test have ended; True when idle."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.actions.wait_for_run(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for thread in list(self._threads):  # a run's end may have started nothing new; be sure
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._refresh()
        return not self.busy

    # -- the live view -----------------------------------------------------------------------
    def _tick(self) -> None:
        while not self._closed.wait(CHART_PERIOD_S / 2):
            try:
                self._refresh(chart_only=True)
            except Exception as exc:  # a redraw is cosmetic; say it once, keep going
                if not self.errors or not self.errors[-1].startswith("Live view"):
                    self._error("Live view", exc)

    def status_text(self) -> str:
        """The status line's words (what `status_html` shows, as plain text)."""
        a = self.actions
        series, _marks = a.snapshot()
        latest = {o: (rc, nt) for _t, o, rc, nt in series}
        parts = []
        for name, key in (("Device", "device"), ("Atlas", "atlas")):
            children, total = ("unknown" if v is None else v for v in latest.get(key, (None, None)))
            parts.append(f"{name}: root's children {children}, nodes {total}")
        differ = " (the views differ)" if latest.get("device") != latest.get("atlas") else ""
        lines = ["   ".join(parts) + differ, f"t = {a.clock_words()}"]
        waiting = a.waiting_for()
        if waiting:
            lines.append(f"Waiting: {waiting}")
        if a.analysing:
            lines.append("analysing…")
        return "\n".join(lines)

    def _status_html(self) -> str:
        counts, clock, *rest = self.status_text().split("\n")
        out = [f"<div style='font-weight:600'>{html.escape(counts)}</div>", f"<div>{html.escape(clock)}</div>"]
        for line in rest:
            color = "#8a4b00" if line.startswith("Waiting") else "#1f4e99"
            out.append(f"<div class='rk-{'waiting' if line.startswith('Waiting') else 'analysing'}' "
                       f"style='color:{color};font-weight:600'>{html.escape(line)}</div>")
        return "<div style='padding:2px 8px 2px 0'>" + "".join(out) + "</div>"

    def _result_html(self) -> str:
        a = self.actions
        box = "border:2px solid {c};border-radius:4px;padding:4px 8px;background:{bg}"
        if a.analysing:
            return (f"<div style='{box.format(c='#1f4e99', bg='#eef3fb')}'><b>Analysing…</b> the run has ended; "
                    f"its verdict follows.</div>")
        if a.starting:
            return (f"<div style='{box.format(c='#b06000', bg='#fff4e5')}'><b>Run test waits</b> for the earlier "
                    f"deploy's re-import (see Waiting), then starts; Stop cancels it.</div>")
        if a.running:
            return (f"<div style='{box.format(c='#999', bg='#f7f7f7')}'><b>Run test under way</b>: the verdict "
                    f"shows here when it ends (or when you Stop it).</div>")
        analysis = a.last_analysis
        if analysis is None:
            return (f"<div style='{box.format(c='#ccc', bg='#fafafa')}'>No verdict yet: press <b>Run test</b>, "
                    f"deploy by hand while it runs.</div>")
        outcome = analysis.verdict.outcome
        color, bg, word = {"lost": ("#b00020", "#fdecee", "LOSS"), "clean": ("#1b7f3b", "#eaf6ee", "NO LOSS")}.get(
            outcome, ("#b06000", "#fff4e5", "INCONCLUSIVE"))
        where = shown_path(a.last_run.path) if a.last_run is not None else ""
        return (f"<div style='{box.format(c=color, bg=bg)}'><b style='color:{color}'>{word}</b> "
                f"{html.escape(analysis.verdict.summary())}<div style='color:#555;font-size:90%'>Run directory: "
                f"<code>{html.escape(where)}</code> (Export links its files)</div></div>")

    def _refresh(self, chart_only: bool = False) -> None:
        """Bring the panel up to date with the session: buttons, progress, status, result, chart
        (`chart_only`: from the live view's ticker, which redraws the chart at most once a period)."""
        a = self.actions if hasattr(self, "actions") else None
        if a is None:
            return
        running = a.running
        self.run_button.disabled = running
        self.stop_button.disabled = not running or a.analysing
        self.reset_button.disabled = running
        self.export_button.disabled = a.analysing
        self._refresh_progress(a, running)
        status = self._status_html()
        if status != self.status_html.value:
            self.status_html.value = status
        result = self._result_html()
        if result != self.result_html.value:
            self.result_html.value = result
        self._refresh_chart(a, running, chart_only)

    def _refresh_progress(self, a: Actions, running: bool) -> None:
        """The run's progress bar and its words: elapsed and left, analysing, waiting for the
        re-import, or how the last run ended."""
        progress = a.progress()
        if progress is not None and not a.analysing:
            elapsed, total = progress
            self.progress.max = max(total, 1e-9)
            self.progress.value = elapsed
            self.progress.bar_style = "info"
            self.progress_label.value = (f"{elapsed:.0f} s elapsed, {max(total - elapsed, 0):.0f} s left "
                                         f"of {total:.0f} s")
        elif a.analysing:
            self.progress_label.value = "analysing…"
        elif a.starting:
            halt = a.halt
            left = f" (in {countdown(halt[1] - self.session.now())})" if halt is not None and halt[1] else ""
            self.progress_label.value = f"waiting for the re-import{left}, then the run starts"
        elif a.run_t0 is not None and not running:
            self._show_run_ended(a.last_run)

    def _show_run_ended(self, run: Any) -> None:
        """The progress bar after a run: finished (full), or stopped with its partial run kept."""
        stopped = run is not None and not run.meta.get("finished", True)
        self.progress.bar_style = "warning" if stopped else "success"
        self.progress_label.value = "stopped: partial run kept" if stopped else "finished"
        if not stopped:
            self.progress.value = self.progress.max

    def _refresh_chart(self, a: Actions, running: bool, chart_only: bool) -> None:
        """Redraw the live chart when something changed (always while a run goes), at most once a
        `CHART_PERIOD_S` from the ticker."""
        series, marks = a.snapshot()
        title = self.progress_label.value if running else "device (solid) and Atlas (dashed)"
        due = running or len(series) != self._chart_series_len or title != self._chart_title
        if due and (not chart_only or time.monotonic() - self._chart_drawn_at >= CHART_PERIOD_S):
            self._chart_title = title
            self.chart.value = live_chart_png(series, marks, self.session.now(), start=a.run_t0, title=title)
            self._chart_drawn_at = time.monotonic()
            self._chart_series_len = len(series)

    # -- the actions ---------------------------------------------------------------------
    def add_to_root(self) -> bool:
        return self._start("Add to root", self.actions.add_to_root)

    def print_nodes(self) -> bool:
        return self._start("Print nodes", self.actions.print_nodes)

    def print_info(self) -> bool:
        return self._start("Print info", self.actions.print_info)

    def wait(self) -> bool:
        seconds = float(self.wait_s.value)
        return self._start("Wait", lambda: self.actions.wait(seconds))

    def deploy(self) -> bool:
        field, bson_type = self.field.value.strip() or None, self.bson_type.value.strip() or None
        return self._start("Deploy schema change", lambda: self.actions.deploy(field, bson_type))

    def stop(self) -> bool:
        return self._start("Stop", self.actions.stop)

    def export(self) -> bool:
        return self._start("Export", self.export_now)

    def export_now(self) -> list[str]:
        """Write the latest run's report and the live chart into its run directory (a running
        test's: the chart now, its report at its end; before any run: the chart alone, into a
        folder of the runs root) and show them as links JupyterLab opens."""
        a = self.actions
        series, marks = a.snapshot()
        running_out = a.current_run_dir() if a.running else None
        if running_out is not None:
            target, analysis = running_out, None
        elif a.last_run is not None:
            target, analysis = Path(a.last_run.path), a.last_analysis
        else:
            stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
            target, analysis = Path(self.runs_dir) / f"live-chart-{stamp}", None
        target.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {}
        if analysis is not None:
            if not all((target / name).exists() for name in EXPORTED[:6]):
                report.write_report(analysis, target)
            files.update({name: target / name for name in EXPORTED[:6] if (target / name).exists()})
        title = f"device (solid) and Atlas (dashed), exported at {a.clock_words()}"
        for fmt in ("png", "svg"):
            path = target / f"{LIVE_CHART}.{fmt}"
            path.write_bytes(live_chart_png(series, marks, self.session.now(), start=a.run_t0, title=title, fmt=fmt))
            files[path.name] = path
        self.exported = files
        self._show_export(target, files, running=running_out is not None)
        names = ", ".join(files)
        later = " (its report comes when the run ends; Export again then)" if running_out is not None else ""
        return [f"Exported to {shown_path(target)}: {names}{later}"]

    def _show_export(self, target: Path, files: dict[str, Path], running: bool) -> None:
        """The exported files as links JupyterLab opens (the notebook's own renderer resolves them),
        and the run directory as a link to it in Lab's file browser."""
        where = lab_location(target)
        items = []
        for name, path in files.items():
            place = lab_location(path)
            items.append(f"<a class='rk-export-file' href='{html.escape(place[0], quote=True)}'>{html.escape(name)}</a>"
                         if place else f"<code>{html.escape(name)}</code>")
        if where is not None:
            args = html.escape(json.dumps({"path": where[1]}), quote=True)
            folder = (f"<a class='rk-export-dir' href='#' data-commandlinker-command='filebrowser:go-to-path' "
                      f"data-commandlinker-args='{args}' title='show it in the file browser'>"
                      f"{html.escape(where[1])}/</a>")
        else:
            folder = (f"<code>{html.escape(str(target))}</code> (outside JupyterLab's root: set REPRO_KIT_RUNS to a "
                      f"folder under it, or start Lab with <code>make lab</code>)")
        note = " (the report follows when the run ends)" if running else ""
        body = (f"<div style='font-size:90%'><b>Exported</b>{note}: {' &middot; '.join(items)}<br>"
                f"Run directory: {folder} <span style='color:#777'>{html.escape(str(target.absolute()))}</span></div>")
        self.export_out.outputs = ({"output_type": "display_data", "metadata": {},
                                    "data": {"text/html": body,
                                             "text/plain": f"Exported to {target}: {', '.join(files)}"}},)

    def ask_reset(self) -> None:
        """Show the Confirm/Cancel pair; nothing is deleted until Confirm."""
        if self.actions.running:
            self.say("Reset: a Run test is running; Stop it first.")
            return
        self.confirm_label.value = html.escape(self.actions.reset_question()) + " (only this user's)"
        self.confirm_box.layout.display = "flex"

    def cancel_reset(self) -> None:
        self.confirm_box.layout.display = "none"
        self.say("Reset cancelled; nothing deleted.")

    def confirm_reset(self) -> bool:
        if self.confirm_box.layout.display == "none":
            self.say("Reset: press Reset first, then confirm.")
            return False
        self.confirm_box.layout.display = "none"
        return self._start("Reset", self.actions.reset)

    def run_test(self) -> bool:
        writes, interval_s, settle_s = int(self.writes.value), float(self.interval.value), float(self.settle.value)
        deploy_at_s = float(self.deploy_at.value) if self.deploy_in_run.value else None
        field, bson_type = self.field.value.strip() or None, self.bson_type.value.strip() or None

        def act() -> list[str]:
            return self.actions.run_test(writes=writes, interval_s=interval_s, deploy_at_s=deploy_at_s,
                                         settle_s=settle_s, field=field, bson_type=bson_type)

        return self._start("Run test", act)

    @property
    def last_run(self) -> Any:
        return self.actions.last_run

    @property
    def last_analysis(self) -> Any:
        return self.actions.last_analysis

    def close(self) -> None:
        """Stop a running test, the live view and the listeners; close the widgets."""
        self.actions.close()
        self._closed.set()
        self._ticker.join(2.0)
        self.widget.close()
