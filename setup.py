"""Build hook: ship the top-level notebooks/ as package data, under repro_kit/notebooks/.

Everything else about the package is declared in pyproject.toml. Declarative package
data cannot reach outside the package folder, and notebooks/ stays at the top of the
repository, so build_py copies notebooks/*.ipynb into the build tree itself; the wheel,
and a wheel built from the sdist (MANIFEST.in ships notebooks/), carry them.
`repro-kit notebooks DIR` copies them out. An editable install has no copy: the
command reads the repository's notebooks/ instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE / "notebooks"
TARGET = ("repro_kit", "notebooks")


class build_py(_build_py):
    """setuptools' build_py, plus notebooks/*.ipynb -> <build_lib>/repro_kit/notebooks/."""

    def _notebooks(self) -> list[Path]:
        found = sorted(NOTEBOOKS.glob("*.ipynb"))
        if not found:  # a wheel without its notebooks would install and then fail a user: fail here
            raise SystemExit(f"setup.py: no notebooks in {NOTEBOOKS}; the sdist or checkout is incomplete")
        return found

    def _notebook_targets(self) -> list[tuple[Path, str]]:
        dest = os.path.join(self.build_lib, *TARGET)
        return [(src, os.path.join(dest, src.name)) for src in self._notebooks()]

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the repository's notebooks/ directly
        for src, dest in self._notebook_targets():
            self.mkpath(os.path.dirname(dest))
            self.copy_file(str(src), dest, preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs += [dest for _, dest in self._notebook_targets()]
        return outputs


setup(cmdclass={"build_py": build_py})
