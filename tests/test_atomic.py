import os
import stat

import pytest

from repro_kit._atomic import write_bytes_atomic, write_text_atomic
from repro_kit.recording import RunRecorder


def test_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "meta.json"
    target.write_text("old")
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["meta.json"]


def test_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "meta.json"
    target.write_text("old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_text_atomic(target, "new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["meta.json"]


@pytest.fixture
def umask():
    """Set the process umask for one test (and restore it)."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027])
def test_new_file_gets_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    write_text_atomic(tmp_path / "meta.json", "{}\n")
    with open(tmp_path / "plain.jsonl", "w"):
        pass
    assert _mode(tmp_path / "meta.json") == 0o666 & ~mask == _mode(tmp_path / "plain.jsonl")


def test_replacing_keeps_the_files_permission_bits(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "meta.json"
    target.write_text("old")
    target.chmod(0o640)
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o640


def test_never_touches_the_process_umask(tmp_path, monkeypatch):
    """The umask is process-wide: setting it even briefly would race other threads' file creation."""
    def no_umask(*_):
        raise AssertionError("write_text_atomic must not call os.umask")

    monkeypatch.setattr(os, "umask", no_umask)
    write_text_atomic(tmp_path / "meta.json", "x")
    assert (tmp_path / "meta.json").read_text() == "x"


def test_bytes_are_written_as_given(tmp_path):
    data = b'{"cells": []}\r\n\xc3\xa9'
    write_bytes_atomic(tmp_path / "nb.ipynb", data)
    assert (tmp_path / "nb.ipynb").read_bytes() == data and os.listdir(tmp_path) == ["nb.ipynb"]


def test_run_files_share_one_mode(tmp_path, umask):
    """meta.json (written atomically) and the appended logs end up with the same mode."""
    umask(0o022)
    recorder = RunRecorder(tmp_path / "run", meta={"backend": "test"})
    recorder.finish()  # rewrites meta.json: the replacing path too
    modes = {p.name: _mode(p) for p in (tmp_path / "run").iterdir()}
    assert {"meta.json", "history.jsonl", "events.jsonl"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes
