"""The code's own gates, run with the tests: `mypy repro_kit` and `ruff check repro_kit` clean, and
(radon is a dev dependency) no function worse than C in complexity nor longer than 80 lines.

Each tool is skipped, saying so, where the dev extra is not installed (`pip install -e '.[dev]'`).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "repro_kit"

MAX_LINES = 80
WORST_GRADE = "C"


def _tool(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_mypy_is_clean():
    _tool("mypy")
    done = _run("mypy", "repro_kit", "--no-error-summary", "--no-color-output", "--show-error-codes")
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert not errors, "mypy:\n" + "\n".join(errors)
    assert done.returncode in (0, 1), done.stderr  # 2: mypy itself failed


def test_ruff_is_clean():
    _tool("ruff")
    done = _run("ruff", "check", "--output-format", "json", "--no-cache", "repro_kit")
    assert done.returncode in (0, 1), done.stderr
    findings = json.loads(done.stdout or "[]")
    shown = [f"{Path(f['filename']).relative_to(REPO)}:{f['location']['row']}: {f['code']} {f['message']}"
             for f in findings]
    assert not shown, "ruff:\n" + "\n".join(shown)


def _functions(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _sources() -> list[tuple[str, Path]]:
    return [(p.relative_to(REPO).as_posix(), p) for p in sorted(PACKAGE.rglob("*.py"))]


def test_no_function_worse_than_c_in_complexity():
    _tool("radon")
    from radon.complexity import cc_rank, cc_visit

    worse = []
    for name, path in _sources():
        for block in cc_visit(path.read_text(encoding="utf-8")):
            if cc_rank(block.complexity) > WORST_GRADE:
                worse.append(f"{name}:{block.lineno} {block.fullname}: {cc_rank(block.complexity)} "
                             f"({block.complexity})")
    assert not worse, "radon cc, worse than C:\n" + "\n".join(worse)


def test_no_function_over_80_lines():
    long = [f"{name}:{fn.lineno} {fn.name}: {(fn.end_lineno or fn.lineno) - fn.lineno + 1} lines"
            for name, path in _sources() for fn in _functions(path)
            if (fn.end_lineno or fn.lineno) - fn.lineno + 1 > MAX_LINES]
    assert not long, f"functions over {MAX_LINES} lines:\n" + "\n".join(long)
