"""`connect`: one entry point for both backends."""

from __future__ import annotations

from typing import Any

from repro_kit._session import Session

__all__ = ["connect", "BACKENDS"]

BACKENDS = ("emulator", "live")


def connect(backend: str = "emulator", **kwargs: Any) -> Session:
    """Open a Session on `backend`: "emulator" (default, needs nothing) or "live".

    Emulator keywords: mode, encoding, seed, realtime, user_id, and any
    `repro_kit.emulator.EmulatorParams` field. Live keywords: see `repro_kit.live.connect_live`.
    """
    if backend == "emulator":
        from repro_kit.emulator.session import EmulatedSession

        return EmulatedSession(**kwargs)
    if backend == "live":
        from repro_kit.live.session import connect_live

        return connect_live(**kwargs)
    raise ValueError(f"backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
