"""The merge model against outcomes recorded from realm-core 13.17.1 itself.

Every case of `tests/data/realm-core-13.17.1/` (2,400 of them) goes through
`ot.converge`; the visible state must equal what realm-core's own peers reached.
The count is printed in the test run's summary.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from repro_kit.emulator import ot

DATA = Path(__file__).parent / "data" / "realm-core-13.17.1"
FILES = ("public-differential.jsonl.gz", "public-wide.jsonl.gz")


def load_cases(name: str) -> list[dict]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def as_recorded(state: dict) -> dict:
    """A converged state read as the recordings are: text (unset reads as "") and visible children."""
    return {pk: {"text": obj.get("text") or "", "children": list(obj.get("children", []))}
            for pk, obj in state.get("Node", {}).items()}


def recorded(case: dict) -> dict:
    return {pk: {"text": obj.get("text") or "", "children": list(obj["children"])}
            for pk, obj in case["realm_core"].items()}


def first_difference(got: dict, want: dict) -> str:
    for pk in sorted(set(got) | set(want)):
        if got.get(pk) != want.get(pk):
            return f"object {pk}: model {got.get(pk)} vs realm-core {want.get(pk)}"
    return "no difference"


def test_every_recorded_realm_core_outcome_is_reproduced(summary_line):
    total, agree, failures = 0, 0, []
    for name in FILES:
        for n, case in enumerate(load_cases(name), 1):
            total += 1
            try:
                got = as_recorded(ot.converge(case["base"], case["changesets"]))
            except ValueError as exc:
                failures.append(f"{name} case {n}: converge raised {exc}")
                continue
            want = recorded(case)
            if got == want:
                agree += 1
            else:
                failures.append(f"{name} case {n} ({case['peers']} peers): {first_difference(got, want)}")
    summary_line(f"realm-core 13.17.1 conformance: {agree:,} of {total:,} recorded outcomes reproduced")
    assert total == 2400, f"expected the 2,400 recorded cases, found {total}"
    assert not failures, f"{agree} of {total} agree; first failures:\n" + "\n".join(failures[:5])


@pytest.mark.parametrize("name, count", [("public-differential.jsonl.gz", 800), ("public-wide.jsonl.gz", 1600)])
def test_the_recorded_files_are_complete_and_well_formed(name, count):
    cases = load_cases(name)
    assert len(cases) == count
    for case in cases:
        assert case["peers"] == len(case["changesets"]) in (2, 3)
        for n, changeset in enumerate(case["changesets"]):
            ot.validate(changeset, f"changesets[{n}]")
