"""`repro-kit notebooks [DIR]`: copies the kit's notebooks out, never overwrites unasked, one-line errors.

Here the kit is the editable install, so the notebooks come from the repository's notebooks/
(the fallback); tests/test_packaging.py runs the same command from an installed wheel.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from repro_kit import _notebooks
from repro_kit.cli import main

REPO_NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.name for p in REPO_NOTEBOOKS.glob("*.ipynb"))


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("repro-kit: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_the_repository_has_the_six_notebooks():
    assert NAMES == ["01_setup.ipynb", "02_write_and_deploy.ipynb", "03_timeline.ipynb", "04_sweeps.ipynb",
                     "05_fleet.ipynb", "06_replay.ipynb"]
    assert [s.name for s in _notebooks.notebook_sources()] == NAMES


def test_copies_into_the_default_folder_and_says_how_to_open_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["notebooks"]) == 0
    out = capsys.readouterr().out
    dest = tmp_path / _notebooks.DEFAULT_DIR
    assert sorted(p.name for p in dest.iterdir() if p.suffix == ".ipynb") == NAMES
    assert (dest / "runs").resolve() == (tmp_path / "runs").resolve()  # the runs root, linked for Lab's file browser
    for name in NAMES:
        assert (dest / name).read_bytes() == (REPO_NOTEBOOKS / name).read_bytes()
        json.loads((dest / name).read_text(encoding="utf-8"))
    assert str(dest.resolve()) in out and "jupyter" in out and "lab" in out


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    dest = tmp_path / "nb"
    assert main(["notebooks", str(dest)]) == 0
    (dest / NAMES[0]).write_text("my edits")
    capsys.readouterr()
    assert main(["notebooks", str(dest)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(dest / NAMES[0]) in line and "--force" in line
    assert (dest / NAMES[0]).read_text() == "my edits"


def test_force_overwrites(tmp_path, capsys):
    dest = tmp_path / "nb"
    dest.mkdir()
    (dest / NAMES[1]).write_text("stale")
    (dest / "mine.ipynb").write_text("kept")
    assert main(["notebooks", str(dest), "--force"]) == 0
    assert (dest / NAMES[1]).read_bytes() == (REPO_NOTEBOOKS / NAMES[1]).read_bytes()
    assert (dest / "mine.ipynb").read_text() == "kept"
    assert "replacing 1" in capsys.readouterr().out


@pytest.mark.parametrize("make, arg, words", [
    (lambda t: (t / "f").write_text("x"), "f", ["is a file"]),
    (lambda t: (t / "f").write_text("x"), "f/sub", ["is a file"]),
    (lambda t: (t / "d" / NAMES[0]).mkdir(parents=True), "d", ["is a folder", NAMES[0]]),
    (lambda t: None, "", ["must name a folder"]),
])
def test_bad_destination_is_one_line_and_exit_2(tmp_path, capsys, make, arg, words):
    make(tmp_path)
    target = str(tmp_path / arg) if arg else arg
    assert main(["notebooks", target, "--force"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert all(w in line for w in words), line


def test_unwritable_location_is_one_line_and_exit_4(tmp_path, capsys, monkeypatch):
    def refuse(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_notebooks, "write_bytes_atomic", refuse)
    assert main(["notebooks", str(tmp_path / "nb")]) == 4  # could not do the job, not bad input
    line = _one_error_line(capsys.readouterr().err)
    assert "cannot write" in line and "permission denied" in line and "Error" not in line


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_folder_is_one_line_and_exit_4(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["notebooks", str(locked / "nb")]) == 4
    finally:
        locked.chmod(0o700)
    assert "cannot create" in _one_error_line(capsys.readouterr().err)


def test_an_install_without_notebooks_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_notebooks, "notebook_sources", lambda: [])
    assert main(["notebooks", str(tmp_path / "nb")]) == 4
    assert "no notebooks" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "nb").exists()


def test_listed_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "notebooks" in capsys.readouterr().out


@pytest.mark.parametrize("euid, allow_root", [(0, True), (1000, False)])
def test_the_printed_command_starts_jupyterlab_as_root_too(tmp_path, capsys, monkeypatch, euid, allow_root):
    """JupyterLab refuses to run as root without --allow-root: as `make lab`, the command printed
    adds it then, and only then."""
    monkeypatch.setattr(os, "geteuid", lambda: euid, raising=False)
    assert main(["notebooks", str(tmp_path / "nb")]) == 0
    command = capsys.readouterr().out.strip().splitlines()[-1]
    assert ("--allow-root" in command) is allow_root, command
    assert command.endswith(str((tmp_path / "nb").resolve())) and ("jupyter lab" in command or "-m jupyterlab" in command)
