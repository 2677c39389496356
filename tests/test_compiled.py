"""The optional compiled build (`repro_kit._compiled`): used only when asked for and current, and
giving exactly the pure-Python outcomes (the pure modules are the reference)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from repro_kit import _compiled
from repro_kit.emulator.params import EmulatorParams
from repro_kit.emulator.session import EmulatedSession, EmulatedWorld

REPO = Path(__file__).resolve().parent.parent
SHOW_BUILD = "import repro_kit._compiled as c, repro_kit.emulator.ot as ot; print(c.active()); print(ot.__file__)"


def _python(code: str, build: Path | None, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != _compiled.ENV}
    if build is not None:
        env[_compiled.ENV] = str(build)
    return subprocess.run([sys.executable, *(["-c", code] if code else []), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("stamp", [None, {"digest": "0" * 64}, "current-but-not-compiled"])
def test_a_build_that_is_missing_stale_or_incomplete_is_refused_with_a_warning(tmp_path, stamp):
    build = tmp_path / "compiled"
    build.mkdir()
    if stamp == "current-but-not-compiled":
        stamp = {"digest": _compiled.source_digest(), "suffix": _compiled._suffix()}
    elif stamp is not None:
        stamp = {**stamp, "suffix": _compiled._suffix()}
    if stamp is not None:
        (build / _compiled.STAMP).write_text(json.dumps(stamp))
    done = _python(SHOW_BUILD, build)
    assert done.returncode == 0, done.stderr
    active, ot_file = done.stdout.split()
    assert active == "None" and Path(ot_file) == REPO / "repro_kit" / "emulator" / "ot.py"  # pure Python
    warning = next(line for line in done.stderr.splitlines() if _compiled.ENV in line)
    assert "using the pure-Python modules" in warning
    assert ("no compiled build" if stamp is None else "other sources" if stamp["digest"] == "0" * 64
            else "lacks the compiled") in warning


def test_without_the_variable_the_kit_is_pure_python():
    done = _python(SHOW_BUILD, None)
    assert done.returncode == 0 and done.stdout.split() == ["None", str(REPO / "repro_kit" / "emulator" / "ot.py")]
    assert done.stderr == ""


def test_every_field_of_a_model_part_can_be_let_go():
    """`EmulatedWorld.close` frees a compiled world by deleting the fields its classes list as
    `__deletable__` (a compiled object has no __dict__ to clear): each part's fields must be listed,
    or a compiled fleet keeps its world until a full collection (6.7 s of a 10,000-user fleet)."""
    world = EmulatedWorld("production", "replace", rng=random.Random(1), params=EmulatorParams())
    session = EmulatedSession.join(world, "user-0", 0)
    world.add_device("user-0")
    session.device.create_tree(["a"])
    world.settle(step_s=1.0)
    world.deploy("tags", "array<string>")  # (the re-import's process and the halt's fields set)
    parts = [*world.devices, world.server, world.translator, world.collection, world.delivery, world.env]
    for part in parts:
        listed = {name for cls in type(part).__mro__ for name in cls.__dict__.get("__deletable__", ())}
        assert listed, f"{type(part).__name__} lists no __deletable__ fields"
        # a class the kit extends (SimPy's Environment) keeps its own fields in a __dict__, which `close` clears
        foreign = next(cls for cls in type(part).__mro__ if not cls.__module__.startswith("repro_kit"))
        own = set(vars(part)) - (set(vars(foreign())) if foreign is not object else set())
        assert own <= listed, f"{type(part).__name__}: not deletable: {sorted(own - listed)}"


def _can_compile() -> str | None:
    """Why this machine cannot make the build (no C compiler, no Python headers), or None."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "no Python headers (Python.h)"
    return None


@pytest.fixture(scope="module")
def built() -> Path:
    reason = _can_compile()
    if reason is not None:
        pytest.skip(f"the compiled build cannot be made here: {reason}")
    return _compiled.ensure(REPO / "build" / "compiled", quiet=True)  # ~1 minute when sources changed


def test_the_compiled_build_is_used_when_asked_for(built):
    """Its compiled modules, and every other module (and the package's data) from the package itself."""
    done = _python(SHOW_BUILD + "; import repro_kit.emulator.session as s, repro_kit._notebooks as n, os;"
                   " print(s.__file__); print(n.__file__); print(os.environ['REPRO_KIT_COMPILED'])",
                   built.relative_to(REPO))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    active, ot_file, session_file, notebooks_file, variable = done.stdout.split()
    assert Path(active) == built == Path(variable)  # made absolute for the processes it starts
    assert ot_file.endswith(_compiled._suffix()) and Path(ot_file).is_relative_to(built)
    assert Path(session_file) == REPO / "repro_kit" / "emulator" / "session.py"
    assert Path(notebooks_file) == REPO / "repro_kit" / "_notebooks.py"
    kept = sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file())
    assert all(name.endswith(".so") or name == _compiled.STAMP for name in kept), kept


def test_the_compiled_build_gives_the_pure_outcomes(built):
    """Every outcome hash `benchmarks.outcomes` prints (the scale scenarios' full final states, the
    fingerprint's seeded runs, recorded Run tests, a 300-user fleet's recording and sentence) is the
    same from the compiled build as from pure Python."""
    pure = _python("", None, "-m", "benchmarks.outcomes")
    compiled = _python("", built, "-m", "benchmarks.outcomes")
    assert pure.returncode == 0 and compiled.returncode == 0, pure.stderr + compiled.stderr
    assert len(pure.stdout.splitlines()) == 12
    assert compiled.stdout == pure.stdout


def test_the_models_tests_pass_on_the_compiled_build(built):
    done = _python("", built, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fingerprint.py",
                   "tests/test_ot.py", "tests/test_emulator_device.py", "tests/test_emulator_server.py",
                   "tests/test_emulator_scheduling.py", "tests/test_emulator_translator.py",
                   "tests/test_emulator_atlas.py", "tests/test_history.py", "tests/test_fleets.py")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]
