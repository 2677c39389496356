"""The optional compiled build: the model's hot modules compiled with mypyc, the rest as they are.

Why: a 10,000-user fleet spends ~70% of its time in the emulator's pure Python (issue 21); mypyc
compiles those modules, unchanged, to C extensions (~1.3x on the fleet, outcomes identical).
The pure-Python modules stay the reference: a build is made from them and is used only when asked.

`make compiled` (`repro_kit._compiled.main(["build/compiled"])`) compiles `MODULES` in a copy
of the package (mypy's mypyc, a C compiler and the Python headers needed), keeps only the
extension modules in DIR and stamps it with the digest of the sources they were made from. With
`REPRO_KIT_COMPILED=DIR` in the environment, `import repro_kit` takes those modules from DIR and
every other one from the package (`activate`); a build of other sources (the checkout changed
since) or for another interpreter is refused with a warning, and the pure-Python modules are used.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import warnings
from pathlib import Path

__all__ = ["ENV", "MODULES", "STAMP", "activate", "extend", "active", "build", "ensure", "main", "source_digest",
           "problem"]

#: The environment variable naming the build to use.
ENV = "REPRO_KIT_COMPILED"
#: The modules compiled (the fleet's profile: the model and the columnar log). `session` and
#: `recording` stay Python (mypyc rejects or changes what they do), and so do `_history` and `driver`:
#: public records and functions (`run_test`) whose inputs they check themselves (a compiled function
#: converts or rejects an argument of another type at the call: `writes=True` became 1).
MODULES = ("emulator/ot.py", "emulator/server.py", "emulator/device.py", "emulator/_scheduling.py",
           "emulator/translator.py", "emulator/atlas.py", "emulator/delivery.py", "_arrow_log.py")

#: The build's stamp, in DIR: the digest of the sources, the interpreter's extension suffix.
STAMP = "BUILD.json"

_PACKAGE = Path(__file__).resolve().parent
_ACTIVE: list[str] = []  # the build in use, once activated


def source_digest(package: Path = _PACKAGE) -> str:
    """SHA-256 over the package's files (paths and contents; no caches, no compiled modules)."""
    import hashlib  # noqa: PLC0415 - here, not at `import repro_kit`: only a process asking for a build pays

    h = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                       and p.suffix not in (".so", ".pyd")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def problem(where: str | os.PathLike[str]) -> str | None:
    """Why the build in `where` cannot stand for these sources in this interpreter, or None."""
    import json  # noqa: PLC0415 - as in `source_digest`

    root = Path(where)
    try:
        stamp = json.loads((root / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{root} holds no compiled build ({STAMP} missing or unreadable); make one with `make compiled`"
    if not isinstance(stamp, dict) or stamp.get("suffix") != _suffix():
        return f"{root} was built for another interpreter ({stamp.get('python') if isinstance(stamp, dict) else '?'})"
    if stamp.get("digest") != source_digest():
        return f"{root} was built from other sources than {_PACKAGE} (rebuild it: `make compiled`)"
    missing = [m for m in MODULES if not (root / "repro_kit" / (m[:-3] + _suffix())).is_file()]
    if missing:
        return f"{root} lacks the compiled {missing[0]}"
    return None


def activate(package_path: list[str]) -> str | None:
    """Put the build named by `REPRO_KIT_COMPILED` first on `package_path` (the package's
    `__path__`, from `repro_kit/__init__.py` before it imports anything); returns its directory,
    or None when none is asked for or it is refused (a warning says why). The build holds the
    compiled modules alone: every other module, and the package's data, come from here."""
    where = os.environ.get(ENV)
    if not where:
        return None
    root = Path(where).resolve()
    reason = problem(root)
    if reason is not None:
        warnings.warn(f"{ENV}: {reason}; using the pure-Python modules", RuntimeWarning, stacklevel=3)
        return None
    package_path.insert(0, str(root / "repro_kit"))
    sys.path.insert(0, str(root))  # the build's shared runtime library is a top-level module there
    os.environ[ENV] = str(root)  # (absolute: a process this one starts elsewhere finds the same build)
    _ACTIVE[:] = [str(root)]
    return str(root)


def extend(subpackage_path: list[str], name: str) -> None:
    """A subpackage's part of `activate` (its `__init__` calls it): the build's folder for it first."""
    if _ACTIVE:
        subpackage_path.insert(0, str(Path(_ACTIVE[0]) / "repro_kit" / name))


def active() -> str | None:
    """The compiled build in use in this process (its directory), or None: pure Python."""
    return _ACTIVE[0] if _ACTIVE else None


def _suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
setup(name="repro_kit_compiled", script_args=["build_ext", "--inplace"],
      ext_modules=mypycify(sys.argv[1:], opt_level="3"))
"""


def build(dest: str | os.PathLike[str], *, quiet: bool = False) -> Path:
    """Make the compiled build in `dest` (replaced whole once the new one is made), from this
    package's sources; returns `dest`. Raises RuntimeError with the compiler's last lines."""
    import json  # noqa: PLC0415 - the build's modules, loaded only by a build
    import shutil  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import time  # noqa: PLC0415

    dest = Path(dest).resolve()
    work = dest.with_name(dest.name + ".new")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    digest = source_digest()
    shutil.copytree(_PACKAGE, work / "repro_kit", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))
    pyproject = _PACKAGE.parent / "pyproject.toml"  # the type checker's settings, as the kit's own checks use them
    if pyproject.is_file():
        shutil.copy2(pyproject, work / "pyproject.toml")
    modules = [f"repro_kit/{m}" for m in MODULES]
    env = {**os.environ, "PYTHONPATH": str(work)}
    env.pop(ENV, None)
    if not quiet:
        print(f"compiling {len(modules)} modules with mypyc into {dest} (a minute or so) ...", file=sys.stderr,
              flush=True)
    proc = subprocess.run([sys.executable, "-c", _SETUP, *modules], cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-5:]
        shutil.rmtree(work, ignore_errors=True)
        raise RuntimeError("the mypyc build failed: " + " | ".join(tail))
    shutil.rmtree(work / "build", ignore_errors=True)  # the generated C and objects
    shutil.rmtree(work / ".mypy_cache", ignore_errors=True)
    (work / "pyproject.toml").unlink(missing_ok=True)
    compiled = {(work / "repro_kit" / m[:-3]).with_name(Path(m).stem + _suffix()) for m in MODULES}
    for path in [p for p in (work / "repro_kit").rglob("*") if p.is_file() and p not in compiled]:
        path.unlink()  # the sources: what is not compiled comes from the package itself (`activate`)
    (work / STAMP).write_text(json.dumps({
        "digest": digest, "suffix": _suffix(), "python": sys.version.split()[0], "modules": list(MODULES),
        "seconds": round(time.monotonic() - started, 1)}, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(dest, ignore_errors=True)
    work.rename(dest)
    reason = problem(dest)
    if reason is not None:
        raise RuntimeError(f"the mypyc build is unusable: {reason}")
    return dest


def ensure(dest: str | os.PathLike[str], *, quiet: bool = False) -> Path:
    """`dest` holding a build of these sources: the one there, or a new one."""
    return Path(dest) if problem(dest) is None else build(dest, quiet=quiet)


def main(argv: list[str]) -> int:
    """`make compiled`: the build in DIR (argv[0]) made or found current; exit code 0, or 4 with the reason."""
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: make compiled   (or: main([DIR]): the compiled build in DIR)", file=sys.stderr)
        return 2
    try:
        dest = ensure(argv[0])
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    print(f"compiled build: {dest} (use it with {ENV}={dest})")
    return 0

