"""`connect`: one entry point for both backends."""

from __future__ import annotations

from typing import Any

from repro_kit import _checks
from repro_kit._session import Session

__all__ = ["connect", "BACKENDS"]

BACKENDS = ("emulator", "live")


def connect(backend: str = "emulator", **kwargs: Any) -> Session:
    """Open a Session on `backend`: "emulator" (default, needs nothing) or "live".

    Emulator keywords: mode, encoding, seed, realtime, user_id, and any
    `repro_kit.emulator.EmulatorParams` field. Live keywords: see `repro_kit.live.connect_live`.
    """
    _checks.choice("backend", backend, BACKENDS)
    # Each backend loads when asked for: `import repro_kit` takes about 30 ms, the emulator
    # (SimPy) would add about 150 ms and the live backend (requests, pymongo) about 250 ms
    # (python -X importtime).
    if backend == "emulator":
        from repro_kit.emulator.session import EmulatedSession  # noqa: PLC0415 - see above

        return EmulatedSession(**kwargs)
    from repro_kit.live.session import connect_live  # noqa: PLC0415 - see above

    return connect_live(**kwargs)
