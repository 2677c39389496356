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


def _help_flags(command: str) -> set[str]:
    from repro_kit.cli import _build_parser

    parser = _build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[command]
    return {opt for action in sub._actions for opt in action.option_strings if opt.startswith("--")} - {"--help"}


def _synopsis_flags() -> dict[str, set[str]]:
    block = README.split("## Command line", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    out: dict[str, set[str]] = {}
    command = None
    for line in block.splitlines():
        head = re.match(r"repro-kit(?: \[?(\w+)\]?)?", line.strip())
        if head and line.startswith("repro-kit"):
            command = head.group(1) or "menu"
        if command is not None:
            code = line.split("#", 1)[0]
            out.setdefault(command, set()).update(re.findall(r"--[a-z][a-z-]*", code))
    return out


def test_every_flag_in_the_readme_synopsis_is_in_help_and_the_reverse():
    synopsis = _synopsis_flags()
    assert set(synopsis) == {"menu", "run", "fleet", "report", "deploy", "audit", "notebooks", "replay", "export"}
    for command, flags in synopsis.items():
        assert flags == _help_flags(command), (command, sorted(flags ^ _help_flags(command)))


def test_the_python_example_runs_and_runs_again(tmp_path, monkeypatch):
    """The README's snippet is an example run as a test: twice, as a reader would."""
    import multiprocessing

    code = README.split("## Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    code = code.replace('rk.sweep(', 'rk.sweep(processes=1, ')  # in this process: the test stays light
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPRO_KIT_RUNS", str(tmp_path / "runs"))
    for _ in range(2):
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)
        assert namespace["analysis"].verdict.outcome == "lost" and len(namespace["df"]) == 6
    assert len(list((tmp_path / "runs").iterdir())) == 2
    assert multiprocessing.active_children() == []
