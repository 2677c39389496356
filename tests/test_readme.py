"""The README is part of the product: its commands and parameter table must stay true."""

import re
from pathlib import Path

from repro_kit.emulator.params import CHOICES, PARAM_SOURCES, EmulatorParams

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_first_section_shows_the_two_commands():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick and "make test" in quick
    assert README.index("## Quick start") < README.index("## ", README.index("## Quick start") + 1)


def test_parameter_table_matches_the_model():
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", README, flags=re.M))
    defaults = EmulatorParams().as_dict()
    assert set(rows) == set(PARAM_SOURCES) | set(CHOICES)
    for name, shown in rows.items():
        if name in CHOICES:
            assert shown.strip() == CHOICES[name][0][0], name
        else:
            assert float(shown) == float(defaults[name]), name


def test_every_parameter_row_names_its_source():
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| [^|]+ \| ([^|]+) \|", README, flags=re.M)
    assert {name for name, _ in rows} == set(PARAM_SOURCES) | set(CHOICES)
    assert all(source.strip() for _, source in rows)


def test_what_the_evidence_says_covers_every_source():
    section = README.split("## What the evidence says", 1)[1].split("\n## ", 1)[0]
    for needle in ("report", "2023-03-02", "DOCSP-27364", "transform.cpp", "list.hpp", "Lst::clear",
                   "do not trigger a", "#6063", "development mode", "2,400"):
        assert needle in section, needle
