"""Credentials kept out of what the kit writes: the recorder's meta.json and the report's tables.

Both the recorder (before meta touches the disk) and the report (parameters and nemesis values
it quotes) redact with these, so the two can never disagree on what a secret is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["redact", "is_secret_key", "MASK"]

#: What a credential's value is replaced with.
MASK = "***"

# Keys whose values are credentials wherever they appear (meta, params): never written.
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api_?key|private|credential|auth)", re.I)
_URI_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@", re.I)


def is_secret_key(key: str) -> bool:
    """Whether a value under `key` is a credential (*token*, *password*, *api_key*, ...)."""
    return _SECRET_KEY.search(key) is not None


def redact(value: Any, key: str = "") -> Any:
    """`value` with its credentials dropped: values under secret keys masked (at any depth), and
    the user:password@ of any URI in a string."""
    if key and is_secret_key(key):
        return MASK
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _URI_USERINFO.sub(rf"\g<scheme>{MASK}@", value)
    return value
