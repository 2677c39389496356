"""The App Services control plane: the app's configuration and schema deploys.

Holds the same documents a real app does (the report's schema, relationship, rules,
anonymous auth, flexible sync on `owner_id`). A deploy edits the schema with the same
function the live backend uses before its Admin API PUT.

Production mode, per the App Services docs ("Update Your Data Model"): the server
retrieves the collection's documents and re-inserts them, which "does cause a temporary
halt to propagating changes". Which documents: `reimport` ("all", the docs until
2023-03-02; "new-values", only those holding a value for the new field, since then).
Development mode: the schema follows the client additively; no resync, no halt.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import simpy

from repro_kit import _schema
from repro_kit._session import DeployResult
from repro_kit.emulator.params import MODES, REIMPORTS, EmulatorParams
from repro_kit.emulator.translator import Translator

__all__ = ["ControlPlane"]


class ControlPlane:
    def __init__(self, env: simpy.Environment, translator: Translator, mode: str, params: EmulatorParams,
                 reimport: str = "all") -> None:
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
        if reimport not in REIMPORTS:
            raise ValueError(f"reimport: must be one of {', '.join(REIMPORTS)}, got {reimport!r}")
        self.reimport, self.env, self.translator, self.mode, self.params = reimport, env, translator, mode, params
        self.schema: dict[str, Any] = copy.deepcopy(_schema.NODE_SCHEMA)
        self.relationships = copy.deepcopy(_schema.NODE_RELATIONSHIPS)
        self.rules = copy.deepcopy(_schema.NODE_RULES)
        self.sync = copy.deepcopy(_schema.SYNC_CONFIG)
        self.sync["development_mode_enabled"] = mode == "development"
        self.auth_providers = [{"name": "anon-user", "type": "anon-user", "disabled": False}]
        self.deployments: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def deploy_schema_change(self, field: str, bson_type: str) -> DeployResult:
        """Add an optional field (validated exactly as a live deploy is) and deploy it."""
        new_schema = _schema.add_optional_field(self.schema, field, bson_type)
        self.schema = new_schema
        deployment_id = f"emulated-{next(self._ids)}"
        self.deployments.append({"_id": deployment_id, "status": "successful", "time": self.env.now,
                                 "field": field, "bson_type": bson_type})
        if self.mode == "production":
            p = self.params
            self.translator.resync(p.resync_delay_s, int(p.resync_batch_size), p.resync_batch_interval_s,
                                   reimport=self.reimport, field=field)
        return DeployResult(field=field, bson_type=bson_type, status="successful",
                            deployment_id=deployment_id, schema=copy.deepcopy(new_schema))
