"""The original tool as an ipywidgets control panel, for notebooks: a thin front end over `Actions`.

Buttons call the same operations as the menu (`repro_kit.actions`) and show the lines they
return; the lines that come on their own (listener lines, a Run test's writes, its verdict)
arrive from the model's threads. Every click runs off the kernel's thread, so a real-time
Run test goes on while the user deploys by hand, prints info or stops it. While a run goes,
a live chart of the device's and Atlas's counts (the halt shaded, re-import batches marked)
is redrawn every second, with elapsed and remaining time. An action's exception shows in
the panel as one line: an error is never lost in a thread.
"""

from __future__ import annotations

import html
import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as w

from repro_kit._errors import describe_os_error
from repro_kit._session import Session
from repro_kit.client import connect
from repro_kit.actions import COMMANDS, Actions

__all__ = ["ControlPanel", "live_chart_png"]

#: Lines the output box shows, newest at the bottom, all visible without scrolling.
SHOWN_LINES = 18
#: Seconds between redraws of the live chart while a run goes (at least once a second).
CHART_PERIOD_S = 1.0


def _one_line(action: str, exc: BaseException) -> str:
    """An action's error as the panel shows it: bad input (a ValueError) and a file-system
    error in words, without Python's exception names; anything else keeps its name (a bug)."""
    if isinstance(exc, OSError):
        return f"{action} failed: {describe_os_error(exc)}"
    text = str(exc).strip().splitlines()
    first = text[0] if text else "(no message)"
    if isinstance(exc, ValueError):
        return f"{action} failed: {first}"
    return f"{action} failed: {type(exc).__name__}: {first}"


def live_chart_png(series: list[tuple[float, str, int, int]], marks: list[tuple[float, str, Any]], now: float,
                   start: float = 0.0, title: str = "") -> bytes:
    """The views' counts over time as a PNG: root's children and total nodes, device and Atlas,
    the halt shaded and re-import batches marked (what the panel shows during a run)."""
    from matplotlib.figure import Figure

    from repro_kit.plots import BATCH_COLOR, WINDOW_COLOR

    fig = Figure(figsize=(8.5, 2.6), dpi=90, layout="constrained")
    ax = fig.subplots()
    end = max(now, start + 1.0)
    styles = {"device": "-", "atlas": "--"}
    colors = {"root's children": "#1f6fb4", "total nodes": "#555555"}
    for observer in ("device", "atlas"):
        points = [(t, rc, nt) for t, o, rc, nt in series if o == observer and t >= start - 1e-9]
        before = [(t, rc, nt) for t, o, rc, nt in series if o == observer and t < start]
        if before:
            points.insert(0, (start, before[-1][1], before[-1][2]))
        if not points:
            continue
        xs = [p[0] for p in points] + [end]
        for col, name in ((1, "root's children"), (2, "total nodes")):
            ys = [p[col] for p in points]
            ax.step(xs, ys + [ys[-1]], where="post", color=colors[name], ls=styles[observer], lw=1.5,
                    label=f"{observer}: {name}")
    halt_at = None
    labelled: set[str] = set()

    def label(name: str) -> str | None:
        if name in labelled:
            return None
        labelled.add(name)
        return name

    for t, kind, value in marks:
        if t < start:
            continue
        if kind == "halt":
            halt_at = t
        elif kind == "resume" and halt_at is not None:
            ax.axvspan(halt_at, t, color=WINDOW_COLOR, alpha=0.35, lw=0, label=label("translation halted"))
            halt_at = None
        elif kind == "batch":
            ax.axvline(t, color=BATCH_COLOR, ls=":", lw=1.2, label=label("re-import batch"))
        elif kind == "deploy":
            ax.axvline(t, color="#b8860b", ls="--", lw=0.9, label=label("deploy"))
    if halt_at is not None:
        ax.axvspan(halt_at, end, color=WINDOW_COLOR, alpha=0.35, lw=0, label=label("translation halted"))
    ax.set_xlim(start, end)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds (session time)")
    ax.set_title(title, loc="left", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class ControlPanel:
    """Buttons for Add to root, Run test, Print nodes, Print info, Reset, Deploy schema change,
    Wait and Stop, over `Actions`.

    `session` defaults to a new real-time emulator session (the menu's default too; pass
    `rk.connect(realtime=False)` for fast virtual-time experiments). Run test records to
    `runs_dir` (default: the checkout's runs/, shared with the CLI and notebook 03). Its
    automatic deploy is off unless "deploy at" is ticked: deploy by hand while it runs.
    Display it with `display(panel)`; `wait_idle()` blocks until clicks and the run end.
    """

    def __init__(self, session: Session | None = None, runs_dir: str | Path | None = None) -> None:
        if session is None:
            session = connect(realtime=True)
        self.session = session
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._lines_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._build()
        self.actions = Actions(session, emit=self.say, runs_dir=runs_dir)
        self.runs_dir = self.actions.runs_dir
        self._closed = threading.Event()
        self._chart_drawn_at = -1.0
        self._chart_series_len = -1
        self._run_start: float | None = None
        self._ticker = threading.Thread(target=self._tick, name="repro_kit panel: live view", daemon=True)
        self._ticker.start()
        self._refresh()

    # -- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        def button(label: str, handler: Callable[[], Any], style: str = "", tip: str = "") -> w.Button:
            b = w.Button(description=label, button_style=style, tooltip=tip or label, layout=w.Layout(width="auto"))
            b.on_click(lambda _b: handler())
            return b

        # the command table the menu reads too: labels and tips, each with its handler here
        handlers = {"add_to_root": self.add_to_root, "run_test": self.run_test, "print_nodes": self.print_nodes,
                    "print_info": self.print_info, "reset": self.ask_reset, "deploy": self.deploy, "wait": self.wait,
                    "stop": self.stop}
        styles = {"run_test": "primary", "reset": "danger", "deploy": "warning", "stop": "danger"}
        made = {c.name: button(c.label, handlers[c.name], styles.get(c.name, ""), c.tip) for c in COMMANDS}
        self.add_button, self.run_button = made["add_to_root"], made["run_test"]
        self.nodes_button, self.info_button = made["print_nodes"], made["print_info"]
        self.reset_button, self.deploy_button = made["reset"], made["deploy"]
        self.wait_button, self.stop_button = made["wait"], made["stop"]
        self.stop_button.disabled = True

        self.confirm_label = w.HTML()
        self.confirm_button = button("Confirm reset", self.confirm_reset, "danger")
        self.cancel_button = button("Cancel", self.cancel_reset)
        self.confirm_box = w.HBox([self.confirm_label, self.confirm_button, self.cancel_button],
                                  layout=w.Layout(display="none"))

        narrow = w.Layout(width="160px")
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
                            layout=w.Layout(width="200px"), style=style)
        self.bson_type = w.Text(value="array<string>", description="BSON type", layout=w.Layout(width="220px"),
                                style=style)
        self.wait_s = w.BoundedFloatText(value=10.0, min=0, max=86_400, description="seconds", layout=narrow,
                                         style=style)

        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="run",
                                        layout=w.Layout(width="360px"), style=style)
        self.progress_label = w.Label("no run yet")
        self.status_html = w.HTML()
        self.error_html = w.HTML()
        self.chart = w.Image(format="png", layout=w.Layout(max_width="760px"))
        self.log_html = w.HTML(layout=w.Layout(border="1px solid #ddd", width="100%"))

        self.buttons = [self.add_button, self.run_button, self.nodes_button, self.info_button, self.reset_button,
                        self.deploy_button, self.wait_button, self.stop_button]
        title = w.HTML(f"<b>repro_kit control panel</b> &middot; {html.escape(self.session.backend)}, "
                       f"{html.escape(str(getattr(self.session, 'mode', '')))} mode, "
                       f"{'real time' if self.session.realtime else 'virtual time'}")
        self.widget = w.VBox([
            title,
            self.status_html,
            w.HBox([self.add_button, self.nodes_button, self.info_button, self.reset_button]),
            self.confirm_box,
            w.HBox([self.run_button, self.stop_button, self.writes, self.interval, self.settle, self.deploy_in_run,
                    self.deploy_at]),
            w.HBox([self.progress, self.progress_label]),
            w.HBox([self.deploy_button, self.field, self.bson_type]),
            w.HBox([self.wait_button, self.wait_s]),
            self.chart,
            self.error_html,
            self.log_html,
        ])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- output ------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """Add a line to the panel's log (safe from any thread); the box shows the newest lines."""
        with self._lines_lock:
            self.lines.extend(str(text).rstrip("\n").split("\n"))
            shown = self.lines[-SHOWN_LINES:]
            hidden = len(self.lines) - len(shown)
        head = f"<div style='color:#777'>({hidden} earlier lines: panel.text)</div>" if hidden else ""
        body = html.escape("\n".join(shown)).replace("\t", "&nbsp;&nbsp;&nbsp;&nbsp;")
        self.log_html.value = (f"{head}<pre style='margin:0;min-height:{1.25 * SHOWN_LINES:.1f}em;"
                               f"white-space:pre-wrap'>{body}</pre>")

    def _error(self, action: str, exc: BaseException) -> None:
        line = _one_line(action, exc)
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
                for line in fn() or []:
                    self.say(line)
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

    def _refresh(self, chart_only: bool = False) -> None:
        a = self.actions if hasattr(self, "actions") else None
        if a is None:
            return
        running = a.running
        self.run_button.disabled = running
        self.stop_button.disabled = not running
        self.reset_button.disabled = running
        progress = a.progress()
        if progress is not None:
            elapsed, total = progress
            self.progress.max = max(total, 1e-9)
            self.progress.value = elapsed
            self.progress.bar_style = "info"
            self.progress_label.value = f"{elapsed:.0f} s elapsed, {max(total - elapsed, 0):.0f} s left of {total:.0f} s"
        elif self._run_start is not None and not running:
            run = a.last_run
            stopped = run is not None and not run.meta.get("finished", True)
            self.progress.bar_style = "warning" if stopped else "success"
            self.progress_label.value = "stopped: partial run kept" if stopped else "finished"
            if not stopped:
                self.progress.value = self.progress.max
        series, marks = a.snapshot()
        latest = {o: (rc, nt) for _t, o, rc, nt in series}
        differ = latest.get("device") != latest.get("atlas")
        now = self.session.now()

        def cell(name: str, key: str) -> str:
            children, total = ("unknown" if v is None else v for v in latest.get(key, (None, None)))
            return f"<td style='padding:2px 12px'><b>{name}</b>: root's children <b>{children}</b>, nodes <b>{total}</b></td>"

        note = " <span style='color:#b06000'>(the views differ)</span>" if differ else ""
        self.status_html.value = (f"<table><tr>{cell('Device', 'device')}{cell('Atlas', 'atlas')}"
                                  f"<td style='padding:2px 12px'>t = {now:.1f} s{note}</td></tr></table>")
        due = running or len(series) != self._chart_series_len
        if due and (not chart_only or time.monotonic() - self._chart_drawn_at >= CHART_PERIOD_S):
            start = self._run_start if self._run_start is not None else 0.0
            title = self.progress_label.value if running else "device (solid) and Atlas (dashed)"
            self.chart.value = live_chart_png(series, marks, now, start=start, title=title)
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
        self._run_start = self.session.now()

        def act() -> list[str]:
            lines = self.actions.run_test(writes=writes, interval_s=interval_s, deploy_at_s=deploy_at_s,
                                          settle_s=settle_s, field=field, bson_type=bson_type)
            self._run_start = self.session.now()
            return lines

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
