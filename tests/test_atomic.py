import os

import pytest

from repro_kit._atomic import write_text_atomic


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
