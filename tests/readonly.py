"""Run the real CLI against a directory it cannot write: for "could not do the job" tests.

As a user, `chmod 0500` makes a directory read-only. As root (containers, these
machines) chmod stops nothing, so the command runs in its own mount namespace
(`unshare --mount`) where the directory is bind-mounted read-only: a real read-only file
system, as a full disk or a read-only volume gives. Where neither is possible the test
is skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: In the new mount namespace: make "$0" read-only, prove it, then run the command.
_SHELL = ('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && '
          '{ if touch "$0/.repro-kit-probe" 2>/dev/null; then rm -f "$0/.repro-kit-probe"; exit 99; fi; } && '
          'exec "$@"')


def environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "REPRO_KIT_"))}
    env["PYTHONPATH"] = str(REPO)
    env["MPLBACKEND"] = "Agg"
    return env


def run_cli_read_only(directory: Path, args: list[str], cwd: Path, *, stdin: str | None = None,
                      env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m repro_kit *args` with `directory` (and what it holds) read-only to it;
    `stdin` is typed to it (the menu), `env` added to its environment."""
    command = [sys.executable, "-m", "repro_kit", *args]
    options = dict(cwd=cwd, env={**environ(), **(env or {})}, capture_output=True, text=True, timeout=120,
                   input=stdin if stdin is not None else "")
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [directory, *directory.rglob("*")]}
        for p in modes:
            p.chmod(stat.S_IMODE(modes[p]) & ~0o222)
        try:
            return subprocess.run(command, **options)
        finally:
            for p, mode in modes.items():
                p.chmod(stat.S_IMODE(mode))
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("root writes anywhere, and unshare/mount are not installed to make a read-only mount")
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", _SHELL, str(directory), *command], **options)
    if proc.returncode == 99:
        pytest.skip("root writes anywhere, and a read-only bind mount did not stop writes here")
    if proc.returncode != 0 and proc.stderr.startswith(("unshare:", "mount:")):
        pytest.skip(f"root writes anywhere, and no private read-only mount is allowed here: {proc.stderr.strip()}")
    return proc
