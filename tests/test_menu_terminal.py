"""The menu in a real terminal (a pseudo-terminal), in real time, as the report's author used it:
Run test, a deploy by hand a few seconds in, Print info while Atlas is halted, the listener
lines of the re-import, Print nodes; Ctrl-C stops a run and returns to the prompt, two exit.

Timings are shortened (writes 0.5 s apart, a 3 s resync delay) so the test takes seconds;
waits are for text to appear, with generous limits, never for a fixed time.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROMPT = "Choose a command (1-9, ? for the list): "


class Terminal:
    """A child process on a pseudo-terminal: type into it, read what it shows."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal, so ^C is a real SIGINT
            os.chdir(cwd)
            env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "dumb"}
            for name in [k for k in env if k.startswith(("MONGODB_", "REPRO_KIT_"))]:
                del env[name]
            os.execve(sys.executable, [sys.executable, "-m", "repro_kit", *argv], env)
        self.pid, self.fd = pid, fd
        self.text = ""
        self.seen = 0

    def read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # the child exited
                chunk = b""
            self.text += chunk.decode("utf-8", "replace").replace("\r\n", "\n")

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match:
        """Wait for `pattern` after what was matched before; fail with the screen if it never shows."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            match = regex.search(self.text, self.seen)
            if match:
                self.seen = match.end()
                return match
            if time.monotonic() > deadline:
                pytest.fail(f"{pattern!r} did not appear within {timeout:g} s; the terminal shows:\n{self.text[-3000:]}")
            self.read(0.1)

    def expect_all(self, *patterns: str, timeout: float = 30.0) -> list[re.Match]:
        """Wait for every pattern after what was matched before, in any order: lines that come
        from concurrent happenings (the device's listener, the control plane) have no fixed
        order between them. Afterwards, matching resumes after the last of them."""
        deadline = time.monotonic() + timeout
        regexes = [re.compile(p) for p in patterns]
        while True:
            matches = [regex.search(self.text, self.seen) for regex in regexes]
            if all(matches):
                self.seen = max(m.end() for m in matches)  # type: ignore[union-attr]
                return matches  # type: ignore[return-value]
            if time.monotonic() > deadline:
                missing = [p for p, m in zip(patterns, matches) if not m]
                pytest.fail(f"{missing!r} did not appear within {timeout:g} s; the terminal shows:\n{self.text[-3000:]}")
            self.read(0.1)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            self.read(0.05)
        os.kill(self.pid, signal.SIGKILL)
        pytest.fail(f"the menu did not exit; it shows:\n{self.text[-2000:]}")

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


@pytest.fixture
def menu(tmp_path):
    term = Terminal(["menu", "--writes", "8", "--interval", "0.5", "--settle", "6", "--resync-delay", "3"], tmp_path)
    yield term
    term.close()


def test_the_reports_session_in_real_time(menu, tmp_path):
    menu.expect(r"Connected \(emulator, production mode, real time\)")
    menu.expect(re.escape(PROMPT))
    menu.type("2\n")  # Run test
    menu.expect(r'Adding node with text "Test node 3" \(5 remaining\)')
    menu.type("6\n")  # Deploy schema change, by hand, while the run goes
    menu.expect(r"Field name \[tags\]: ")
    menu.type("\n")
    menu.expect(r"BSON type \[array<string>\]: ")
    menu.type("\n")
    menu.expect(r"Deployed the optional field tags \(array<string>\) at [\d.]+ s of the session \([\d.]+ s into the Run test\): successful\.")
    menu.expect(r'Adding node with text "Test node 8" \(0 remaining\)\n\t: User has 9 total nodes\n\t: Root has 8')
    menu.type("4\n")  # Print info during the halt: the device has every note, Atlas only the early ones
    info = menu.expect(r"Total node objects: (\d+)\nNumber of children in root: (\d+)\n"
                       r"Atlas \(a refresh of the Node collection\): (\d+) node documents, (\d+) children")
    device_total, device_children, atlas_total, atlas_children = map(int, info.groups())
    assert (device_total, device_children) == (9, 8)
    assert atlas_children < device_children and atlas_total == atlas_children + 1
    # a few seconds later the listener lines report the re-import, with no key pressed; the device's
    # batch line and the control plane's resume line come from concurrent happenings, in either order
    batch, _ = menu.expect_all(r"\t: Root has (\d+) children\n\t  \(a re-import batch of (\d+) documents",
                               r"\[App Services\] translation resumed")
    assert int(batch.group(1)) == atlas_children
    menu.type("3\n")  # Print nodes: the root lacks every note made after the deploy (one block)
    head = menu.expect(r"root\t\((\d+) children\)\n")
    assert int(head.group(1)) == atlas_children
    nodes = menu.expect(r"(?:   Test node \d+\t\(0 children\)\n){%d}" % atlas_children)  # the block's lines, all read
    shown = re.findall(r"Test node (\d+)", nodes.group(0))
    assert shown == [str(i) for i in range(1, atlas_children + 1)], menu.text[-2500:]
    menu.expect(r"Run test finished; the run is in (runs/\S+)\.", timeout=60)
    verdict = menu.expect(r"(\d+) of 8 nodes orphaned")
    assert int(verdict.group(1)) == 8 - atlas_children
    run_dir = tmp_path / re.search(r"Run test finished; the run is in (runs/\S+)\.", menu.text).group(1)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["verdict"] == "lost" and report["causes"][0]["rule"] == "clear-vs-array-insert"

    # Ctrl-C during a second Run test stops it, keeps the partial run, and returns to the prompt
    menu.type("5\n")
    menu.expect(r"Type 'yes' to confirm: ")
    menu.type("yes\n")
    menu.expect(r"Deleting \d+ nodes")
    menu.type("2\n")
    menu.expect(r'Adding node with text "Test node 2"')
    menu.type("\x03")
    stopped = menu.expect(r"Run test stopped at [\d.]+ s: the partial run is kept in (runs/\S+)\.")
    menu.expect(re.escape(PROMPT))
    partial = tmp_path / stopped.group(1)
    meta = json.loads((partial / "meta.json").read_text())
    assert meta["finished"] is False and meta["stopped_at_s"] > 0
    assert json.loads((partial / "report.json").read_text())["verdict"] == "inconclusive"
    # with nothing running, one Ctrl-C warns, the second exits
    menu.type("\x03")
    menu.expect(r"Press Ctrl-C again to exit")
    menu.type("\x03")
    menu.expect("Exiting.")
    assert menu.wait() == 130


def test_end_of_input_cancels_a_question_and_then_ends_the_menu(menu):
    menu.expect(re.escape(PROMPT))
    menu.type("6\n")
    menu.expect(r"Field name \[tags\]: ")
    menu.type("\x04")  # Ctrl-D at the question: cancel, deploy nothing
    menu.expect(r"Deploy cancelled; nothing deployed\.")
    menu.expect(re.escape(PROMPT))
    menu.type("\x04")  # Ctrl-D at the prompt: the end
    assert menu.wait() == 0
    assert "Deployed" not in menu.text
