"""The menu in a real terminal (a pseudo-terminal, TERM=xterm), in real time, as the report's
author used it: Run test, a deploy by hand a few seconds in, Print info while Atlas is halted
(what the session waits for, with a countdown), the listener lines of the re-import, Print
nodes; the prompt redrawn under every line that arrives while it waits, with what was typed;
Ctrl-C stops a run or cancels a Wait and returns to the prompt, two at the prompt exit.

The terminal is read as a person sees it: a line the menu erases (its prompt, redrawn below a
line that arrived) is gone from `text`. Timings are shortened (writes 0.5 s apart, a 3 s
resync delay) so the test takes seconds; waits are for text to appear, with generous limits,
never for a fixed time, and what is asserted is which lines came and in which causal order.
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


ERASE_LINE = "\r\x1b[K"
_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A child process on a pseudo-terminal: type into it, read what it shows.

    `text` is the transcript a person reads: "\\r\\n" as "\\n", a line erased ("\\r" + ESC[K) gone,
    other control sequences dropped. `raw` keeps every byte as it came."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal, so ^C is a real SIGINT
            os.chdir(cwd)
            environ = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "REPRO_KIT_"))}
            environ.update({"PYTHONPATH": str(REPO), "TERM": "xterm", "REPRO_KIT_RUNS": str(cwd / "runs"),
                            **(env or {})})
            os.execve(sys.executable, [sys.executable, "-m", "repro_kit", *argv], environ)
        self.pid, self.fd = pid, fd
        self.raw = ""
        self.text = ""
        self.seen = 0
        self.erased = 0  # lines the menu erased (its prompt, redrawn below a line that arrived)
        self._pending = ""

    def feed(self, chunk: str) -> None:
        """Apply what the child wrote to the transcript (a sequence split between reads waits)."""
        data = (self._pending + chunk).replace("\r\n", "\n")
        tail = re.search(r"\x1b\[?[0-9;?]*$", data)  # a control sequence cut short: wait for its end
        keep = len(data) - tail.start() if tail else next(
            (n for n in range(min(len(data), len(ERASE_LINE) - 1), 0, -1) if ERASE_LINE.startswith(data[-n:])), 0)
        data, self._pending = (data[:-keep], data[-keep:]) if keep else (data, "")
        for i, part in enumerate(data.split(ERASE_LINE)):
            if i:  # erase the current line: what follows the last newline
                self.text = self.text[: self.text.rfind("\n") + 1]
                self.seen = min(self.seen, len(self.text))
                self.erased += 1
            self.text += _CSI.sub("", part)

    def read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # the child exited
                chunk = b""
            decoded = chunk.decode("utf-8", "replace")
            self.raw += decoded
            self.feed(decoded)

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

    def expect_raw(self, pattern: str, timeout: float = 30.0) -> re.Match:
        """Wait for `pattern` in the bytes as written (what the screen showed for a moment: a prompt
        redrawn, later erased to print the next line above it)."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            match = regex.search(self.raw)
            if match:
                return match
            if time.monotonic() > deadline:
                pytest.fail(f"{pattern!r} was never written within {timeout:g} s; raw output:\n{self.raw[-3000:]!r}")
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

    def interrupt(self, answer: str) -> re.Match:
        """Ctrl-C, once, then wait for `answer`: every Ctrl-C must count, even one that lands in the
        instant readline draws its prompt (repro_kit._ctrlc sends it again if readline missed it)."""
        self.type("\x03")
        return self.expect(answer)

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
    menu.expect(r"Times are seconds since the latest Run test started")
    menu.expect(re.escape(PROMPT))
    menu.type("2\n")  # Run test
    menu.expect(r"Recording to runs/\S+")
    # a line that arrives while the prompt waits comes above it, and the prompt is drawn again below
    menu.expect(r'Adding node with text "Test node 3" \(5 remaining\)')
    assert re.search(r'Adding node with text "Test node 3" \(5 remaining\)\r\n' + re.escape(PROMPT), menu.raw), \
        menu.raw[-1500:]
    assert menu.erased > 0, "the menu never erased its prompt to print a line above it"
    menu.type("6\n")  # Deploy schema change, by hand, while the run goes
    menu.expect(r"Field name \[tags\]: ")
    menu.type("\n")
    menu.expect(r"BSON type \[array<string>\]: ")
    menu.type("\n")
    halted, deployed, due = menu.expect_all(
        r"\[App Services\] translation halted at ([\d.]+) s; Atlas was snapshotted; its re-import is due at "
        r"([\d.]+) s",
        r"Deployed the optional field tags \(array<string>\) at ([\d.]+) s: successful\.",
        r"the server re-imports the collection at ([\d.]+) s \(in about 3 s\)\.")
    assert float(due[1]) == pytest.approx(float(deployed[1]) + 3, abs=0.11), (deployed[0], due[0])
    assert (halted[1], halted[2]) == (deployed[1], due[1]), (halted[0], deployed[0], due[0])  # one clock
    menu.type("4")  # typed, not yet entered: the next line that arrives redraws the prompt with it
    menu.expect_raw(r'Adding node with text "Test node \d" \(\d remaining\)\r\n' + re.escape(PROMPT) + "4")
    menu.expect(r'Adding node with text "Test node 8" \(0 remaining\)\n\t: User has 9 total nodes\n\t: Root has 8')
    menu.type("\n")  # Print info during the halt: the device has every note, Atlas only the early ones
    info = menu.expect(r"Total node objects: (\d+)\nNumber of children in root: (\d+)\n"
                       r"Atlas \(a refresh of the Node collection\): (\d+) node documents, (\d+) children in the root\n"
                       r"Waiting: translation halted since ([\d.]+) s; re-import (?:due at ([\d.]+) s \(in 0:0\d\)|"
                       r"under way \(due at ([\d.]+) s\))\nClock: ([\d.]+) s since Run test started")
    device_total, device_children, atlas_total, atlas_children = map(int, info.groups()[:4])
    assert (device_total, device_children) == (9, 8)
    assert atlas_children < device_children and atlas_total == atlas_children + 1
    assert float(info[5]) == float(deployed[1]) and (info[6] or info[7]) == due[1], info[0]
    # a few seconds later the listener lines report the re-import, with no key pressed; the device's
    # batch line and the control plane's resume line come from concurrent happenings, in either order
    batch, _ = menu.expect_all(r"\t: Root has (\d+) children\n\t  \(a re-import batch of (\d+) documents",
                               r"\[App Services\] translation resumed at [\d.]+ s")
    assert int(batch.group(1)) == atlas_children
    menu.type("3\n")  # Print nodes: the root lacks every note made after the deploy (one block)
    head = menu.expect(r"root\t\((\d+) children\)\n")
    assert int(head.group(1)) == atlas_children
    nodes = menu.expect(r"(?:   Test node \d+\t\(0 children\)\n){%d}" % atlas_children)  # the block's lines, all read
    shown = re.findall(r"Test node (\d+)", nodes.group(0))
    assert shown == [str(i) for i in range(1, atlas_children + 1)], menu.text[-2500:]
    finished = menu.expect(r"Run test finished; the run is in (runs/\S+)\. Analysing…", timeout=60)
    verdict = menu.expect(r"(\d+) of 8 nodes orphaned \(documents kept, missing from the root's children\); "
                          r"first loss at ([\d.]+) s")
    assert int(verdict.group(1)) == 8 - atlas_children
    assert float(verdict[2]) >= float(due[1])  # one clock: the loss shows at the re-import, after its due time
    run_dir = tmp_path / finished.group(1)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["verdict"] == "lost" and report["causes"][0]["rule"] == "clear-vs-array-insert"

    # Ctrl-C during a Wait cancels the wait, not the menu
    menu.expect(re.escape(PROMPT))
    menu.type("7\n")
    menu.expect(r"Seconds to wait: ")
    menu.type("600\n")
    menu.expect(r"Waiting 600 s \(Ctrl-C cancels\)")
    menu.interrupt(r"Wait cancelled at [\d.]+ s\.\n" + re.escape(PROMPT))
    assert "Press Ctrl-C again" not in menu.text

    # Ctrl-C during a second Run test stops it, keeps the partial run, and returns to the prompt
    menu.type("5\n")
    menu.expect(r"Type 'yes' to confirm: ")
    menu.type("yes\n")
    menu.expect(r"Deleting \d+ nodes")
    menu.type("2\n")
    menu.expect(r'Adding node with text "Test node 2"')
    stopped = menu.interrupt(r"Run test stopped at [\d.]+ s: the partial run is kept in (runs/\S+)\. Analysing…")
    partial = tmp_path / stopped.group(1)
    menu.expect(r"Report: " + re.escape(stopped.group(1)) + "/report.md")  # Stop waits for the verdict
    menu.expect(re.escape(PROMPT))
    meta = json.loads((partial / "meta.json").read_text())
    assert meta["finished"] is False and meta["stopped_at_s"] > 0
    assert json.loads((partial / "report.json").read_text())["verdict"] == "inconclusive"
    # with nothing running, one Ctrl-C warns, the second exits
    menu.interrupt(r"Press Ctrl-C again to exit")
    menu.interrupt("Exiting.")
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


def test_every_ctrl_c_at_the_prompt_counts(tmp_path):
    """Ctrl-C right after the prompt is redrawn, many times: each is answered at once (one that
    landed while readline drew its prompt used to wait for the next key), and two never count
    as one, nor one as two."""
    term = Terminal(["menu", "--virtual"], tmp_path)
    try:
        term.expect(re.escape(PROMPT))
        for _ in range(25):
            term.type("\x03")
            term.expect(r"\(Press Ctrl-C again to exit, or choose 9\. Exit\.\)", timeout=15)
            term.type("?\n")  # a choice: the next Ctrl-C is a first one again
            term.expect(r"1\. Add to root.*\n" + re.escape(PROMPT))
        term.type("\x03")
        term.expect(r"Press Ctrl-C again to exit")
        term.type("\x03")
        term.expect("Exiting.")
        assert term.wait() == 130
    finally:
        term.close()
