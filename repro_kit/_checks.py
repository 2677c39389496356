"""Every input check of the kit, written once.

The edges (`Scenario`, `FleetParams`, `EmulatorParams`, `connect`, the CLI, the live entry
points) check what a user gives them with these; the layers below trust it. A failed check raises `InputError`, a
ValueError whose message is one line naming the input ("interval_s: must be > 0, got 0"), and
which a front end can rename to its own spelling (`named({"interval_s": "--interval"})`).
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from repro_kit.emulator.params import CHOICES  # the choices' home, with their sources

__all__ = ["InputError", "integer", "number", "choice", "flag", "text", "instance", "session_choices", "TREES",
           "number_arg", "integer_arg", "process"]

#: How the app links a note to its parent: the report's `children` list on the parent, or (a
#: mitigation) a scalar `parent` field on each child.
TREES = ("children", "parent")


class InputError(ValueError):
    """A bad input: `field` is its Python name, `problem` the reason without it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def named(self, names: Mapping[str, str]) -> str:
        """The message with the input spelt as `names` spells it (the CLI's flags)."""
        return str(self.renamed(names))

    def renamed(self, names: Mapping[str, str]) -> InputError:
        """The same error with the input spelt as `names` spells it."""
        return InputError(names.get(self.field, self.field), self.problem)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(field: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """An int (a bool is not one; a whole float such as 20.0 is accepted as 20) within [low, high]."""
    if not _is_number(value) or not math.isfinite(value) or float(value) != int(value):
        raise InputError(field, f"must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"from {low:,} to {high:,}" if low is not None and high is not None else \
            f">= {low:,}" if low is not None else f"<= {high:,}"
        raise InputError(field, f"must be an integer {bounds}, got {value!r}")
    return value


def number(field: str, value: Any, low: float | None = None, high: float | None = None, *,
           above: bool = False) -> float:
    """A finite number within [low, high] (`above=True`: strictly greater than `low`)."""
    if not _is_number(value):
        raise InputError(field, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InputError(field, f"must be a finite number, got {value!r}")
    if low is not None and (value <= low if above else value < low):
        raise InputError(field, f"must be {'>' if above else '>='} {low:g}, got {value!r}")
    if high is not None and value > high:
        raise InputError(field, f"must be <= {high:g}, got {value!r}")
    return float(value)


def choice(field: str, value: Any, allowed: Iterable[str]) -> str:
    """One of `allowed`."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise InputError(field, f"must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def flag(field: str, value: Any) -> bool:
    """True or False (not 1, 0 or None)."""
    if not isinstance(value, bool):
        raise InputError(field, f"must be True or False, got {value!r}")
    return value


def text(field: str, value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise InputError(field, f"must be a non-empty string, got {value!r}")
    return value


def instance(field: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """An instance of `kind`, which the message calls `what` ("a Scenario", "a loaded Run")."""
    if not isinstance(value, kind):
        raise InputError(field, f"must be {what}, got {type(value).__name__}")
    return value


def process(field: str, value: Any) -> int | str:
    """A history record's process: a client's number (an int, numpy's too; not a bool) or a
    name ("nemesis")."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(field, f"must be an int or 'nemesis', got {value!r}")
    return int(value)


def session_choices(*, mode: Any, encoding: Any, tree: Any, reimport: Any, seed: Any, realtime: Any) -> None:
    """What `connect` takes besides the model's parameters."""
    choice("mode", mode, CHOICES["mode"][0])
    choice("encoding", encoding, CHOICES["encoding"][0])
    choice("reimport", reimport, CHOICES["reimport"][0])
    choice("tree", tree, TREES)
    integer("seed", seed)
    flag("realtime", realtime)


def number_arg(text: str) -> float:
    """A command-line number as typed (argparse `type=`); its range (and nan, inf) is for the input's
    own check to refuse, with one message each."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def integer_arg(text: str) -> int:
    """A command-line integer as typed (argparse `type=`)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
