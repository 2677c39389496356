"""Every notebook run in a real JupyterLab, in headless Chromium, and its rendered outputs checked.

The papermill tests (test_notebooks.py) check what the kernel computes; this module checks what a
person sees: each notebook is opened in JupyterLab, run with Run > Run All Cells, and the page is
then inspected for error outputs, widgets that failed to render and figures that did not show
(03's report.md included: its figures are embedded, so each must load). Notebook 02's control
panel (real time) then has every button clicked, with what it shows checked after each: its log,
status line, progress label, live chart and which buttons are enabled; two short Run tests, one
run to the end and one stopped after a schema change deployed by hand while it ran.

Needs Chromium at /usr/bin/chromium (Debian's `chromium` package) and Python `playwright` (the
`dev` extra); without either the tests that need a browser are skipped, with the reason shown.
Nothing is written into the repository: JupyterLab serves a temporary copy of notebooks/, with
its own settings, workspaces and runtime directories, and the live-backend variables removed so
the notebooks use the emulator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
NAMES = ["01_setup", "02_write_and_deploy", "03_timeline", "04_sweeps", "05_fleet", "06_replay"]
#: Figures each notebook draws at least (as in test_notebooks.py).
MIN_IMAGES = {"01_setup": 0, "02_write_and_deploy": 1, "03_timeline": 2, "04_sweeps": 3, "05_fleet": 2,
              "06_replay": 1}
#: Rendered ipywidgets each notebook shows at least (02: the control panel's many widgets).
MIN_WIDGETS = {"01_setup": 0, "02_write_and_deploy": 10, "03_timeline": 0, "04_sweeps": 0, "05_fleet": 0,
               "06_replay": 0}
LIVE_VARS = ("MONGODB_URI", "REPRO_KIT_APP_ID", "REALM_APP_ID", "MONGODB_ATLAS_PUBLIC_API_KEY",
             "MONGODB_ATLAS_PRIVATE_API_KEY")

CHROMIUM = Path("/usr/bin/chromium")
#: --no-sandbox: Chromium refuses to run as root with its sandbox. The background-networking flags
#: keep it from calling out (a closed network refuses those connections, slowly).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

# Generous: the machine is shared and noisy. Every wait polls for a condition; none sleeps blindly.
SERVER_START_S = 120
KERNEL_READY_S = 120
RUN_ALL_START_S = 60
RUN_ALL_S = 300
RENDER_SETTLE_S = 60
VIEWPORT = {"width": 1400, "height": 1000}

STDERR = "application/vnd.jupyter.stderr"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

#: JupyterLab's own settings for the run: no news or update checks (no network), and every cell
#: attached to the DOM, so text and images off screen can be read (the default windowing mode
#: leaves their text empty until scrolled to).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


# -- classifying what the page shows (pure functions, tested without a browser) -----------------
#: The header IPython writes at the top of an exception's traceback, and plain Python's.
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
#: An exception's name at the start of a line ("ZeroDivisionError: division by zero", or IPython's
#: "ZeroDivisionError            Traceback ..."). Warnings start with a path, so they do not match.
_ENAME = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit))\b(?::\s*(.*))?", re.M)
#: How the control panel reports a failed action: "Print info failed: ValueError: ...".
_PANEL_FAILURE = re.compile(r"\bfailed: ([A-Za-z_][\w.]*(?:Error|Exception))\b(?::\s*(.*))?")
#: A widget's text/plain repr, shown instead of the widget when the front end cannot render it.
_RAW_WIDGET = re.compile(r"^\s*[A-Z]\w*\((?:children|value|description|layout|outputs|options)=")


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def error_in_stderr(text: str) -> str | None:
    """The exception a stderr output shows ("ZeroDivisionError: division by zero"), or None.

    An uncaught exception renders in JupyterLab as application/vnd.jupyter.stderr, exactly like a
    stream to stderr; what tells them apart is the text: a traceback header, or an exception's
    name at the start of a line. Warnings, logging lines and tqdm bars are not errors.
    """
    text = _strip_ansi(text)
    names = [m for m in _ENAME.finditer(text)]
    panel = _PANEL_FAILURE.search(text)
    if not names and not panel and not _TRACEBACK.search(text):
        return None
    if names:
        # the last ename line carries the message ("Name: message"); prefer one that has it
        with_message = [m for m in names if m.group(2)]
        m = (with_message or names)[-1]
    else:
        m = panel
    if m is None:
        return "Traceback (exception name not found)"
    return f"{m.group(1)}: {m.group(2).strip()}" if m.group(2) else m.group(1)


def widget_problem(mime: str | None, text: str) -> str | None:
    """Why an output shows a widget that did not render, or None."""
    if "Error displaying widget" in text:
        return text.strip().splitlines()[0]
    if "Loading widget..." in text:
        return "widget never loaded ('Loading widget...')"
    if WIDGET_MIME in text or ("model_id" in text and "version_major" in text):
        return "raw widget-view JSON shown instead of the widget"
    if mime == "text/plain" and _RAW_WIDGET.match(text):
        return f"widget shown as its text repr: {text.strip()[:80]}"
    return None


# -- the page: what JupyterLab shows, read in one go ---------------------------------------------
_READ_NOTEBOOK_JS = """
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return null;
  const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator')
      || document.querySelector('.jp-Notebook-ExecutionIndicator');
  const cells = [...panel.querySelectorAll('.jp-Notebook-cell.jp-CodeCell')].map((cell, index) => {
    const prompt = (cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '';
    const outputs = [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => ({
      mime: o.getAttribute('data-mime-type'),
      text: o.textContent || '',
      nested: !!o.parentElement.closest('.widget-output'),
    }));
    const images = [...cell.querySelectorAll('.jp-OutputArea-output img')].map(img => ({
      src: (img.getAttribute('src') || '').slice(0, 120),
      complete: img.complete,
      ok: img.complete && img.naturalWidth > 0,
    }));
    const widgets = cell.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length;
    return {index, prompt: prompt.trim(), outputs, images, widgets};
  });
  const dialogs = [...document.querySelectorAll('.jp-Dialog')].map(d => d.textContent.trim().slice(0, 300));
  return {status: indicator ? indicator.getAttribute('data-status') : null, cells, dialogs};
}
"""

#: Done: kernel idle, no cell queued or running ([*]), and at least one cell has run (committed
#: notebooks have no execution counts, so this cannot hold before Run All takes effect). A dialog
#: (e.g. "Kernel Restarting" when the kernel died) ends the wait too: inspect() reports it.
_DONE_JS = """
() => {
  if (document.querySelector('.jp-Dialog')) return true;
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return false;
  const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator')
      || document.querySelector('.jp-Notebook-ExecutionIndicator');
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent);
  return indicator && indicator.getAttribute('data-status') === 'idle'
      && !prompts.some(p => p.includes('*')) && prompts.some(p => /\\d/.test(p));
}
"""

_STARTED_JS = """
() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')]
        .some(p => /[*\\d]/.test(p.textContent))
"""

_SETTLED_JS = """
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return false;
  const loading = [...panel.querySelectorAll('.jp-OutputArea-output')]
      .some(o => (o.textContent || '').includes('Loading widget...'));
  const images = [...panel.querySelectorAll('.jp-OutputArea-output img')].every(img => img.complete);
  return !loading && images;
}
"""


@dataclass
class NotebookRun:
    """What JupyterLab showed after Run All Cells on one notebook."""

    name: str
    page: Any
    screenshot: Path
    seconds: float
    cells: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    widget_problems: list[str] = field(default_factory=list)
    not_run: list[int] = field(default_factory=list)
    images: int = 0
    broken_images: list[str] = field(default_factory=list)
    widgets: int = 0
    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def where(self) -> str:
        lines = [f"screenshot: {self.screenshot}"]
        if self.page_errors:
            lines.append("page errors: " + "; ".join(self.page_errors[:5]))
        return "\n".join(lines)

    def problems(self) -> list[str]:
        found = [*self.errors, *self.widget_problems]
        found += [f"dialog open: {d}" for d in self.dialogs]
        if self.not_run:
            found.append(f"code cells not run (counted from 1): {self.not_run}")
        return found


def inspect(snapshot: dict) -> dict:
    """Sort what the page shows into errors, widget problems, cells not run and images."""
    errors, widget_problems, not_run, broken = [], [], [], []
    images = widgets = 0
    for cell in snapshot["cells"]:
        number = cell["index"] + 1  # counted among code cells, from 1
        label = f"code cell {number} {(cell['prompt'] or '[ ]:').rstrip(':')}"
        if not re.search(r"\d", cell["prompt"]):
            not_run.append(number)
        for out in cell["outputs"]:
            if out["mime"] == STDERR:
                found = error_in_stderr(out["text"])
                if found:
                    where = " (in a widget's output)" if out["nested"] else ""
                    errors.append(f"{label}{where}: {found}")
            problem = widget_problem(out["mime"], out["text"])
            if problem:
                widget_problems.append(f"{label}: {problem}")
        for img in cell["images"]:
            if img["ok"]:
                images += 1
            else:
                broken.append(f"{label}: {img['src']}")
        widgets += cell["widgets"]
    return {"errors": errors, "widget_problems": sorted(set(widget_problems), key=widget_problems.index),
            "not_run": not_run, "images": images, "broken_images": broken, "widgets": widgets,
            "dialogs": snapshot["dialogs"]}


# -- the JupyterLab server -----------------------------------------------------------------------
@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def api(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernel_state(self, notebook_path: str) -> str | None:
        try:
            sessions = self.api("/api/sessions")
        except (urllib.error.URLError, OSError, ValueError):  # a busy server: ask again
            return None
        for session in sessions:
            if session.get("path") == notebook_path and session.get("kernel"):
                return session["kernel"].get("execution_state")
        return None

    def shutdown_kernels(self) -> None:
        """End every kernel the server runs (each notebook opened here started one)."""
        try:  # kernels run in sessions of their own: the server ends them
            for kernel in self.api("/api/kernels"):
                self.api(f"/api/kernels/{kernel['id']}", method="DELETE")
        except (urllib.error.URLError, OSError, ValueError):
            pass  # the server's own shutdown ends its kernels too

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


#: Servers started in this session, so a module's teardown can end the kernels it left idle.
_STARTED_LABS: list[Lab] = []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, server: "Lab | None" = None) -> None:
    """Shut the kernels down, terminate the server, and kill it (with its process group) if it lingers."""
    if server is not None and proc.poll() is None:
        server.shutdown_kernels()
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
        return
    except subprocess.TimeoutExpired:
        pass
    try:  # not reaped yet, so the group (start_new_session) is still this server's
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait(timeout=30)


def _lab_env(home: Path, root: Path) -> dict[str, str]:
    # runs go to runs/ inside Lab's root (the temporary copy's), where its file browser lists them
    env = {k: v for k, v in os.environ.items() if k not in LIVE_VARS}
    env["REPRO_KIT_RUNS"] = str(root / "runs")
    env["MPLBACKEND"] = "Agg"
    for name in ("JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "JUPYTER_RUNTIME_DIR",
                 "JUPYTER_CONFIG_DIR"):
        path = home / name.lower()
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    for rel, value in LAB_SETTINGS.items():
        target = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value), encoding="utf-8")
    return env


#: The panel's resync delay in the served copy of notebook 02 (its parameter, as papermill would set
#: it): a real-time session waits through whole re-imports in seconds, not minutes.
PANEL_RESYNC_S = 20.0


def _shorten_the_panels_resync(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "resync_delay_s = 180.0" in cell.source, cell.source
    cell.source = cell.source.replace("resync_delay_s = 180.0", f"resync_delay_s = {PANEL_RESYNC_S}")
    nbformat.write(nb, path)


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """JupyterLab on a free loopback port, serving a temporary copy of notebooks/."""
    root = tmp_path_factory.mktemp("lab-notebooks")
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        shutil.copy2(notebook, root / notebook.name)
    _shorten_the_panels_resync(root / "02_write_and_deploy.ipynb")
    home = tmp_path_factory.mktemp("lab-home")
    env = _lab_env(home, root)
    token = uuid.uuid4().hex
    last_error = ""
    for _attempt in range(3):  # the free port can be taken between choosing it and binding it
        port = _free_port()
        log = home / f"lab-{port}.log"
        cmd = [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", "--ip=127.0.0.1",
               f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}",
               # a safety net should this process die without stopping the server: idle kernels
               # are culled and an idle server exits on its own
               "--MappingKernelManager.cull_idle_timeout=900", "--MappingKernelManager.cull_interval=60",
               "--ServerApp.shutdown_no_activity_timeout=1200"]
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        server = Lab(f"http://127.0.0.1:{port}", token, root, log)
        _STARTED_LABS.append(server)
        try:
            deadline = time.monotonic() + SERVER_START_S
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    server.api("/api/status")
                    break
                except (urllib.error.URLError, ConnectionError, OSError):
                    time.sleep(0.25)  # polling the server's status, not a fixed wait
            else:
                last_error = (f"jupyter lab exited with {proc.returncode}" if proc.poll() is not None
                              else f"jupyter lab did not answer within {SERVER_START_S} s")
                last_error += f"\n{server.log_tail()}"
                _stop(proc)
                continue
            yield server
            return
        finally:
            _stop(proc, server)
    pytest.fail(f"could not start JupyterLab: {last_error}")


# -- the browser ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium under Playwright; skipped (reason shown) when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright cannot be imported ({exc}); pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing; apt-get install chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser-screenshots")


def _wait(condition, timeout_s: float, what: str, poll_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(poll_s)  # polling a condition


def _screenshot(page, path: Path) -> None:
    """The whole notebook: the viewport is made as tall as the notebook's scrolled content."""
    height = page.evaluate("""() => {
        const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
        if (!s) return 0;
        s.scrollTop = 0;  // Run All leaves it at the last cell
        return s.scrollHeight; }""")
    tall = int(min(max(height + 200, VIEWPORT["height"]), 12000))
    page.set_viewport_size({"width": VIEWPORT["width"], "height": tall})
    try:
        page.screenshot(path=str(path))
    finally:
        page.set_viewport_size(VIEWPORT)


def open_notebook(browser, lab: Lab, path: str):
    """A new page showing `path` in JupyterLab with its kernel idle. Returns (page, page_errors)."""
    page = browser.new_page(viewport=VIEWPORT)
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)[:300]))
    page.set_default_timeout(60_000)
    # a workspace of its own, reset: no tabs restored from another page
    workspace = re.sub(r"\W", "-", Path(path).stem)
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{path}?reset&token={lab.token}",
              wait_until="domcontentloaded", timeout=KERNEL_READY_S * 1000)

    def ready() -> bool:
        # the DOM's indicator reads "idle" before the kernel even exists: the server must agree
        if page.locator(".jp-Dialog").count():  # e.g. a kernel chooser: take its default
            page.locator(".jp-Dialog .jp-mod-accept").first.click()
            return False
        state = lab.kernel_state(path)
        return state == "idle" and page.evaluate(
            "() => { const i = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) "
            ".jp-Notebook-ExecutionIndicator'); return !!i && i.getAttribute('data-status') === 'idle'; }")

    try:
        _wait(ready, KERNEL_READY_S, f"{path}: kernel idle")
    except TimeoutError as exc:
        page.close()
        raise AssertionError(f"{exc}\nserver log:\n{lab.log_tail()}") from None
    return page, page_errors


def run_all_cells(page) -> None:
    """Run > Run All Cells, from JupyterLab's menu bar, as a person would."""
    page.locator(".lm-MenuBar-item").filter(has_text=re.compile(r"^\s*Run\s*$")).click()
    page.locator(".lm-Menu-item").filter(has_text=re.compile(r"^\s*Run All Cells")).first.click()
    page.wait_for_function(_STARTED_JS, polling=250, timeout=RUN_ALL_START_S * 1000)


def run_notebook(browser, lab: Lab, path: str, shots: Path) -> NotebookRun:
    """Open `path` (relative to the lab's root), run every cell, and read what the page shows."""
    started = time.monotonic()
    page, page_errors = open_notebook(browser, lab, path)
    screenshot = shots / f"{Path(path).stem}.png"
    try:
        run_all_cells(page)
        page.wait_for_function(_DONE_JS, polling=250, timeout=RUN_ALL_S * 1000)
        _wait(lambda: lab.kernel_state(path) == "idle", KERNEL_READY_S, f"{path}: kernel idle after Run All")
        try:  # widgets and images get a while to appear; whatever has not by then is reported
            page.wait_for_function(_SETTLED_JS, polling=250, timeout=RENDER_SETTLE_S * 1000)
        except Exception:  # noqa: BLE001 -- playwright's TimeoutError; reported by inspect() below
            pass
        snapshot = page.evaluate(_READ_NOTEBOOK_JS)
    except Exception as exc:
        try:
            _screenshot(page, screenshot)
        except Exception:  # noqa: BLE001 -- the screenshot is a diagnostic; the failure is the news
            pass
        page.close()
        raise AssertionError(f"{path}: {exc}\nscreenshot: {screenshot}\nserver log:\n{lab.log_tail()}") from None
    _screenshot(page, screenshot)
    found = inspect(snapshot)
    return NotebookRun(name=Path(path).stem, page=page, screenshot=screenshot, seconds=time.monotonic() - started,
                       cells=snapshot["cells"], page_errors=page_errors, **found)


def assert_rendered_cleanly(run: NotebookRun) -> None:
    problems = run.problems()
    assert not problems, f"{run.name}:\n  " + "\n  ".join(problems) + "\n" + run.where()


# -- the control panel --------------------------------------------------------------------------
#: Seconds a panel action gets to show its lines, and a Run test to end (real time, noisy machine).
PANEL_ACTION_S = 60
PANEL_RUN_S = 180
#: How often the panel is read while waiting: often enough to see every log line (the log shows
#: the newest 18) and the buttons' state during a run of a few seconds.
PANEL_POLL_S = 0.1


def panel_locator(page):
    """The cell output holding repro_kit's ControlPanel (the one with a "Print info" button)."""
    outputs = page.locator(".jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output")
    return outputs.filter(has=page.get_by_role("button", name="Print info", exact=True)).first


#: What the panel shows, read in one go (one consistent snapshot): the log (every line, in the
#: blocks of its scrolling box), the status, the result box, the progress label, the live chart,
#: the Confirm/Cancel pair, the error line, the export links and which buttons are enabled, and
#: where each sits on the screen (the log's newest line: in the log's view and the window's).
#: The log's tabs arrive as non-breaking spaces: read as spaces.
_PANEL_STATE_JS = """
(panel) => {
  const logBox = panel.querySelector('.rk-log');
  const blocks = logBox ? [...logBox.querySelectorAll('pre.rk-lines')] : [];
  const lines = blocks.flatMap(b => b.textContent.replace(/\\u00a0/g, ' ').split('\\n'));
  const buttons = {};
  for (const b of panel.querySelectorAll('button')) buttons[b.textContent.trim()] = !b.disabled;
  const confirm = [...panel.querySelectorAll('button')].find(b => b.textContent.trim() === 'Confirm reset');
  const box = confirm ? confirm.closest('.widget-hbox') : null;
  const img = panel.querySelector('.rk-chart img, img.rk-chart, img.widget-image');
  const label = panel.querySelector('div.widget-label');
  const error = panel.querySelector('.rk-error span');
  const rect = el => { if (!el) return null; const r = el.getBoundingClientRect();
                       return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
  const last = blocks.length ? blocks[blocks.length - 1] : null;
  const status = panel.querySelector('.rk-status');
  const result = panel.querySelector('.rk-result');
  const exported = panel.querySelector('.rk-export');
  return {
    hidden: 0, lines, buttons,
    status: status ? status.innerText : '',
    result: result ? result.innerText : '',
    export_text: exported ? exported.innerText : '',
    export_files: exported ? [...exported.querySelectorAll('a.rk-export-file')].map(a => a.textContent) : [],
    progress: label ? label.textContent.trim() : '',
    confirm_shown: !!box && getComputedStyle(box).display !== 'none',
    confirm_text: box ? (box.querySelector('.widget-html-content') || {}).textContent || '' : '',
    chart: img ? {src: img.getAttribute('src') || '', ok: img.complete && img.naturalWidth > 0} : null,
    error: error ? error.textContent : '',
    where: {viewport: window.innerHeight, panel: rect(panel), status: rect(status), result: rect(result),
            buttons: rect(panel.querySelector('button')), log: rect(logBox), last: rect(last),
            stop: rect([...panel.querySelectorAll('button')].find(b => b.textContent.trim() === 'Stop')),
            scroll: logBox ? logBox.scrollTop : 0},
  };
}
"""

#: The status: "Device: root's children 2, nodes 3   Atlas: root's children 2, nodes 3 [(the views
#: differ)]", then "t = 4.1 s since Run test started" (or "t = session time 4.1 s (no Run test
#: yet)"), then what the session waits for and "analysing…" when they apply.
_STATUS = re.compile(r"Device: root's children (\d+), nodes (\d+)\s*Atlas: root's children (\d+), nodes (\d+)"
                     r"(.*?)\s*t = (?:session time )?([\d.]+) s(.*)", re.S)
#: A line the model's listeners print on their own (the original tool's), between an action's lines.
_LISTENER = re.compile(r"^\s+(?::|\(a re-import batch)|^\[App Services\]")


@dataclass
class Status:
    device_children: int
    device_nodes: int
    atlas_children: int
    atlas_nodes: int
    t: float
    views_differ: bool

    @classmethod
    def parse(cls, text: str) -> "Status | None":
        m = _STATUS.search(text)
        if m is None:
            return None
        return cls(int(m[1]), int(m[2]), int(m[3]), int(m[4]), float(m[6]), "views differ" in m[5])


class PanelDriver:
    """Notebook 02's control panel, clicked and read as a person would, in the browser.

    The log holds every line (it scrolls); every read records the lines by their position in the
    whole log, so a wait can look at every line that came after a click.
    """

    def __init__(self, page, shots: Path, lab: Lab) -> None:
        self.page, self.shots, self.lab = page, shots, lab
        self.panel = panel_locator(page)
        self.seen: dict[int, str] = {}
        self.charts: list[tuple[str, bool]] = []  # (chart src, running) in the order seen

    # -- reading ---------------------------------------------------------------------------
    def read(self) -> dict:
        state = self.panel.evaluate(_PANEL_STATE_JS)
        lines = state["lines"]
        state["total"] = state["hidden"] + len(lines)
        for offset, line in enumerate(lines):
            self.seen[state["hidden"] + offset] = line
        state["running"] = not state["buttons"].get("Run test", True) and state["buttons"].get("Stop", False)
        if state["chart"] and (not self.charts or self.charts[-1][0] != state["chart"]["src"]):
            self.charts.append((state["chart"]["src"], state["running"]))
        state["parsed"] = Status.parse(state["status"])
        return state

    def mark(self) -> int:
        """The log's length now: pass it to `since` and `wait_line` to look at what comes next."""
        return self.read()["total"]

    def since(self, mark: int) -> list[str]:
        """The log's lines from `mark` on, as far as seen (a line never seen shows as a gap)."""
        if not self.seen:
            return []
        return [self.seen.get(i, "<line not seen>") for i in range(mark, max(self.seen) + 1)]

    def status(self) -> Status:
        parsed = self.read()["parsed"]
        assert parsed is not None, f"panel status line not understood: {self.read()['status']!r}"
        return parsed

    # -- waiting ---------------------------------------------------------------------------
    def wait_for(self, condition, what: str, timeout_s: float = PANEL_ACTION_S):
        """Poll the panel until condition(state) is truthy; returns it. Fails with what the panel shows."""
        found = None

        def check():
            nonlocal found
            found = condition(self.read())
            return found

        try:
            _wait(check, timeout_s, what, poll_s=PANEL_POLL_S)
        except TimeoutError as exc:
            self.fail(str(exc))
        return found

    def wait_line(self, pattern: str, mark: int, what: str, timeout_s: float = PANEL_ACTION_S) -> re.Match:
        """The first log line from `mark` on that matches `pattern` in full, once it shows."""
        regex = re.compile(pattern)

        def match(_state):
            return next((m for line in self.since(mark) if (m := regex.fullmatch(line))), None)

        return self.wait_for(match, what, timeout_s)

    def fail(self, message: str):
        state = self.read()
        shot = self.shots / f"02_panel_{len(list(self.shots.glob('02_panel_*.png'))) + 1}.png"
        try:
            _screenshot(self.page, shot)
        except Exception:  # noqa: BLE001 -- a diagnostic; the failure is the news
            shot = Path("(no screenshot)")
        shown = "\n    ".join(state["lines"])
        pytest.fail(f"{message}\n  status: {state['status']!r}\n  progress: {state['progress']!r}\n"
                    f"  buttons enabled: {state['buttons']}\n  error line: {state['error']!r}\n"
                    f"  log ({state['hidden']} earlier lines):\n    {shown}\n  screenshot: {shot}")

    # -- acting ----------------------------------------------------------------------------
    def button(self, label: str):
        return self.panel.get_by_role("button", name=label, exact=True)

    def click(self, label: str) -> int:
        """Click `label` once it is enabled; returns the log's length just before the click."""
        self.wait_for(lambda s: s["buttons"].get(label), f"panel button {label!r} enabled")
        mark = self.mark()
        self.button(label).click()
        return mark

    def type_into(self, description: str, value: str) -> None:
        """Type `value` into the input described `description` and leave it (the widget syncs on change)."""
        box = self.panel.get_by_label(description, exact=True)
        box.fill(value)
        box.press("Tab")
        assert float(box.input_value()) == float(value), f"{description}: shows {box.input_value()!r}, typed {value!r}"

    def idle(self) -> None:
        """No run going and no Reset question open (what each step starts from)."""
        self.wait_for(lambda s: s["buttons"].get("Run test") and not s["buttons"].get("Stop")
                      and not s["confirm_shown"], "panel idle (Run test enabled, Stop disabled, no question open)",
                      PANEL_RUN_S)

    def assert_no_failure(self, mark: int = 0) -> None:
        state = self.read()
        failed = [line for line in self.since(mark) if " failed: " in line]
        if failed or state["error"]:
            self.fail(f"the panel reports a failure: {failed or state['error']}")

    def next_field(self) -> str:
        """The field a deploy adds by default next: tags, then tags_2, tags_3 ... (one per deploy seen)."""
        deployed = sum(1 for line in self.seen.values() if line.startswith("Deployed the optional field "))
        return "tags" if deployed == 0 else f"tags_{deployed + 1}"

    def run_dir(self, out: str) -> Path:
        """A run directory the panel named (relative to the kernel's directory, the lab's root)."""
        path = Path(out)
        return path if path.is_absolute() else self.lab.root / path

# -- fixtures sharing one run per notebook --------------------------------------------------------
class Runs:
    """Each notebook is run once per module, on first use; its page stays open for later tests."""

    def __init__(self, browser, lab: Lab, shots: Path) -> None:
        self.browser, self.lab, self.shots = browser, lab, shots
        self._runs: dict[str, NotebookRun] = {}
        self._failures: dict[str, str] = {}

    def get(self, name: str) -> NotebookRun:
        if name in self._failures:
            pytest.fail(f"{name} could not be run (see its first test): {self._failures[name]}")
        if name not in self._runs:
            try:
                self._runs[name] = run_notebook(self.browser, self.lab, f"{name}.ipynb", self.shots)
            except AssertionError as exc:
                self._failures[name] = str(exc).splitlines()[0]
                raise
        return self._runs[name]

    def close(self) -> None:
        for run in self._runs.values():
            run.page.close()


@pytest.fixture(scope="module", autouse=True)
def _kernels_end_with_this_module():
    """The server may outlive this module (session scope); the kernels it started here do not."""
    yield
    for server in _STARTED_LABS:
        server.shutdown_kernels()


@pytest.fixture(scope="module")
def runs(browser, lab, shots):
    registry = Runs(browser, lab, shots)
    yield registry
    registry.close()


# -- tests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_jupyterlab_without_errors(runs, name):
    run = runs.get(name)
    assert_rendered_cleanly(run)
    assert run.images >= MIN_IMAGES[name], (f"{name}: {run.images} figures rendered, expected at least "
                                            f"{MIN_IMAGES[name]}\n{run.where()}")
    assert run.widgets >= MIN_WIDGETS[name], (f"{name}: {run.widgets} widgets rendered, expected at least "
                                              f"{MIN_WIDGETS[name]}\n{run.where()}")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_images_all_load(runs, name):
    run = runs.get(name)
    assert not run.broken_images, f"{name}: images that did not load: {run.broken_images}\n{run.where()}"


def test_03_report_shows_its_figures_embedded(runs):
    """03's last cell displays report.md with its figures as data URIs (report.embed_images): each loads."""
    run = runs.get("03_timeline")
    report = run.cells[-1]
    embedded = [img for img in report["images"] if img["src"].startswith("data:image/png;base64,")]
    assert len(embedded) >= 2, f"report.md's figures (timeline, sequence) not embedded: {report['images']}\n{run.where()}"
    assert all(img["ok"] for img in report["images"]), f"report.md images not loaded: {report['images']}\n{run.where()}"


# -- notebook 02's control panel, every button clicked ------------------------------------------------
# The steps share one panel (notebook 02's, in real time) and run in this order; each starts from
# an idle panel and reads the counts it checks from what the panel shows, not from a fixed script.
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_VERDICT = r"(?:Inconclusive: .+|No loss: .+|\d+ of \d+ nodes .+)"
_PANEL_LABELS = ("Add to root", "Run test", "Stop", "Print nodes", "Print info", "Reset", "Deploy schema change",
                 "Wait")


@pytest.fixture(scope="module")
def panel(runs, shots, lab):
    run = runs.get("02_write_and_deploy")
    driver = PanelDriver(run.page, shots, lab)
    if driver.panel.count() != 1:
        pytest.fail(f"control panel not found\n{run.where()}")
    return driver


def test_02_control_panel_renders_with_its_buttons(panel):
    for label in _PANEL_LABELS:
        assert panel.button(label).is_visible(), f"panel button {label!r} not visible"
    state = panel.read()
    assert "repro_kit control panel" in (panel.panel.text_content() or "")
    assert "real time" in (panel.panel.text_content() or ""), "notebook 02's panel should run in real time"
    assert state["buttons"]["Stop"] is False and state["buttons"]["Run test"] is True, state["buttons"]
    assert not state["confirm_shown"], "the Reset question shows before Reset was pressed"
    assert state["progress"] == "no run yet", state["progress"]
    assert state["chart"] and state["chart"]["ok"], f"live chart not shown: {state['chart']}"
    assert state["parsed"] is not None, f"status line not understood: {state['status']!r}"
    # what the notebook's own clicks (Add, Print info, Wait 2 s, Print info) left in the log
    shown = "\n".join(state["lines"])
    assert re.search(r"^Clock at \d+\.\d s of the session\.$", shown, re.M), shown  # no Run test yet: labelled
    assert "Atlas (a refresh of the Node collection): 2 node documents, 1 children in the root" in shown, shown
    panel.assert_no_failure()


def test_02_panel_add_to_root(panel):
    panel.idle()
    before = panel.status()
    mark = panel.click("Add to root")
    panel.wait_line(rf"Added a node to the root: {_UUID}", mark, "Add to root's line")
    # the device has it at once; Atlas once uploaded and translated (before any deploy: no halt)
    panel.wait_for(lambda s: s["parsed"] and (s["parsed"].device_children, s["parsed"].device_nodes)
                   == (before.device_children + 1, before.device_nodes + 1), "device counts grown by one in the status")
    panel.wait_for(lambda s: s["parsed"] and (s["parsed"].atlas_children, s["parsed"].atlas_nodes)
                   == (before.device_children + 1, before.device_nodes + 1) and not s["parsed"].views_differ,
                   "Atlas counts grown by one in the status")
    panel.assert_no_failure(mark)


def test_02_panel_print_nodes(panel):
    panel.idle()
    status = panel.status()
    mark = panel.click("Print nodes")
    root = panel.wait_line(r"root {4}\((\d+) children\)", mark, "Print nodes' root line")
    n = int(root[1])
    assert n == status.device_children, f"Print nodes: root has {n} children, the status says {status.device_children}"
    children = panel.wait_for(
        lambda _s: (found := [line for line in panel.since(mark) if re.fullmatch(r" {3}\S.* {4}\(\d+ children\)", line)])
        and len(found) >= n and found, f"Print nodes' {n} child lines")
    assert len(children) == n, children
    assert all(re.fullmatch(r" {3}a child node {4}\(0 children\)", line) for line in children), children
    panel.assert_no_failure(mark)


def test_02_panel_print_info(panel):
    panel.idle()
    status = panel.wait_for(lambda s: s["parsed"] and not s["parsed"].views_differ and s["parsed"],
                            "device and Atlas agreeing in the status")
    mark = panel.click("Print info")
    panel.wait_line(r"Atlas \(a refresh of the Node collection\): \d+ node documents, \d+ children in the root",
                    mark, "Print info's Atlas line")
    lines = [line for line in panel.since(mark) if not _LISTENER.match(line)]
    patterns = [r"User id: [0-9a-f]{24}", rf"Root node id: {_UUID}", r"Total node objects: (\d+)",
                r"Number of children in root: (\d+)",
                r"Atlas \(a refresh of the Node collection\): (\d+) node documents, (\d+) children in the root"]
    assert len(lines) >= 5, lines
    found = [re.fullmatch(p, line) for p, line in zip(patterns, lines[:5])]
    assert all(found), f"Print info's five lines, in order, expected; got {lines}"
    assert int(found[2][1]) == status.device_nodes and int(found[3][1]) == status.device_children, (lines, status)
    assert (int(found[4][1]), int(found[4][2])) == (status.atlas_nodes, status.atlas_children), (lines, status)
    panel.assert_no_failure(mark)


def test_02_panel_wait_with_the_seconds_typed(panel):
    panel.idle()
    panel.type_into("seconds", "1")  # the default is 10 s
    before = panel.status()
    mark = panel.click("Wait")
    clock = float(panel.wait_line(r"Clock at ([\d.]+) s(?: of the session)?\.", mark, "Wait's clock line")[1])
    waited = clock - before.t
    assert 0.9 <= waited < 9, f"Wait moved the clock {waited:.1f} s (from {before.t} s to {clock} s); 1 s was typed"
    panel.assert_no_failure(mark)


def test_02_panel_deploy_schema_change(panel):
    panel.idle()
    field = panel.next_field()  # "tags": the notebook's panel has not deployed yet
    mark = panel.click("Deploy schema change")
    m = panel.wait_line(r"Deployed the optional field (\w+) \(array<string>\) at [\d.]+ s(?: of the session)?: "
                        r"(\w+)\.", mark, "Deploy's line")
    assert (m[1], m[2]) == (field, "successful"), m[0]
    # production mode: translation halts; the re-import comes minutes later
    panel.wait_line(r"Production mode: translation to Atlas halts; the server re-imports the collection at "
                    rf"[\d.]+ s(?: of the session)? \(in about {PANEL_RESYNC_S:g} s\)\.", mark,
                    "Deploy's production-mode line")
    assert any(re.fullmatch(r"\[App Services\] translation halted at [\d.]+ s(?: of the session)?; Atlas was "
                            r"snapshotted; its re-import is due at .+", line)
               for line in panel.since(mark)), panel.since(mark)
    waiting = panel.wait_for(lambda s: re.search(r"Waiting: translation halted since .+; re-import due at .+ "
                                                 r"\(in (\d+):(\d\d)\)", s["status"]), "the countdown in the status")
    assert int(waiting[1]) * 60 + int(waiting[2]) <= PANEL_RESYNC_S
    panel.assert_no_failure(mark)


def test_02_panel_reset_cancel_then_confirm(panel):
    panel.idle()
    before = panel.status()
    mark = panel.click("Reset")
    question = panel.wait_for(lambda s: s["confirm_shown"] and s["confirm_text"], "the Confirm/Cancel pair")
    m = re.fullmatch(r"Delete all (\d+) nodes of user [0-9a-f]{24}\? \(only this user's\)", question.strip())
    assert m and int(m[1]) == before.device_nodes, (question, before)
    assert panel.read()["buttons"].get("Cancel") and panel.read()["buttons"].get("Confirm reset")
    panel.click("Cancel")
    panel.wait_line(r"Reset cancelled; nothing deleted\.", mark, "Cancel's line")
    panel.wait_for(lambda s: not s["confirm_shown"], "the Confirm/Cancel pair hidden after Cancel")
    after = panel.status()
    assert (after.device_nodes, after.device_children) == (before.device_nodes, before.device_children), after

    mark = panel.click("Reset")
    panel.wait_for(lambda s: s["confirm_shown"], "the Confirm/Cancel pair, again")
    panel.click("Confirm reset")
    deleted = panel.wait_line(r"Deleting (\d+) nodes", mark, "Confirm reset's line")
    assert int(deleted[1]) == before.device_nodes, (deleted[0], before)
    panel.wait_for(lambda s: not s["confirm_shown"], "the Confirm/Cancel pair hidden after Confirm")
    panel.wait_for(lambda s: s["parsed"] and s["parsed"].device_nodes == 0 and s["parsed"].device_children == 0,
                   "the device's nodes gone from the status")
    panel.assert_no_failure(mark)


def _start_run(panel, writes: str, interval_s: str, settle_s: str) -> tuple[int, float, str]:
    """Type the run's values, press Run test, check its first line; returns (mark, end_s, run dir)."""
    panel.idle()
    panel.type_into("writes", writes)
    panel.type_into("interval s", interval_s)
    panel.type_into("settle s", settle_s)
    mark = panel.click("Run test")
    m = panel.wait_line(r"Run test: (\d+) writes (\S+) s apart, then (\S+) s of watching \((\S+) s in all\); "
                        r"no automatic deploy: .+\. Recording to (\S+)", mark, "Run test's first line")
    assert (int(m[1]), float(m[2]), float(m[3])) == (int(writes), float(interval_s), float(settle_s)), \
        f"the values typed did not reach the run: {m[0]}"
    return mark, float(m[4]), m[5]


def _running(panel, end_s: float) -> dict:
    """Wait for the run to show as running; check the buttons and the progress label then."""
    state = panel.wait_for(lambda s: s["running"] and re.fullmatch(r"\d+ s elapsed, \d+ s left of \d+ s", s["progress"])
                           and s, "the run showing as running (Stop enabled, Run test disabled, progress)")
    buttons = state["buttons"]
    assert buttons["Stop"] and not buttons["Run test"] and not buttons["Reset"], buttons
    assert buttons["Deploy schema change"], f"Deploy must stay enabled during a run: {buttons}"
    total = re.fullmatch(r"\d+ s elapsed, \d+ s left of (\d+) s", state["progress"])[1]
    assert total == f"{end_s:.0f}", f"progress {state['progress']!r}, the run lasts {end_s} s"
    return state


def test_02_panel_run_test_to_the_end(panel):
    mark, end_s, out = _start_run(panel, "4", "0.3", "3")
    first = _running(panel, end_s)
    for i in range(1, 5):
        panel.wait_line(rf'Adding node with text "Test node {i}" \({4 - i} remaining\)', mark, f"write {i}'s line")
    panel.wait_line(rf"Run test finished; the run is in {re.escape(out)}\. Analysing…", mark, "Run test finished",
                    PANEL_RUN_S)
    panel.wait_line(_VERDICT, mark, "the run's verdict")
    panel.wait_line(rf"Report: {re.escape(out)}/report\.md", mark, "the report's line")
    end = panel.wait_for(lambda s: not s["running"] and s["progress"] == "finished" and s,
                         "progress 'finished', Run test enabled, Stop disabled")
    assert end["buttons"]["Run test"] and not end["buttons"]["Stop"], end["buttons"]
    assert end["chart"]["ok"], end["chart"]
    during = [src for src, running in panel.charts if running]
    changed = [src for src in during if src != first["chart"]["src"]]
    assert changed, (f"the live chart did not change during the run ({len(during)} image(s) seen while "
                     f"running, {len(panel.charts)} in all)")
    lines = panel.since(mark)
    assert "<line not seen>" not in lines, f"log lines went by unseen: {lines}"
    assert [line for line in lines if line.startswith("Adding node")] == [
        f'Adding node with text "Test node {i}" ({4 - i} remaining)' for i in range(1, 5)], lines
    meta = json.loads((panel.run_dir(out) / "meta.json").read_text(encoding="utf-8"))
    assert meta.get("finished") is True, meta
    panel.assert_no_failure(mark)


def test_02_panel_deploy_during_a_run_then_stop(panel):
    mark, end_s, out = _start_run(panel, "4", "0.3", "60")
    _running(panel, end_s)
    field = panel.next_field()  # "tags_2" after the deploy above
    deploy_mark = panel.click("Deploy schema change")
    m = panel.wait_line(r"Deployed the optional field (\w+) \(array<string>\) at [\d.]+ s(?: of the session)?: "
                        r"(\w+)\.", deploy_mark, "Deploy's line during the run")
    assert (m[1], m[2]) == (field, "successful"), m[0]
    assert panel.read()["running"], "the run ended before Stop (settle 60 s): the deploy was not during it"
    panel.wait_line(r'Adding node with text "Test node 1" \(3 remaining\)', mark, "write 1's line")
    stop_mark = panel.click("Stop")
    panel.wait_line(rf"Run test stopped at [\d.]+ s: the partial run is kept in {re.escape(out)}\. Analysing…", mark,
                    "Run test stopped", PANEL_RUN_S)
    panel.wait_line(_VERDICT, mark, "the partial run's verdict")
    panel.wait_line(rf"\(`repro-kit report {re.escape(out)}` analyses the partial run again at any time\.\)",
                    stop_mark, "Stop's line")
    end = panel.wait_for(lambda s: not s["running"] and s["progress"] == "stopped: partial run kept" and s,
                         "progress 'stopped: partial run kept', Run test enabled, Stop disabled")
    assert end["buttons"]["Run test"] and not end["buttons"]["Stop"], end["buttons"]
    run_dir = panel.run_dir(out)
    meta = json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
    assert meta.get("finished") is False and meta.get("stopped_at_s") is not None, meta
    ops = [json.loads(line) for line in (run_dir / "history.jsonl").read_text(encoding="utf-8").splitlines() if line]
    manual = [op for op in ops if op.get("f") == "deploy" and op.get("type") == "ok"
              and (op.get("value") or {}).get("manual")]
    assert [op["value"]["field"] for op in manual] == [field], f"the hand deploy is not in the run: {manual}"
    panel.assert_no_failure(mark)


# -- the investigator's whole session, in real time (issue 20's "done when"; issue 17 item 7) ------
_IN_VIEW_JS = """
(panel) => {
  // what a person sees without scrolling: each part's box inside the notebook's visible area
  const area = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')
      .getBoundingClientRect();
  const log = panel.querySelector('.rk-log');
  const blocks = [...log.querySelectorAll('pre.rk-lines')];
  const inside = (el, box) => { const r = el.getBoundingClientRect();
                                return r.top >= box.top - 1 && r.bottom <= box.bottom + 1 && r.height > 0; };
  const logBox = log.getBoundingClientRect();
  const newest = blocks[blocks.length - 1];
  const parts = {buttons: panel.querySelector('button'), status: panel.querySelector('.rk-status'),
                 result: panel.querySelector('.rk-result'), log: log,
                 stop: [...panel.querySelectorAll('button')].find(b => b.textContent.trim() === 'Export')};
  const seen = {};
  for (const [name, el] of Object.entries(parts)) seen[name] = !!el && inside(el, area);
  // the newest line: the bottom of the newest block, inside the log's view and the window
  const nr = newest.getBoundingClientRect();
  seen.newest_line = nr.bottom <= logBox.bottom + 1 && nr.bottom - 14 >= logBox.top - 1 && nr.bottom <= area.bottom;
  seen.geometry = {area: [area.top, area.bottom], log: [logBox.top, logBox.bottom], newest: [nr.top, nr.bottom],
                   scroll: log.scrollTop, blocks: blocks.length};
  // the first line showing in the log's view (where a reader is)
  const first = blocks.find(b => b.getBoundingClientRect().bottom > logBox.top + 2);
  seen.first_shown = first ? first.textContent.split('\\n')[0] : '';
  seen.panel_height = panel.getBoundingClientRect().height;
  seen.area_height = area.height;
  return seen;
}
"""


def _in_view(panel) -> dict:
    return panel.panel.evaluate(_IN_VIEW_JS)


def _stage(panel, name: str) -> Path:
    """A screenshot of the window as a person sees it (1400x1000), named for the stage."""
    path = panel.shots / f"session_{len(list(panel.shots.glob('session_*.png'))) + 1:02d}_{name}.png"
    panel.page.screenshot(path=str(path))
    return path


def _scroll_log(panel, to: str) -> None:
    """Scroll the log as a person does: up by a few lines, or back to its newest line."""
    panel.panel.evaluate("(p, to) => { const l = p.querySelector('.rk-log'); "
                         "l.scrollTop = to === 'bottom' ? 0 : l.scrollTop - 120; }", to)


def _file_browser_items(page) -> list[str]:
    return page.evaluate("() => [...document.querySelectorAll('.jp-DirListing-item .jp-DirListing-itemName')]"
                         ".map(e => e.textContent.trim())")


def test_02_panel_a_whole_session_in_real_time(panel):
    """Run test, a deploy by hand, Stop during its halt, Reset, Run test (which waits for the
    earlier deploy's re-import), a deploy in it, its re-import and verdict, then Export: the log
    follows its newest line unless scrolled up, the countdown shows, the verdict shows beside the
    status without scrolling, and Export's files are listed by JupyterLab's file browser. Each
    stage is photographed (`session_*.png`). What is asserted is what happened and in which
    order, never how fast."""
    page, shots = panel.page, []
    panel.idle()
    panel.wait_for(lambda s: "Waiting" not in s["status"], "no halt pending from the earlier steps",
                   PANEL_RESYNC_S * 4)
    panel.panel.evaluate("el => el.scrollIntoView({block: 'start'})")
    seen = _in_view(panel)
    assert seen["panel_height"] <= seen["area_height"], f"the panel does not fit the window: {seen}"
    assert all(seen[k] for k in ("buttons", "status", "result", "log")), f"{seen}"
    _scroll_log(panel, "bottom")  # where a person who scrolled through the earlier steps' lines comes back to

    # 1. Run test, and a deploy by hand a few writes in
    mark, end_s, out_a = _start_run(panel, "60", "1", "60")
    panel.wait_line(r'Adding node with text "Test node 3" \(57 remaining\)', mark, "write 3's line")
    deploy = panel.click("Deploy schema change")
    deployed = panel.wait_line(r"Deployed the optional field \w+ \(array<string>\) at ([\d.]+) s: successful\.",
                               deploy, "the deploy's line, on the run's clock")
    # the halt on the run's clock: since the deploy, due PANEL_RESYNC_S later. Each time is shown
    # rounded to 0.1 s from its own exact value (the halt's record comes a moment after the deploy's
    # line), so each is compared within that rounding, not as the text the deploy's line rounds to.
    first = panel.wait_for(lambda s: re.search(r"Waiting: translation halted since ([\d.]+) s; "
                                               r"re-import due at ([\d.]+) s \(in 0:(\d\d)\)", s["status"]),
                           "the countdown to the re-import in the status")
    since, due = float(first[1]), float(first[2])
    assert abs(since - float(deployed[1])) <= 0.15, (deployed[0], first[0])
    assert abs(due - since - PANEL_RESYNC_S) <= 0.15, first[0]
    later = panel.wait_for(lambda s: (m := re.search(r"\(in 0:(\d\d)\)", s["status"])) and int(m[1]) < int(first[3])
                           and m, "the countdown going down")
    assert int(later[1]) < int(first[3])
    shots.append(_stage(panel, "deployed_countdown"))

    # the log follows its newest line ...
    mark_follow = panel.mark()
    panel.wait_for(lambda s: len(panel.since(mark_follow)) >= 3, "three more lines")
    assert _in_view(panel)["newest_line"], "the log did not follow its newest line"
    # ... does not jump to new lines while scrolled up, then follows again from the bottom
    _scroll_log(panel, "up")
    held = _in_view(panel)
    assert not held["newest_line"] and held["first_shown"], held
    mark_up = panel.mark()
    panel.wait_for(lambda s: len(panel.since(mark_up)) >= 3, "three more lines while scrolled up")
    still = _in_view(panel)
    assert not still["newest_line"] and still["geometry"]["scroll"] < 0, (held, still)
    shots.append(_stage(panel, "log_scrolled_up"))
    _scroll_log(panel, "bottom")
    mark_down = panel.mark()
    panel.wait_for(lambda s: len(panel.since(mark_down)) >= 2, "two more lines")
    assert _in_view(panel)["newest_line"], "the log did not follow again from its bottom"

    # 2. Stop during the halt: the partial run's verdict, inconclusive, in the result box
    assert "Waiting: translation halted" in panel.read()["status"], "the halt ended before Stop"
    panel.click("Stop")
    panel.wait_line(rf"Run test stopped at [\d.]+ s: the partial run is kept in {re.escape(out_a)}\. Analysing…", mark,
                    "Run test stopped", PANEL_RUN_S)
    panel.wait_for(lambda s: "INCONCLUSIVE" in s["result"], "the partial run's verdict in the result box")
    shots.append(_stage(panel, "stopped_during_the_halt"))

    # 3. Reset, during the halt: it says what is still pending
    reset = panel.click("Reset")
    panel.wait_for(lambda s: s["confirm_shown"], "the Confirm/Cancel pair")
    panel.click("Confirm reset")
    panel.wait_line(r"Deleting \d+ nodes", reset, "Reset's line")
    panel.wait_line(r"\(Still waiting: translation halted since [\d.]+ s; re-import due at [\d.]+ s \(in [\d:]+\); a "
                    r"new deploy gets its own full halt and re-import\.\)", reset, "what Reset leaves pending")

    # 4. Run test during the earlier halt: it waits for that re-import, then starts on its own clock
    mark_b, end_b, out_b = _start_run(panel, "8", "1", f"{PANEL_RESYNC_S + 25:g}")
    panel.wait_line(r"Run test waits for the earlier deploy's re-import first \(translation halted since .+; "
                    r"re-import due at .+\): .+", mark_b, "Run test waiting for the re-import")
    panel.wait_for(lambda s: "Run test waits" in s["result"] and re.search(r"re-import due at .+\(in ", s["status"]),
                   "the wait shown in the result box and the status")
    shots.append(_stage(panel, "run_test_waits_for_the_reimport"))
    resumed = panel.wait_line(r"\[App Services\] translation resumed at .+", mark_b, "the earlier re-import's end",
                              PANEL_RESYNC_S * 4)
    starts = panel.wait_line(r"Run test starts now: translation has resumed; times are seconds since this start\.",
                             mark_b, "the run's start")
    lines = panel.since(mark_b)
    assert lines.index(resumed[0]) < lines.index(starts[0])
    _running(panel, end_b)

    # 5. a deploy in this run: its own full halt and re-import; the wait through it; the verdict
    panel.wait_line(r'Adding node with text "Test node 2" \(6 remaining\)', mark_b, "run B's write 2")
    deploy_b = panel.click("Deploy schema change")
    deployed_b = panel.wait_line(r"Deployed the optional field \w+ \(array<string>\) at ([\d.]+) s: successful\.",
                                 deploy_b, "run B's deploy")
    due_b = float(deployed_b[1]) + PANEL_RESYNC_S
    panel.wait_line(rf"\[App Services\] translation halted at {re.escape(deployed_b[1])} s; Atlas was snapshotted; "
                    rf"its re-import is due at {due_b:.1f} s", deploy_b, "run B's own halt")
    panel.wait_for(lambda s: re.search(rf"re-import due at {due_b:.1f} s \(in 0:\d\d\)", s["status"]),
                   "run B's countdown")
    batch = panel.wait_line(r"\s+\(a re-import batch of \d+ documents from the server, at ([\d.]+) s\)", deploy_b,
                            "the re-import reaching the device", PANEL_RESYNC_S * 4)
    assert float(batch[1]) >= due_b - 0.05, (batch[0], due_b)  # a full wait after this deploy
    finished = panel.wait_line(rf"Run test finished; the run is in {re.escape(out_b)}\. Analysing…", mark_b,
                               "run B's end", PANEL_RUN_S)
    verdict = panel.wait_line(r"(\d+) of 8 nodes orphaned .+; first loss at ([\d.]+) s\..*", mark_b, "the loss")
    report_line = panel.wait_line(rf"Report: {re.escape(out_b)}/report\.md", mark_b, "the report's line")
    lines = panel.since(mark_b)
    assert lines.index(batch[0]) < lines.index(finished[0]) < lines.index(verdict[0]) < lines.index(report_line[0])
    assert int(verdict[1]) > 0 and float(verdict[2]) >= due_b - 0.05  # the loss reproduces, at the new re-import
    state = panel.wait_for(lambda s: "LOSS" in s["result"] and s, "the verdict in the result box")
    assert f"{verdict[1]} of 8 nodes orphaned" in state["result"]
    view = _in_view(panel)
    assert view["result"] and view["status"] and view["buttons"] and view["newest_line"], \
        f"the verdict, status, buttons and newest line are not all in view without scrolling: {view}"
    shots.append(_stage(panel, "verdict_beside_the_status"))

    # 6. Export: the report, figures and live chart in the run directory, which Lab's file browser lists
    export = panel.click("Export")
    panel.wait_line(rf"Exported to {re.escape(out_b)}: report\.md, report\.html, timeline\.png, timeline\.svg, "
                    r"sequence\.png, sequence\.svg, live_chart\.png, live_chart\.svg", export, "Export's line")
    files = panel.wait_for(lambda s: len(s["export_files"]) == 8 and s["export_files"], "Export's links")
    assert files == ["report.md", "report.html", "timeline.png", "timeline.svg", "sequence.png", "sequence.svg",
                     "live_chart.png", "live_chart.svg"]
    shots.append(_stage(panel, "exported"))
    panel.panel.locator("a.rk-export-dir").click()  # the run directory, in Lab's file browser
    listed = _wait(lambda: (items := _file_browser_items(page)) and set(files) <= set(items) and items, 60,
                   "Export's files listed in JupyterLab's file browser")
    assert set(files) <= set(listed), listed
    crumbs = page.evaluate("() => (document.querySelector('.jp-BreadCrumbs') || {}).textContent || ''")
    assert Path(out_b).name in crumbs, crumbs
    shots.append(_stage(panel, "file_browser_lists_the_export"))
    panel.panel.locator("a.rk-export-file", has_text="report.md").click()  # opens in Lab
    _wait(lambda: page.evaluate("() => [...document.querySelectorAll('.lm-TabBar-tabLabel')]"
                                ".some(t => t.textContent.trim() === 'report.md')"), 60, "report.md opened in a tab")
    shots.append(_stage(panel, "report_md_opened"))
    page.locator(".lm-TabBar-tab", has_text="02_write_and_deploy").first.click()
    for name in files:
        assert (panel.run_dir(out_b) / name).stat().st_size > 0, name
    panel.assert_no_failure(mark)
    print("session screenshots:", *shots, sep="\n  ")


def _negative_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(  # harmless stderr: a print, a warning and a tqdm-style bar
            "import sys, warnings\n"
            "print('just a note on stderr', file=sys.stderr)\n"
            "warnings.warn('a harmless warning')\n"
            "sys.stderr.write('100%|##########| 10/10 [00:00<00:00, 999.00it/s]\\n')"),
        nbformat.v4.new_code_cell(  # a widget whose model does not exist
            "from IPython.display import display\n"
            f"display({{'{WIDGET_MIME}': {{'model_id': 'no-such-model', 'version_major': 2, "
            "'version_minor': 0}, 'text/plain': 'a widget'}, raw=True)"),
        nbformat.v4.new_code_cell(  # an image that cannot load (a relative link to no file)
            "from IPython.display import Markdown\n"
            "display(Markdown('![missing figure](no-such-figure.png)'))"),
        nbformat.v4.new_code_cell("1/0"),
        nbformat.v4.new_code_cell("print('never runs')"),
    ]
    nbformat.write(nb, path)


def test_harness_detects_an_exception_and_a_broken_widget(browser, lab, shots):
    name = f"zz_negative_{uuid.uuid4().hex[:8]}"
    _negative_notebook(lab.root / f"{name}.ipynb")
    run = run_notebook(browser, lab, f"{name}.ipynb", shots)
    try:
        assert len(run.errors) == 1, run.errors  # the stderr note, warning and bar are not errors
        assert "ZeroDivisionError: division by zero" in run.errors[0], run.errors
        assert run.errors[0].startswith("code cell 4 [4]"), run.errors
        assert run.not_run == [5]
        assert len(run.broken_images) == 1 and run.broken_images[0].startswith("code cell 3 "), run.broken_images
        # "Error displaying widget: model not found" (or, were the manager never restored, a
        # "Loading widget..." that never resolves): either way cell 2 is reported
        assert any(p.startswith("code cell 2 ") for p in run.widget_problems), run.widget_problems
        with pytest.raises(AssertionError, match="ZeroDivisionError"):
            assert_rendered_cleanly(run)
    finally:
        run.page.close()


# -- report.html, opened offline from file:// ----------------------------------------------------------
_POINT_ON_BAR_JS = """
([trace, node]) => {
  // the middle of a bar of `trace` ("present" | "absent") on the device panel, for the node labelled `node`
  const gd = document.getElementById('timeline');
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const t = gd.data.find(d => d.name === trace && d.yaxis === 'y');
  const i = t.y.indexOf(node);
  if (i < 0) return null;
  const box = gd.getBoundingClientRect();
  return {x: box.left + xa._offset + xa.l2p(t.base[i] + t.x[i] / 2),
          y: box.top + ya._offset + ya.l2p(ya.d2l(node))};
}
"""


def _hover_text(page, trace: str, label: str) -> str:
    """Move the mouse onto the node's bar (scrolled into view) and read what Plotly shows."""
    point = page.evaluate(_POINT_ON_BAR_JS, [trace, label])
    assert point is not None, f"no {trace} bar for {label}"
    page.evaluate("y => window.scrollBy(0, y - 400)", point["y"])
    point = page.evaluate(_POINT_ON_BAR_JS, [trace, label])
    page.mouse.move(point["x"], point["y"])
    return _wait(lambda: page.evaluate(
        "() => (document.querySelector('#timeline .hoverlayer') || {}).textContent || ''"),
        10, f"a hover label over {label}")


@dataclass
class OfflinePage:
    """A page opened from file:// with every network request recorded and blocked."""

    page: Any
    context: Any
    url: str
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def network(self) -> list[str]:
        """Requests for anything but the page itself (data: and blob: URIs are not requests)."""
        return [r for r in self.requests if r != self.url and not r.startswith(("data:", "blob:"))]


def open_offline(browser, path: Path) -> OfflinePage:
    url = path.resolve().as_uri()
    context = browser.new_context(viewport=VIEWPORT, offline=True)
    opened = OfflinePage(page=None, context=context, url=url)

    def block(route):
        if route.request.url == url:  # the page itself, from the disk
            route.continue_()
            return
        opened.blocked.append(route.request.url)
        route.abort()

    context.route("**/*", block)
    page = context.new_page()
    page.on("request", lambda r: opened.requests.append(r.url))
    page.on("pageerror", lambda e: opened.errors.append(str(e)))
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    page.goto(url, wait_until="load")
    opened.page = page
    return opened


def test_report_html_opens_offline_with_no_request_and_hovering_a_lost_node_shows_its_cause(
        browser, tmp_path, shots):
    """report.html from file://, every request recorded and anything but the page itself blocked:
    the page loads nothing (Plotly, the data and the sequence diagram are inline), draws its chart,
    and hovering a lost node's bar shows its cause; a kept node's shows no cause."""
    from repro_kit.client import connect
    from repro_kit.findings import analyse
    from repro_kit.plots import _short_labels
    from repro_kit.report import write_report
    from repro_kit.driver import run_test

    a = analyse(run_test(connect(seed=3), out=tmp_path / "run"))
    rows = list(dict.fromkeys(a.intervals["node_id"].astype(str)))
    label = dict(zip(rows, _short_labels(rows)))
    opened = open_offline(browser, write_report(a)["html"])
    page = opened.page
    try:
        page.wait_for_selector("#timeline .main-svg", timeout=30_000)
        page.screenshot(path=str(shots / "report_html.png"), full_page=True)
        lost = a.verdict.lost[0]
        (cause,) = a.causes
        text = _hover_text(page, "absent", label[lost])
        page.screenshot(path=str(shots / "report_html_hover.png"))
        assert lost in text and "LOST" in text
        assert cause.describe() in text and f"rule {cause.rule}" in text
        kept = a.verdict.acknowledged[0]
        page.mouse.move(1, 1)
        text = _hover_text(page, "present", label[kept])
        assert kept in text and "kept" in text and "cause" not in text
        # zoom into the re-import with its button: the axis follows
        page.locator("#timeline .updatemenu-button", has_text="the re-import").click()
        lo, hi = _wait(lambda: (lambda r: r if r[1] - r[0] < 10 else None)(
            page.evaluate("() => document.getElementById('timeline')._fullLayout.xaxis.range")), 10, "zoom")
        assert lo <= float(a.batches["time"].iloc[0]) <= hi
    finally:
        opened.context.close()
    assert not opened.blocked, f"report.html asked the network for {opened.blocked}"
    assert opened.network() == [], opened.requests
    assert not opened.errors, opened.errors


def test_the_offline_harness_sees_a_page_that_reaches_for_the_network(browser, tmp_path):
    """The check above can fail: a page with a CDN script and a remote image is caught."""
    page_path = tmp_path / "remote.html"
    page_path.write_text("<!DOCTYPE html><html><head><script src='https://cdn.example.invalid/lib.js'></script>"
                         "</head><body><img src='http://img.example.invalid/a.png'></body></html>")
    opened = open_offline(browser, page_path)
    try:
        _wait(lambda: len(opened.blocked) >= 2, 10, "the blocked requests")
    finally:
        opened.context.close()
    assert sorted(opened.network()) == ["http://img.example.invalid/a.png", "https://cdn.example.invalid/lib.js"]


# -- the classifiers, without a browser -------------------------------------------------------------
def test_error_in_stderr_tells_exceptions_from_warnings():
    ipython = ("---------------------------------------------------------------------------\n"
               "ZeroDivisionError                         Traceback (most recent call last)\n"
               "Cell In[2], line 1\n----> 1 1/0\n\nZeroDivisionError: division by zero")
    assert error_in_stderr(ipython) == "ZeroDivisionError: division by zero"
    assert error_in_stderr("\x1b[31mKeyError\x1b[39m: 'x'") == "KeyError: 'x'"
    assert error_in_stderr("Print info failed: ValueError: bad\n") == "ValueError: bad"
    assert error_in_stderr("Traceback (most recent call last):\n  File ...\nboom.Custom: x").startswith("Traceback")
    assert error_in_stderr("/tmp/x.py:2: UserWarning: careful\n  warnings.warn('careful')\n") is None
    assert error_in_stderr("/tmp/x.py:2: DeprecationWarning: an Error in the docs\n") is None
    assert error_in_stderr(" 40%|####      | 4/10 [00:01<00:02,  3.00it/s]") is None
    assert error_in_stderr("just a note on stderr\n") is None


def test_widget_problem_spots_unrendered_widgets():
    assert widget_problem(None, "Error displaying widget: model not found")
    assert widget_problem(None, "Loading widget...")
    assert widget_problem("text/plain", "VBox(children=(HTML(value='<b>repro_kit control panel</b>'),))")
    assert widget_problem("text/plain", '{"application/vnd.jupyter.widget-view+json": {"model_id": "x"}}')
    assert widget_problem("text/plain", "device: 2 nodes, root has 1 children") is None
    assert widget_problem("application/vnd.jupyter.stdout", "Clock at 6.0 s.") is None
