"""`mypyc_attr` for the model's modules, which an optional mypyc build compiles: a class that
must stay a Python class there says so with `@mypyc_attr(native_class=False)` (mypyc gives a
dict subclass no attributes, for one). Without mypy_extensions (a runtime without the type
checker) the decorator does nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:  # no mypyc build without it: nothing to mark

        def mypyc_attr(*_args: Any, **_kwargs: Any) -> Any:
            return lambda cls: cls


__all__ = ["mypyc_attr"]
