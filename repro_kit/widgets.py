"""The original tool's menu as an ipywidgets control panel, for notebooks.

Every action runs in one worker thread, so the kernel stays responsive during a
5-minute real-time run; buttons are disabled meanwhile. Everything the panel says
goes to its `Output` widget with `append_stdout`/`append_stderr` (which work from
any thread and without a front end), and an action's exception is shown there as
one line plus its type: an error is never lost in a thread.
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path
from typing import Any, Callable

import ipywidgets as w

from repro_kit import writer
from repro_kit._session import Info, Notification, Session

__all__ = ["ControlPanel"]

#: Minimum wall-clock gap between two status redraws triggered by notifications.
_STATUS_REFRESH_S = 0.1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else '(no message)'}"


class ControlPanel:
    """Buttons for Add to root, Run test, Print nodes, Print info, Reset, Deploy schema change.

    `runs_dir` is where Run test records its run directories (`runs_dir/<timestamp>`).
    Display it with `display(panel)` or `panel.widget`; wait for the current action
    with `wait_idle()` (tests and notebooks do; a person just watches the buttons).
    """

    def __init__(self, session: Session, runs_dir: str | Path = "runs", *, report: bool = True) -> None:
        self.session = session
        self.runs_dir = Path(runs_dir)
        self.report = report
        self.last_run: Any = None
        self.last_verdict: Any = None
        self.last_analysis: Any = None
        self.errors: list[str] = []
        self.status: dict[str, tuple[int, int]] = {}
        self._worker: threading.Thread | None = None
        self._busy = threading.Lock()
        self._last_redraw = 0.0
        self._run_t0: float | None = None
        self._build()
        self._unsubscribe: list[Callable[[], None]] = [
            session.subscribe(self._on_notification),
            session.atlas.subscribe(self._on_notification),
        ]
        self._start("Refresh", self._refresh_only, quiet=True)

    # -- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        def button(label: str, handler: Callable[[], None], style: str = "", tip: str = "") -> w.Button:
            b = w.Button(description=label, button_style=style, tooltip=tip or label,
                         layout=w.Layout(width="auto"))
            b.on_click(lambda _b: handler())
            return b

        self.add_button = button("Add to root", self.add_to_root)
        self.run_button = button("Run test", self.run_test, "primary",
                                 "Append nodes on a timer and deploy the schema change mid-run")
        self.nodes_button = button("Print nodes", self.print_nodes)
        self.info_button = button("Print info", self.print_info)
        self.reset_button = button("Reset", self.ask_reset, "danger", "Delete this user's nodes (asks first)")
        self.deploy_button = button("Deploy schema change", self.deploy, "warning")
        self.wait_button = button("Wait", self.wait, tip="Let session time pass (the emulator's clock)")

        self.confirm_label = w.HTML()
        self.confirm_button = button("Confirm reset", self.confirm_reset, "danger")
        self.cancel_button = button("Cancel", self.cancel_reset)
        self.confirm_box = w.HBox([self.confirm_label, self.confirm_button, self.cancel_button],
                                  layout=w.Layout(display="none"))

        narrow = w.Layout(width="170px")
        style = {"description_width": "initial"}
        self.writes = w.BoundedIntText(value=20, min=1, max=100_000, description="writes", layout=narrow, style=style)
        self.interval = w.BoundedFloatText(value=1.0, min=0.001, max=3600, description="interval s", layout=narrow,
                                           style=style)
        self.deploy_at = w.BoundedFloatText(value=5.5, min=0, max=1e6, description="deploy at s", layout=narrow,
                                            style=style)
        self.deploy_in_run = w.Checkbox(value=True, description="deploy during run", indent=False,
                                        layout=w.Layout(width="150px"))
        self.settle = w.BoundedFloatText(value=300.0, min=0, max=1e6, description="settle s", layout=narrow,
                                         style=style)
        self.field = w.Text(value=writer.DEFAULT_FIELD, description="field", layout=w.Layout(width="200px"),
                            style=style)
        self.bson_type = w.Text(value=writer.DEFAULT_BSON_TYPE, description="BSON type",
                                layout=w.Layout(width="230px"), style=style)
        self.wait_s = w.BoundedFloatText(value=60.0, min=0, max=1e6, description="seconds", layout=narrow,
                                         style=style)

        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="Run test",
                                        layout=w.Layout(width="420px"), style=style)
        self.progress_label = w.Label("")
        self.status_html = w.HTML()
        self.error_html = w.HTML()
        self.output = w.Output(layout=w.Layout(max_height="320px", overflow="auto", border="1px solid #ddd"))

        self.action_buttons = [self.add_button, self.run_button, self.nodes_button, self.info_button,
                               self.reset_button, self.deploy_button, self.wait_button]
        self.inputs = [self.writes, self.interval, self.deploy_at, self.deploy_in_run, self.settle,
                       self.field, self.bson_type, self.wait_s]
        title = w.HTML(f"<b>repro_kit control panel</b> &middot; {html.escape(self.session.backend)}, "
                       f"{html.escape(str(getattr(self.session, 'mode', '')))}, "
                       f"encoding={html.escape(str(getattr(self.session, 'encoding', '')))}")
        self.widget = w.VBox([
            title,
            self.status_html,
            w.HBox([self.add_button, self.nodes_button, self.info_button, self.reset_button]),
            self.confirm_box,
            w.HBox([self.run_button, self.writes, self.interval, self.deploy_at, self.deploy_in_run, self.settle]),
            w.HBox([self.progress, self.progress_label]),
            w.HBox([self.deploy_button, self.field, self.bson_type]),
            w.HBox([self.wait_button, self.wait_s]),
            self.error_html,
            self.output,
        ])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- output ------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """Append a line to the panel's output (safe from any thread, with or without a front end)."""
        self.output.append_stdout(text.rstrip("\n") + "\n")

    def _error(self, action: str, exc: BaseException) -> None:
        line = f"{action} failed: {_one_line(exc)}"
        self.errors.append(line)
        self.output.append_stderr(line + "\n")
        self.error_html.value = f"<span style='color:#b00020'>{html.escape(line)}</span>"

    @property
    def text(self) -> str:
        """Everything the output widget holds, as plain text (what a person reads in the panel)."""
        parts = []
        for out in self.output.outputs:
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out:
                parts.append(str(out["data"].get("text/plain", "")))
        return "".join(parts)

    # -- worker ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the running action (if any) ends; True when idle."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return not self.busy

    def _set_enabled(self, enabled: bool) -> None:
        for widget in self.action_buttons + self.inputs:
            widget.disabled = not enabled

    def _start(self, action: str, fn: Callable[[], None], *, quiet: bool = False) -> bool:
        """Run `fn` in the worker thread; refuse (and say so) when an action is already running."""
        if not self._busy.acquire(blocking=False):
            self.say(f"{action}: busy with another action; try again when it ends.")
            return False
        self._set_enabled(False)
        if not quiet:
            self.error_html.value = ""

        def work() -> None:
            try:
                fn()
            except Exception as exc:  # shown in the panel: a worker's exception must not vanish
                self._error(action, exc)
            finally:
                try:
                    self._refresh_status()
                except Exception as exc:
                    self._error("Refresh status", exc)
                self._set_enabled(True)
                self._busy.release()

        self._worker = threading.Thread(target=work, name=f"repro_kit panel: {action}", daemon=True)
        self._worker.start()
        return True

    # -- status ------------------------------------------------------------------------
    def _refresh_only(self) -> None:
        """Nothing to do: `_start` refreshes the status after every action."""

    def _refresh_status(self) -> None:
        device, atlas = self.session.info(), self.session.atlas.info()
        self._show_status(device, atlas)

    def _show_status(self, device: Info | None = None, atlas: Info | None = None) -> None:
        if device is not None:
            self.status["device"] = (device.root_children, device.nodes_total)
        if atlas is not None:
            self.status["atlas"] = (atlas.root_children, atlas.nodes_total)
        self._redraw()

    def _redraw(self) -> None:
        def cell(name: str, key: str) -> str:
            children, total = self.status.get(key, (None, None))
            return (f"<td style='padding:2px 12px'><b>{name}</b>: root children <b>{children}</b>, "
                    f"nodes <b>{total}</b></td>")

        differ = self.status.get("device") != self.status.get("atlas")
        note = " <span style='color:#b06000'>(views differ)</span>" if differ else ""
        self.status_html.value = (
            f"<table><tr>{cell('Device', 'device')}{cell('Atlas', 'atlas')}"
            f"<td style='padding:2px 12px'>t = {self.session.now():.1f} s{note}</td></tr></table>"
        )
        self._last_redraw = time.monotonic()

    def _on_notification(self, note: Notification) -> None:
        # Called inside the model's event loop: never call the session back, never raise into it.
        try:
            self._show_notification(note)
        except Exception as exc:
            self._error("Status update", exc)

    def _show_notification(self, note: Notification) -> None:
        self.status[note.observer] = (note.root_children, note.nodes_total)
        if note.batch and note.observer == "device":
            self.say(f"[t={note.time:.1f}s] device received a batch of {note.batch} documents from the server: "
                     f"{note.nodes_total} nodes, root has {note.root_children} children")
        if self._run_t0 is not None:
            self._set_progress(note.time - self._run_t0)
        if time.monotonic() - self._last_redraw >= _STATUS_REFRESH_S:
            self._redraw()

    def _set_progress(self, elapsed: float) -> None:
        value = min(max(elapsed, 0.0), self.progress.max)
        if value >= self.progress.value:
            self.progress.value = value
            self.progress_label.value = f"{value:.0f} / {self.progress.max:.0f} s"

    # -- actions -----------------------------------------------------------------------
    def add_to_root(self) -> bool:
        def act() -> None:
            node_id = writer.add_to_root(self.session, f"node {self.session.info().root_children + 1}")
            self.say(f"Added {node_id} to the root.")

        return self._start("Add to root", act)

    def print_nodes(self) -> bool:
        def act() -> None:
            nodes = self.session.nodes()
            if not nodes:
                self.say("No root node.")
            for node in nodes:
                tag = "root" if node.get("isRoot") else "node"
                self.say(f"{tag} {node['_id']} text={node.get('text')!r} children={len(node.get('children', []))}")

        return self._start("Print nodes", act)

    def print_info(self) -> bool:
        def act() -> None:
            info, atlas = self.session.info(), self.session.atlas.info()
            self.say(f"user {info.user_id}: device {info.nodes_total} nodes, root has {info.root_children} "
                     f"children; Atlas {atlas.nodes_total} nodes, root has {atlas.root_children} children")

        return self._start("Print info", act)

    def wait(self) -> bool:
        seconds = float(self.wait_s.value)

        def act() -> None:
            self.session.wait(seconds)
            self.say(f"Waited {seconds:g} s; clock at {self.session.now():.1f} s.")

        return self._start("Wait", act)

    def deploy(self) -> bool:
        field, bson_type = self.field.value.strip(), self.bson_type.value.strip()

        def act() -> None:
            result = self.session.deploy_schema_change(field, bson_type)
            self.say(f"Deployed {field} ({bson_type}): {result.status}.")

        return self._start("Deploy schema change", act)

    def ask_reset(self) -> None:
        """Show the Confirm/Cancel pair; nothing is deleted until Confirm."""
        if self.busy:
            self.say("Reset: busy with another action; try again when it ends.")
            return
        info = self.status.get("device", (None, "?"))
        user = html.escape(str(getattr(self.session, "user_id", "") or ""))
        self.confirm_label.value = (f"Delete all {info[1]} nodes of user <code>{user}</code> "
                                    "(only this user's)?")
        self.confirm_box.layout.display = "flex"
        self._set_enabled(False)

    def cancel_reset(self) -> None:
        self.confirm_box.layout.display = "none"
        self._set_enabled(True)
        self.say("Reset cancelled; nothing deleted.")

    def confirm_reset(self) -> bool:
        if self.confirm_box.layout.display == "none":
            self.say("Reset: press Reset first, then confirm.")
            return False
        self.confirm_box.layout.display = "none"
        self._set_enabled(True)
        return self._start("Reset", lambda: self.say(f"Deleted {self.session.reset()} nodes."))

    def run_test(self) -> bool:
        writes, interval_s = int(self.writes.value), float(self.interval.value)
        deploy_at_s = float(self.deploy_at.value) if self.deploy_in_run.value else None
        settle_s = float(self.settle.value)
        field, bson_type = self.field.value.strip(), self.bson_type.value.strip()

        def act() -> None:
            writer.validate_schedule(writes, interval_s, deploy_at_s, settle_s)
            end = (writes - 1) * interval_s + settle_s
            self.progress.max = max(end, 1e-9)
            self.progress.value = 0.0
            self.progress.bar_style = "info"
            out = writer.default_run_dir(self.runs_dir)
            deploy_text = "no deploy" if deploy_at_s is None else f"deploy at {deploy_at_s:g} s"
            self.say(f"Run test: {writes} writes every {interval_s:g} s, {deploy_text}, settle {settle_s:g} s -> {out}")
            self._run_t0 = self.session.now()
            wall0 = time.monotonic()

            def tick() -> None:  # real time: the model's clock only moves on events, the wall clock always
                elapsed = self.session.now() - (self._run_t0 or 0.0)
                self._set_progress(max(elapsed, time.monotonic() - wall0) if self.session.realtime else elapsed)

            ticker = _Ticker(tick)
            ticker.start()
            try:
                run = writer.run_test(self.session, writes=writes, interval_s=interval_s, deploy_at_s=deploy_at_s,
                                      settle_s=settle_s, field=field, bson_type=bson_type, out=out, progress=False)
            except BaseException:
                self.progress.bar_style = "danger"
                raise
            finally:
                ticker.stop()
                self._run_t0 = None
            self.progress.value = self.progress.max
            self.progress_label.value = f"{end:.0f} / {end:.0f} s"
            self.last_run = run
            self._summarise(run)

        return self._start("Run test", act)

    def _summarise(self, run: Any) -> None:
        from repro_kit.findings import analyse

        analysis = analyse(run)
        verdict = analysis.verdict
        self.last_analysis = analysis
        self.last_verdict = verdict
        lost = list(getattr(verdict, "lost", []) or [])
        if lost:
            self.progress.bar_style = "warning"
            self.say(f"Run saved to {run.path}: {len(lost)} nodes lost")
            for node_id in lost:
                self.say(f"  lost {node_id}")
        else:
            self.progress.bar_style = "success"
            self.say(f"Run saved to {run.path}: 0 nodes lost")
        if self.report:
            from repro_kit import report

            report.write_report(analysis, run.path)
            self.say(f"Report: {Path(run.path) / 'report.md'}")

    def close(self) -> None:
        """Stop following the session's notifications and close the widgets."""
        self.wait_idle()
        while self._unsubscribe:
            self._unsubscribe.pop()()
        self.widget.close()


class _Ticker:
    """Calls `fn` every `period_s` in its own thread (the progress bar during a real-time run)."""

    def __init__(self, fn: Callable[[], None], period_s: float = 0.25) -> None:
        self._fn = fn
        self._period = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="repro_kit panel: progress", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self._fn()
            except Exception:  # a progress tick is cosmetic; the action reports real errors
                pass

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
