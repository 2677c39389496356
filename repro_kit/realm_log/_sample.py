"""The recorded realm-core 13.17.1 device log the kit ships, so notebook 06 runs from a pip install.

Copied unchanged from the investigation's evidence (`shared/conformance/realm-core-13.17.1/
sync-logs/device_trace.log`): device A's sync client, at trace level, while client B, offline
since server version 2, cleared the root's list and re-inserted its snapshot.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SAMPLE_LOG"]

#: Path of the shipped sample log (package data).
SAMPLE_LOG: Path = Path(__file__).resolve().parent / "samples" / "device_trace.log"
