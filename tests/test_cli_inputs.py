"""Every bad input through the real command line: exit 2, one line naming the flag, nothing changed.

Each case runs `python -m repro_kit ...` in a subprocess from an empty directory and checks
the exit code, that stderr is a single line naming the flag with no traceback, that no file
appeared, the process's peak memory (under 200 MiB: no input builds a huge schedule), and
for `deploy` that the local fake Admin API received no request at all. A hang fails by
timeout; wall-clock time is not asserted (shared machines), the closing note measures it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_RSS_MIB = 200
KEYS = {"MONGODB_ATLAS_PUBLIC_API_KEY": "pubkey-1234", "MONGODB_ATLAS_PRIVATE_API_KEY": "privkey-5678"}


#: Runs the CLI as `python -m repro_kit` would, and writes the process's own peak memory
#: (VmHWM: per address space, so not the pytest parent's, which ru_maxrss would carry over
#: through fork + exec) to $RK_HWM_FILE at exit.
_WRAPPER = """
import atexit, os, runpy, sys
def _peak():
    try:
        with open('/proc/self/status') as fh:
            for line in fh:
                if line.startswith('VmHWM:'):
                    with open(os.environ['RK_HWM_FILE'], 'w') as out:
                        out.write(line.split()[1])
    except OSError:
        pass
atexit.register(_peak)
sys.argv[0] = 'repro-kit'
runpy.run_module('repro_kit', run_name='__main__', alter_sys=True)
"""


def run_measured(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
    """Exit code, stdout, stderr and the CLI process's peak memory in MiB (0 where /proc is absent)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "REPRO_KIT_"))}
    environ.update(env or {})
    environ["PYTHONPATH"] = str(REPO)
    hwm = cwd.parent / f"{cwd.name}.hwm"
    environ["RK_HWM_FILE"] = str(hwm)
    try:
        proc = subprocess.run([sys.executable, "-c", _WRAPPER, *args], cwd=cwd, env=environ, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"repro-kit {' '.join(args)} did not finish within 60 s")
    peak = int(hwm.read_text()) / 1024 if hwm.exists() else 0.0
    return proc.returncode, proc.stdout, proc.stderr, peak


def assert_bad_input(code: int, out: str, err: str, rss: float, flag: str, where: Path) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert flag in lines[0], (flag, lines[0])
    assert "Traceback" not in err
    assert not re.search(r"\b[A-Z][A-Za-z]*(Error|Exception)\b", lines[0]), f"a Python exception name: {lines[0]}"
    assert list(where.iterdir()) == [], f"files were written: {list(where.iterdir())}"
    assert rss < MAX_RSS_MIB, f"peak memory {rss:.0f} MiB"
    if Path("/proc/self/status").exists():
        assert rss > 0, "the peak memory was not measured"


NUMERIC_RUN_FLAGS = ["--writes", "--interval", "--deploy-at", "--settle", "--seed"]

RUN_CASES = [
    (["--settle", "1e12"], "--settle"),
    (["--interval", "1e9"], "--interval"),
    (["--writes", "100000000"], "--writes"),
    (["--writes", "0"], "--writes"),
    (["--deploy-at", "3000"], "--deploy-at"),
    (["--backend", "live"], "--backend"),
    (["--mode", "staging"], "--mode"),
    (["--encoding", "zip"], "--encoding"),
    (["--reimport", "some"], "--reimport"),
    (["--field", "has space"], "--field"),
    (["--bson-type", "array<>"], "--bson-type"),
    (["--bogus"], "--bogus"),
    *[([flag, value], flag) for flag in NUMERIC_RUN_FLAGS for value in ("-1", "nan", "inf")],
]


@pytest.mark.parametrize("args, flag", RUN_CASES, ids=[" ".join(a) for a, _ in RUN_CASES])
def test_run_bad_input(tmp_path, args, flag):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out, err, rss = run_measured(["run", *args, "--out", "out"], cwd)
    assert_bad_input(code, out, err, rss, flag, cwd)


def test_menu_bad_input_exits_before_the_menu(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out, err, rss = run_measured(["menu", "--writes", "0"], cwd)
    assert_bad_input(code, out, err, rss, "--writes", cwd)


def test_out_bad_directories(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out, err, rss = run_measured(["run", "--out", ""], cwd)
    assert_bad_input(code, out, err, rss, "--out", cwd)
    (cwd / "afile").write_text("not a directory")
    code, out, err, rss = run_measured(["run", "--out", "afile/sub"], cwd)
    assert code == 2 and "--out" in err and "afile is a file" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in cwd.iterdir()) == ["afile"]
    (cwd / "afile").unlink()
    code, out, err, rss = run_measured(["run", "--out", "/proc/x"], cwd)
    assert_bad_input(code, out, err, rss, "--out", cwd)


def read_only_dir(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    try:  # root writes through 0555; /sys is a file system where even root cannot create a directory
        os.mkdir("/sys/repro-kit-probe")
        os.rmdir("/sys/repro-kit-probe")
    except OSError:
        return Path("/sys")
    pytest.skip("no read-only directory available to root here")


def test_out_inside_a_read_only_directory_cannot_do_the_job_exit_4(tmp_path):
    """Not bad input (the path is a real place) but a job that cannot be done: exit 4, one line
    naming --out and the path, in words; nothing written, nothing run."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    target = read_only_dir(tmp_path) / "run"
    code, out, err, rss = run_measured(["run", "--out", str(target)], cwd)
    lines = err.strip().splitlines()
    assert code == 4, (code, err)
    assert len(lines) == 1 and "--out" in lines[0] and str(target) in lines[0], err
    assert not re.search(r"\b[A-Z][A-Za-z]*(Error|Exception)\b|\[Errno", lines[0]), lines[0]
    assert out == "" and list(cwd.iterdir()) == [] and not target.exists()


DEPLOY = ["deploy", "--app-id", "myapp-abcde", "--field", "tags", "--bson-type", "array<string>"]
DEPLOY_CASES = [
    (["--poll-interval", "nan"], "--poll-interval"),
    (["--poll-interval", "1e12"], "--poll-interval"),
    (["--poll-interval", "-1"], "--poll-interval"),
    (["--poll-interval", "inf"], "--poll-interval"),
    (["--deploy-timeout", "nan"], "--deploy-timeout"),
    (["--deploy-timeout", "-1"], "--deploy-timeout"),
    (["--deploy-timeout", "inf"], "--deploy-timeout"),
    (["--deploy-timeout", "1e9"], "--deploy-timeout"),
    (["--field", "9lives"], "--field"),
    (["--bson-type", "nothing"], "--bson-type"),
    (["--app-id", "has space"], "--app-id"),
    (["--database", "a/b"], "--database"),
    (["--collection", "$x"], "--collection"),
    (["--backend", "emulator"], "--backend"),
]


@pytest.mark.parametrize("args, flag", DEPLOY_CASES, ids=[" ".join(a) for a, _ in DEPLOY_CASES])
def test_deploy_bad_input_sends_no_request(tmp_path, app_services, args, flag):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out, err, rss = run_measured([*DEPLOY, "--base-url", app_services.url, *args], cwd, KEYS)
    assert_bad_input(code, out, err, rss, flag, cwd)
    assert app_services.requests == []


def test_deploy_without_the_api_key_variables_sends_no_request(tmp_path, app_services):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out, err, rss = run_measured([*DEPLOY, "--base-url", app_services.url], cwd)
    assert_bad_input(code, out, err, rss, "MONGODB_ATLAS_PUBLIC_API_KEY", cwd)
    assert app_services.requests == []


def test_deploy_bad_base_url(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out, err, rss = run_measured([*DEPLOY, "--base-url", "ftp://example"], cwd, KEYS)
    assert_bad_input(code, out, err, rss, "--base-url", cwd)


AUDIT = ["audit", "--mongodb-uri", "mongodb://127.0.0.1:9", "--database", "db", "--collection", "Node"]
AUDIT_CASES = [
    (["--timeout", "inf"], "--timeout"),
    (["--timeout", "nan"], "--timeout"),
    (["--timeout", "-1"], "--timeout"),
    (["--timeout", "x"], "--timeout"),
    (["--database", "a/b c"], "--database"),
    (["--collection", "system.x"], "--collection"),
]


@pytest.mark.parametrize("args, flag", AUDIT_CASES, ids=[" ".join(a) for a, _ in AUDIT_CASES])
def test_audit_bad_input(tmp_path, args, flag):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out, err, rss = run_measured([*AUDIT, *args], cwd)
    assert_bad_input(code, out, err, rss, flag, cwd)


def test_report_of_a_file_or_nothing(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out, err, rss = run_measured(["report", "nope"], cwd)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nope" in err and list(cwd.iterdir()) == []


def test_a_closed_stdout_exits_quietly(tmp_path):
    """`repro-kit run | head -1`: the reader leaves early; no BrokenPipeError, the run is complete."""
    environ = {**os.environ, "PYTHONPATH": str(REPO)}
    shell = f"{sys.executable} -m repro_kit run --settle 200 --out run | head -1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", shell], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "BrokenPipe" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.startswith("emulator production") and len(proc.stdout.splitlines()) == 1
    assert (tmp_path / "run" / "report.json").exists()


def test_writes_5_adapts_the_default_deploy_time(tmp_path):
    code, out, err, rss = run_measured(["run", "--writes", "5", "--settle", "200", "--out", "run"], tmp_path)
    assert code == 0, err
    assert "deploy at 1.5 s" in out and "LOST 3 of 5" in out
