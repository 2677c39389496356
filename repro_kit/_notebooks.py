"""`repro-kit notebooks [DIR]`: copy the kit's Jupyter notebooks out of the installed package.

Runs are recorded in `recording.runs_root()` whatever the current directory; DIR/runs is made a
link to it (unless it is inside DIR already), so JupyterLab started on DIR lists them.

A wheel carries notebooks/*.ipynb as package data under `repro_kit/notebooks/` (setup.py
copies them at build time). An editable or source-tree install has no such copy, so the
repository's own `notebooks/` folder beside the package is used instead.

`register(subparsers)` adds the subcommand to the CLI; its function prints its own one-line
errors (`repro-kit: error: ...`) and returns 2 on bad input (DIR is a file, a notebook is
already there without --force), 4 when the job cannot be done (the location cannot be
written: permission, read-only, disk full; or the install has no notebooks at all).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from repro_kit import _errors
from repro_kit._atomic import write_bytes_atomic
from repro_kit.recording import RUNS_ENV, runs_root

__all__ = ["register", "run_notebooks", "notebook_sources", "DEFAULT_DIR"]

PROG = "repro-kit"
DEFAULT_DIR = "repro-kit-notebooks"
SUFFIX = ".ipynb"


class _BadInput(Exception):
    pass


class _Cannot(Exception):
    pass


def notebook_sources() -> list[Any]:
    """The kit's notebooks, sorted by name: the package's copy, else the repository's notebooks/."""
    try:
        packaged = resources.files("repro_kit").joinpath("notebooks")
        found = [f for f in packaged.iterdir() if f.name.endswith(SUFFIX) and f.is_file()] if packaged.is_dir() else []
    except (OSError, ModuleNotFoundError):
        found = []
    if not found:  # an editable install or a checkout: the repository's notebooks/ beside the package
        repo = Path(__file__).resolve().parent.parent / "notebooks"
        found = [f for f in repo.glob(f"*{SUFFIX}") if f.is_file()] if repo.is_dir() else []
    return sorted(found, key=lambda f: f.name)


def register(subparsers: Any) -> None:
    """Add `notebooks` to the CLI's subparsers (argparse `add_subparsers()` result)."""
    p = _errors.add_command(
        subparsers, "notebooks", (0, 2, 4, 130),
        help="copy the kit's Jupyter notebooks into a folder, to open with JupyterLab",
        description="Copy the kit's notebooks (01_setup ... 06_replay) into DIR and say how to open them.",
    )
    p.add_argument("dir", nargs="?", default=DEFAULT_DIR, metavar="DIR",
                   help=f"destination folder, created if missing (default ./{DEFAULT_DIR})")
    p.add_argument("--force", action="store_true", help="overwrite notebooks already in DIR")
    p.set_defaults(func=run_notebooks)


def _check_dest(dest: Path, names: list[str], force: bool) -> list[Path]:
    """Every reason not to write, before anything is written; the notebooks DIR already holds."""
    for folder in (dest, *dest.parents):
        if folder.exists():
            if not folder.is_dir():
                raise _BadInput(f"DIR: {folder} is a file, not a folder")
            break
    held = []
    for name in names:
        target = dest / name
        if target.is_dir():
            raise _BadInput(f"{target} is a folder; remove it or choose another DIR")
        if target.exists() or target.is_symlink():
            held.append(target)
    if held and not force:
        more = f" (and {len(held) - 1} more)" if len(held) > 1 else ""
        raise _BadInput(f"{held[0]} already exists{more}; use --force to overwrite, or choose another DIR")
    return held


def _is_root() -> bool:
    """Running as root (containers, CI machines); never on a platform without user ids."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _lab_command(dest: Path) -> str:
    """How to start JupyterLab on `dest` from this environment. As root, JupyterLab refuses to
    start without --allow-root, so it is added then (as `make lab` does), and only then."""
    where = shlex.quote(str(dest))
    root = " --allow-root" if _is_root() else ""
    jupyter = shutil.which("jupyter")
    here = Path(sys.executable).parent
    try:
        same_env = jupyter is not None and Path(jupyter).parent.samefile(here)
    except OSError:
        same_env = False
    if same_env:
        return f"jupyter lab{root} {where}"
    return f"{shlex.quote(sys.executable)} -m jupyterlab{root} {where}"  # this environment's JupyterLab, not PATH's


def run_notebooks(args: argparse.Namespace, stdout: Any = None, stderr: Any = None) -> int:
    """Copy the notebooks into `args.dir`; the exit code (0, 2 bad input, 4 cannot write them or
    none installed)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    sources = notebook_sources()
    if not sources:
        print(f"{PROG}: error: this install of repro_kit has no notebooks (repro_kit/notebooks/ is missing); "
              f"reinstall it from a wheel or sdist", file=stderr)
        return _errors.CANNOT
    try:
        if not str(args.dir).strip():
            raise _BadInput(f"DIR: must name a folder, got {str(args.dir)!r}")
        dest = Path(os.path.expanduser(str(args.dir)))
        held = _check_dest(dest, [s.name for s in sources], bool(args.force))
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only, no permission, full: exit 4; a path that cannot exist: 2
            fail = _Cannot if exc.errno in _errors.NOT_WRITABLE else _BadInput
            raise fail(f"DIR: cannot create {dest} ({_errors.os_error_reason(exc)})") from None
        for src in sources:
            target = dest / src.name
            try:
                write_bytes_atomic(target, src.read_bytes())
            except OSError as exc:
                raise _Cannot(f"cannot write {target} ({_errors.os_error_reason(exc)})") from None
    except _BadInput as exc:
        print(f"{PROG}: error: {exc}", file=stderr)
        return _errors.BAD_INPUT
    except _Cannot as exc:
        print(f"{PROG}: error: {exc}", file=stderr)
        return _errors.CANNOT
    shown = dest.resolve()
    replaced = f", replacing {len(held)} already there" if held else ""
    print(f"Copied {len(sources)} notebooks to {shown}{replaced}:", file=stdout)
    for src in sources:
        print(f"  {src.name}", file=stdout)
    print(_runs_link(shown), file=stdout)
    print("Start JupyterLab on them with:", file=stdout)
    print(f"  {_lab_command(shown)}", file=stdout)
    return 0


def _runs_link(dest: Path) -> str:
    """Make the default run location visible in JupyterLab's file browser on `dest`: runs made by
    the CLI, the panel and the notebooks go to `recording.runs_root()`; unless that is inside
    `dest` already, `dest/runs` becomes a link to it (made once, never over a file or folder of
    the user's). Returns the sentence that says where runs go."""
    root = runs_root().expanduser().absolute()
    where = f"Runs are recorded in {root} (${RUNS_ENV} changes it)"
    try:
        root.resolve().relative_to(dest.resolve())
        return f"{where}: inside this folder, so JupyterLab lists them."
    except ValueError:
        pass
    link = dest / "runs"
    if link.is_symlink() and link.resolve() == root.resolve():
        return f"{where}; {link} links there, so JupyterLab lists them."
    if link.exists() or link.is_symlink():
        return f"{where}; {link} is something else, so JupyterLab shows them only if started above both."
    try:
        root.mkdir(parents=True, exist_ok=True)
        link.symlink_to(root, target_is_directory=True)
    except OSError as exc:  # no symbolic links here (some Windows set-ups): say where they are instead
        return f"{where}; a link from {link} could not be made ({_errors.os_error_reason(exc)})."
    return f"{where}; {link} links there, so JupyterLab's file browser lists them."
