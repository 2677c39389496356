"""The README is part of the product: its commands and parameter table must stay true."""

import re
from pathlib import Path

from repro_kit.emulator.params import PARAM_SOURCES, EmulatorParams

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_first_section_shows_the_two_commands():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick and "make test" in quick
    assert README.index("## Quick start") < README.index("## ", README.index("## Quick start") + 1)


def test_parameter_table_matches_the_model():
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", README, flags=re.M))
    defaults = EmulatorParams().as_dict()
    assert set(rows) == set(PARAM_SOURCES)
    for name, shown in rows.items():
        assert float(shown) == float(defaults[name]), name
