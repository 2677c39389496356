import os

import pytest

from live_fakes.appservices_server import FakeAppServices

os.environ.setdefault("MPLBACKEND", "Agg")

#: Lines a test wants printed in the run's summary (e.g. the realm-core conformance count).
SUMMARY = pytest.StashKey[list]()


@pytest.fixture(autouse=True)
def _runs_in_the_tests_own_folder(tmp_path, monkeypatch):
    """The default run location no longer follows the current directory (`recording.runs_root`:
    the checkout's runs/): every test records under its own tmp_path/runs unless it says otherwise,
    so no test writes into the checkout."""
    monkeypatch.setenv("REPRO_KIT_RUNS", str(tmp_path / "runs"))


@pytest.fixture
def summary_line(request):
    """Call with a string: it is printed at the end of the test run, whatever the verbosity."""
    lines = request.config.stash.setdefault(SUMMARY, [])
    return lines.append


@pytest.fixture
def app_services():
    """The one fake App Services Admin/Client API (tests/live_fakes), serving on 127.0.0.1."""
    with FakeAppServices() as fake:
        yield fake


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for line in config.stash.get(SUMMARY, []):
        terminalreporter.write_line(line)
