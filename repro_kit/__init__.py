"""repro_kit: reproduce, explain and audit the Realm Sync schema-deploy data loss.

The public surface is small and re-exported here; modules behind it are private to
the kit unless named below. Heavy pieces (pandas, matplotlib, ipywidgets) load on
first use, so `import repro_kit` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from repro_kit import _compiled

_compiled.activate(__path__)  # REPRO_KIT_COMPILED: the modules from a compiled build (before any is imported)

from repro_kit._history import Event, Nemesis, Notification, Op, Trace  # noqa: E402
from repro_kit._session import DeployResult, Info, Session, View  # noqa: E402
from repro_kit.client import connect  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "connect",
    "Session",
    "Info",
    "DeployResult",
    "Notification",
    "View",
    "Op",
    "Nemesis",
    "Event",
    "Trace",
    "EmulatorParams",
    "add_to_root",
    "run_test",
    "Run",
    "load_run",
    "latest_run",
    "runs_root",
    "analyse",
    "Analysis",
    "check",
    "Verdict",
    "intervals",
    "lifecycle",
    "timeline_figure",
    "sequence_diagram",
    "export",
    "build_report",
    "write_report",
    "sweep",
    "fleet",
    "load_fleet",
    "ControlPanel",
    "Actions",
    "Scenario",
    "find_orphans",
    "repair",
]

_LAZY = {
    "EmulatorParams": "repro_kit.emulator.params",
    "add_to_root": "repro_kit.driver",
    "run_test": "repro_kit.driver",
    "Run": "repro_kit.recording",
    "load_run": "repro_kit.recording",
    "latest_run": "repro_kit.recording",
    "runs_root": "repro_kit.recording",
    "analyse": "repro_kit.findings",
    "Analysis": "repro_kit.findings",
    "check": "repro_kit.findings",
    "Verdict": "repro_kit.findings",
    "intervals": "repro_kit._timeline",
    "lifecycle": "repro_kit._timeline",
    "timeline_figure": "repro_kit.plots",
    "sequence_diagram": "repro_kit.plots",
    "export": "repro_kit.plots",
    "build_report": "repro_kit.report",
    "write_report": "repro_kit.report",
    "sweep": "repro_kit.sweeps",
    "fleet": "repro_kit.fleets",
    "load_fleet": "repro_kit.fleets",
    "ControlPanel": "repro_kit.widgets",
    "Actions": "repro_kit.actions",
    "Scenario": "repro_kit.scenario",
    "find_orphans": "repro_kit.live.audit",
    "repair": "repro_kit.live.audit",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'repro_kit' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
