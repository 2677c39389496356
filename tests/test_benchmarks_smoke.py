"""A tiny run of every benchmark, so `make bench` cannot rot. Never asserts wall-clock times."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from benchmarks import MODULES, ROW_KEYS, format_table, row, write_results


@pytest.mark.parametrize("name", MODULES)
def test_each_benchmark_produces_rows_with_the_expected_keys(name):
    module = importlib.import_module(f"benchmarks.{name}")
    rows = module.run(**module.SMOKE)
    assert rows
    for r in rows:
        assert tuple(r) == ROW_KEYS
        assert "error" not in r["details"], r["details"]
        assert r["met"] in (True, False, None)
        assert r["value"] is None or r["value"] >= 0
    assert any(r["target"] for r in rows), "every benchmark states at least one target"
    if name == "sweep_scenarios":  # the same rows wherever the sweep ran (the timings are not judged)
        on_dask = [r for r in rows if "Dask" in r["figure"] and "skipped" not in r["details"]]
        assert all(r["details"]["rows_identical"] for r in on_dask)
        assert len(on_dask) == 2 or all("skipped" in r["details"] for r in rows if "Dask" in r["figure"])


def test_the_command_line_dask_cluster_is_stopped_when_the_work_fails():
    pytest.importorskip("distributed")
    import os

    from distributed import Client

    from benchmarks.sweep_scenarios import cli_cluster

    with pytest.raises(RuntimeError, match="the sweep failed"):
        with cli_cluster(1) as address:
            with Client(address, set_as_default=False) as client:
                pids = [client.run_on_scheduler(os.getpid), *client.run(os.getpid).values()]
            raise RuntimeError("the sweep failed")
    assert len(pids) == 2
    for pid in pids:  # stopped and reaped: no such process any more
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_scale_smoke_converges_with_and_without_loss():
    from benchmarks.scale import scenario

    lossy = scenario(3, 8, "replace")
    safe = scenario(3, 8, "diff")
    assert lossy["converged"] and lossy["lost"] > 0
    assert safe["converged"] and safe["lost"] == 0


def test_analysis_synthesis_is_checked_against_what_it_made_lost(tmp_path):
    from benchmarks.analysis import synthesise
    from repro_kit import findings
    from repro_kit.recording import load_run

    shape = synthesise(tmp_path / "run", events=800)
    verdict = findings.check(load_run(tmp_path / "run"))
    assert len(verdict.acknowledged) == shape["nodes"]
    assert len(verdict.lost) == shape["lost_nodes"]


def test_table_and_results_file(tmp_path):
    rows = [row("a figure", 1234.5, "x real time", ">= 1,000x", True), row("growth", None, "s", "over budget", False)]
    table = format_table(rows)
    assert "a figure" in table and "1,234 x real time" in table and "yes" in table and "NO" in table
    data = json.loads(write_results(rows, tmp_path / "results.json").read_text())
    assert [r["figure"] for r in data["rows"]] == ["a figure", "growth"]
    assert data["machine"]["cpus"] >= 1


def test_main_runs_only_the_chosen_module_and_writes_results(tmp_path, capsys):
    from benchmarks.__main__ import main

    assert main(["--smoke", "--only", "virtual_time", "--out", str(tmp_path / "r.json")]) == 0
    assert "virtual time" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["figure"].startswith("virtual time")


def test_smoke_sizes_never_fail_on_speed_but_full_runs_do(monkeypatch, tmp_path, capsys):
    """A loaded machine misses a speed target at smoke sizes: that is no breakage. `make bench`
    (full sizes) still exits non-zero on a miss, and a broken benchmark fails either way."""
    import benchmarks.virtual_time as module
    from benchmarks.__main__ import main

    monkeypatch.setattr(module, "run", lambda **_: [row("virtual time: report scenario", 1.0, "x real time",
                                                          ">= 1,000x", False)])
    out = str(tmp_path / "r.json")
    assert main(["--smoke", "--only", "virtual_time", "--out", out]) == 0
    assert "not judged" in capsys.readouterr().err
    assert main(["--only", "virtual_time", "--build", "pure", "--out", out]) == 1
    assert "MISSED TARGET: virtual time" in capsys.readouterr().err
    monkeypatch.setattr(module, "run", lambda **_: 1 / 0)
    assert main(["--smoke", "--only", "virtual_time", "--out", out]) == 1


def test_full_sizes_measure_the_compiled_build_where_one_can_be_made(monkeypatch, tmp_path, capsys):
    """`make bench` measures the compiled build (made if need be) in a process that uses it; where
    none can be made it measures pure Python and says why, unless the compiled one was required."""
    import subprocess

    import benchmarks.__main__ as harness
    import benchmarks.virtual_time as module
    from repro_kit import _compiled

    monkeypatch.setattr(module, "run", lambda **_: [row("virtual time: report scenario", 2e3, "x real time",
                                                          ">= 1,000x", True)])
    out = str(tmp_path / "r.json")
    started = []
    monkeypatch.setattr(_compiled, "ensure", lambda where, **_: Path(where))
    monkeypatch.setattr(subprocess, "run", lambda args, env, **_: started.append((args, env)) or
                        subprocess.CompletedProcess(args, 0))
    assert harness.main(["--only", "virtual_time", "--out", out]) == 0
    ((args, env),) = started
    assert args[1:] == ["-m", "benchmarks", "--only", "virtual_time", "--out", out, "--build", "compiled"]
    assert env[_compiled.ENV] == str(harness.COMPILED_DIR)

    def cannot(where, **_):
        raise RuntimeError("the mypyc build failed: gcc: not found")

    monkeypatch.setattr(_compiled, "ensure", cannot)
    assert harness.main(["--only", "virtual_time", "--out", out]) == 0  # measured in pure Python
    err = capsys.readouterr().err
    assert "no compiled build (the mypyc build failed: gcc: not found); measuring pure Python" in err
    assert "build: pure Python" in err
    assert json.loads(Path(out).read_text())["machine"]["build"] == "pure Python"
    assert harness.main(["--only", "virtual_time", "--build", "compiled", "--out", out]) == 4
    assert len(started) == 1


def test_the_outcome_hashes_name_every_run_and_repeat_exactly():
    """`python -m benchmarks.outcomes` is how a speed-up shows it changed nothing: its hashes must
    come out the same on a second run of the same code, and tell different runs apart."""
    from benchmarks.outcomes import hashes

    first, second = list(hashes(quick=True)), list(hashes(quick=True))
    assert first == second
    names = [name for name, _ in first]
    assert names[:2] == ["scale 20x20 replace", "scale 20x20 diff"] and "fleet of 40: events" in names
    values = [value for _, value in first]
    assert len(set(values)) == len(values)  # every run leaves its own state
