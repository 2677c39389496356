"""The live backend: App Services Admin/Client API over HTTP, Atlas over pymongo, orphan audit.

Atlas Device Sync reached end of life on 2025-09-30 and there is no Python Realm SDK, so
this backend deploys the schema change and watches Atlas while the user's app writes;
see docs/live.md. Names are imported lazily, so `import repro_kit` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "connect_live", "LiveSession", "LiveError", "AdminClient", "ClientAPI", "RetryPolicy",
    "AtlasCollectionView", "open_collection", "find_orphans", "repair", "AuditResult", "OwnerAudit", "RepairResult",
]

_WHERE = {
    "connect_live": "session", "LiveSession": "session",
    "LiveError": "appservices_api", "AdminClient": "appservices_api", "ClientAPI": "appservices_api",
    "RetryPolicy": "appservices_api",
    "AtlasCollectionView": "atlas", "open_collection": "atlas",
    "find_orphans": "audit", "repair": "audit", "AuditResult": "audit", "OwnerAudit": "audit", "RepairResult": "audit",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
