import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

#: Lines a test wants printed in the run's summary (e.g. the realm-core conformance count).
SUMMARY = pytest.StashKey[list]()


@pytest.fixture
def summary_line(request):
    """Call with a string: it is printed at the end of the test run, whatever the verbosity."""
    lines = request.config.stash.setdefault(SUMMARY, [])
    return lines.append


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for line in config.stash.get(SUMMARY, []):
        terminalreporter.write_line(line)
