"""JSON as the standard defines it: `NaN`, `Infinity` and `-Infinity` are not numbers.

Why: Python's `json.loads` accepts them, so a meta.json holding `"deploy_at_s": NaN`
would load and then print "deploy at nan s", or compare false everywhere and make a
verdict silently wrong. A run directory's meta.json is read through `loads_finite`, which
refuses such a file with one line naming the key (the run is then inconclusive, and says why).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads_finite"]


class _NotANumber:
    """Stands where the text had NaN/Infinity, so the key holding it can be named."""

    def __init__(self, text: str) -> None:
        self.text = text


def _where(value: Any, path: str = "") -> tuple[str, str] | None:
    """(key path, "NaN" | "Infinity" | "-Infinity") of the first non-number found, else None."""
    if isinstance(value, _NotANumber):
        return path or "(the top level)", value.text
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))  # type: ignore[assignment]
    else:
        return None
    for key, item in items:
        child = f"{path}{key}" if str(key).startswith("[") else (f"{path}.{key}" if path else str(key))
        found = _where(item, child)
        if found is not None:
            return found
    return None


def loads_finite(text: str, what: str = "the JSON") -> Any:
    """`json.loads`, refusing NaN, Infinity and -Infinity with a ValueError naming the key."""
    value = json.loads(text, parse_constant=_NotANumber)
    found = _where(value)
    if found is not None:
        key, word = found
        raise ValueError(f"{what}: {key} is {word}, not a number (JSON has no NaN or Infinity)")
    return value
