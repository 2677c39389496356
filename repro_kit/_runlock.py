"""One run at a time in a run directory: a lock file held for the run's life.

Two runs writing into one directory interleave their lines and both report nonsense, so the
second one must refuse. The lock is a file created exclusively (`O_CREAT | O_EXCL`, atomic on
every local file system) holding the owner's host, process id and process start time. It is
removed when the run ends, and a lock left by a killed process is detected as stale (same host,
the process is gone or is another process with the same id) and taken over, never obeyed forever.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from repro_kit._checks import InputError

__all__ = ["RunLock", "RunDirectoryBusy", "LOCK_FILE", "ready_run_dir"]

LOCK_FILE = ".repro-kit.lock"
#: The files that say a directory already holds a run.
RUN_FILES = ("meta.json", "history.jsonl", "events.jsonl")


def ready_run_dir(out: Path) -> None:
    """Make `out` ready for a new run before any work: refused (an InputError naming --out) when it
    already holds a run; created and probed for writing (an OSError says why it cannot be)."""
    held = [n for n in RUN_FILES if (out / n).exists()]
    if held:
        raise InputError("--out", f"{out} already holds a run ({held[0]}); choose a new directory or remove it")
    out.mkdir(parents=True, exist_ok=True)
    probe = out / ".repro-kit-write-test"
    probe.touch()
    probe.unlink()


class RunDirectoryBusy(ValueError):
    """Another live run holds the directory (a ValueError: the CLI's one-line bad-input exit)."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(owner: dict[str, Any]) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: nothing here can tell, so it is obeyed
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    started = _start_time(pid)
    return started is None or owner.get("started") in (None, started)


class RunLock:
    """`RunLock(directory).acquire()` or refuse with `RunDirectoryBusy`; `release()` when done."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / LOCK_FILE
        self.held = False

    def owner(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else {}

    def busy(self) -> str | None:
        """Why the directory is taken (a live run holds it), or None: a check before any work."""
        owner = self.owner()
        if owner is not None and _alive(owner):
            return f"in use by another run (process {owner.get('pid')} on {owner.get('host')})"
        return None

    def acquire(self) -> RunLock:
        me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())})
        for _attempt in range(3):
            try:
                self._create(me)
            except FileExistsError:
                why = self.busy()
                if why is not None:
                    raise RunDirectoryBusy(f"out: {self.path.parent} is {why}; choose another directory") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            self.held = True
            return self
        raise RunDirectoryBusy(f"out: {self.path.parent}: could not take its run lock ({self.path.name})")

    def _create(self, content: str) -> None:
        """The lock file, complete or not at all: written aside, then hard-linked into place
        (atomic, and refused when it exists), so no reader ever sees half of one."""
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(content, encoding="utf-8")
        try:
            os.link(tmp, self.path)
        except OSError as exc:
            if isinstance(exc, FileExistsError):
                raise
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # no hard links here
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(content)
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.held = False
            owner = self.owner()
            if owner is None or owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
