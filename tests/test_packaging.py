"""What a pip user gets: the sdist and wheel built as pip would, installed into a fresh venv.

`python -m build` makes the sdist from this tree and then the wheel from that sdist (so a
file the wheel needs but MANIFEST.in leaves out fails here), each in an isolated build
environment, as pip does. The wheel is installed into a new venv made without
`--system-site-packages` (and without its own pip: this interpreter's pip installs into it
with `--python`), with every dependency resolved by pip from the package index, exactly as
`pip install repro_kit-*.whl` would for a user. Measured on the 2-core build machine, with
pip's cache warm: 23-33 s for that install, about 30-35 s for the whole module. That is under
the ~90 s past which the alternative (install with `--no-deps` and reach the project venv's
site-packages through a .pth file) would have been worth its blind spot, a dependency
missing from pyproject.toml; a full install catches that, so it is what runs. It needs the
package index, as `make test`'s own set-up does.

Every command runs from a temporary folder outside the repository, without PYTHONPATH, and
the test checks that `import repro_kit` in the venv is the wheel's copy, not this checkout.
Part of `make test` (marker `packaging`, deselect with `-m "not packaging"`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
BIN = "Scripts" if os.name == "nt" else "bin"


def _env() -> dict[str, str]:
    """This process's environment minus whatever could put the checkout (or this venv) on sys.path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")}
    env.update(MPLBACKEND="Agg", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    return env


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _ok(proc: subprocess.CompletedProcess[str], what: str) -> str:
    assert proc.returncode == 0, (f"{what} exited {proc.returncode}\n--- stdout (tail)\n{proc.stdout[-3000:]}"
                                  f"\n--- stderr (tail)\n{proc.stderr[-3000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The sdist, and the wheel built from it."""
    pytest.importorskip("build", reason="the dev extra's `build` is not installed")
    out = tmp_path_factory.mktemp("dist")
    _ok(_run([sys.executable, "-m", "build", "--outdir", out, REPO], cwd=out, timeout=600), "python -m build")
    sdists, wheels = sorted(out.glob("repro_kit-*.tar.gz")), sorted(out.glob("repro_kit-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory) -> Path:
    """A fresh venv (no system site-packages) holding the wheel and its dependencies."""
    root = tmp_path_factory.mktemp("venv") / "v"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", root], cwd=root.parent, timeout=120), "python -m venv")
    cfg = (root / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg, cfg
    started = time.monotonic()
    _ok(_run([sys.executable, "-m", "pip", "--python", root / BIN / "python", "install", "--quiet",
              dists["wheel"]], cwd=root.parent, timeout=900), "pip install <wheel>")
    print(f"pip install of the wheel and its dependencies: {time.monotonic() - started:.0f} s")
    return root


def _repo_files(folder: str, *patterns: str) -> set[str]:
    found = set()
    for pattern in patterns:
        for p in (REPO / folder).glob(pattern):
            rel = p.relative_to(REPO)
            if p.is_file() and "__pycache__" not in rel.parts and not any(part.startswith(".") for part in rel.parts):
                found.add(rel.as_posix())
    return found


def test_sdist_holds_what_its_tests_need(dists):
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    needed = {"README.md", "Makefile", "environment.yml", "pyproject.toml", "setup.py", "MANIFEST.in",
              "tests/conftest.py", "tests/runs.py", "tests/scenario.py", "tests/live_fakes/__init__.py",
              "docs/live.md", "benchmarks/__main__.py", *(f"notebooks/{n}" for n in NOTEBOOKS)}
    needed |= _repo_files("tests", "**/*.py", "**/*.gz", "**/*.md")
    needed |= _repo_files("benchmarks", "*.py", "*.md") | _repo_files("docs", "**/*.md")
    assert any(n.startswith("tests/data/") and n.endswith(".gz") for n in needed)
    assert not needed - names, sorted(needed - names)
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]


def test_wheel_carries_the_notebooks_and_no_tests(dists):
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = set(whl.namelist())
        for name in NOTEBOOKS:
            assert whl.read(f"repro_kit/notebooks/{name}") == (REPO / "notebooks" / name).read_bytes()
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "benchmarks/"))]


def test_installed_wheel_runs_the_report_scenario_and_copies_the_notebooks(venv, tmp_path):
    work = tmp_path / "cwd"  # outside the repository: nothing there to import by accident
    work.mkdir()
    py, kit = venv / BIN / "python", venv / BIN / "repro-kit"

    where = json.loads(_ok(_run([py, "-c", "import json, repro_kit, repro_kit._notebooks as n; print(json.dumps("
                                "[repro_kit.__file__, str(n.notebook_sources()[0])]))"], cwd=work, timeout=60),
                           "import repro_kit"))
    for path in where:
        assert Path(path).resolve().is_relative_to(venv.resolve()), where
        assert not Path(path).resolve().is_relative_to(REPO), where
    assert Path(where[1]).parent.name == "notebooks" and Path(where[1]).parent.parent.name == "repro_kit"

    run = tmp_path / "run"
    out = _ok(_run([kit, "run", "--out", run, "--settle", "200"], cwd=work, timeout=300), "repro-kit run")
    report = json.loads((run / "report.json").read_text())
    assert report["lost_count"] == 14 and report["verdict"] == "lost", out
    assert "LOST 14 of 20" in out

    nb = tmp_path / "nb"
    out = _ok(_run([kit, "notebooks", nb], cwd=work, timeout=60), "repro-kit notebooks")
    assert sorted(p.name for p in nb.iterdir() if p.suffix == ".ipynb") == NOTEBOOKS
    assert (nb / "runs").is_symlink()  # where the kit records runs, in reach of Lab's file browser
    for name in NOTEBOOKS:
        data = json.loads((nb / name).read_text(encoding="utf-8"))
        assert data["cells"] and data["nbformat"] == 4
    assert str(nb.resolve()) in out and "jupyter" in out

    again = _run([kit, "notebooks", nb], cwd=work, timeout=60)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert "Traceback" not in again.stderr and "--force" in again.stderr
