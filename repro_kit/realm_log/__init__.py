"""Bring your own sync log: realm-core 13 changesets decoded, a client's trace log replayed.

- `decode_changeset(bytes)` / `encode_changeset(instructions)`: realm-core 13.17.1's changeset
  format (varints, intern strings, every instruction type, paths, primary keys, payloads); a
  byte that the format does not allow raises `ChangesetError` naming its offset.
- `parse_printed(text)`: realm-core's own text rendering of a changeset, read back.
- `parse_log(path)`: a Realm SDK trace log's changesets and protocol lines (`SyncLog`).
- `translate(instructions)`: into the kit's instruction format, or `Untranslatable` reasons.
- `replay(path)`: the log through the kit's merge (`Replay`: steps, losses, `write_run(dir)`).
- `register(subparsers)`: the `repro-kit replay` command.
- `changesets_table(replay)`, `list_figure(replay)`: a replay as a DataFrame and a figure (notebook 06);
  `SAMPLE_LOG`: the recorded realm-core 13.17.1 device log the kit ships.

Submodules load on first use, so `from repro_kit import realm_log` (the CLI does it to build
its parser) costs nothing until a log is read.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "ChangesetError", "DecodedChangeset", "decode_changeset", "encode_changeset", "parse_printed",
    "SyncLog", "LogChangeset", "LogEvent", "LogError", "parse_log", "parse_log_text",
    "Translation", "Untranslatable", "translate",
    "Replay", "Step", "Loss", "BaseVersion", "replay", "replay_log", "origin_base",
    "register", "SAMPLE_LOG", "changesets_table", "list_figure",
    "AddTable", "EraseTable", "AddColumn", "EraseColumn", "CreateObject", "EraseObject", "Update", "AddInteger",
    "ArrayInsert", "ArrayMove", "ArrayErase", "Clear", "SetInsert", "SetErase", "Payload", "Link", "GlobalKey",
    "ObjectId", "Timestamp", "Decimal128",
]

_INSTRUCTIONS = ("AddTable", "EraseTable", "AddColumn", "EraseColumn", "CreateObject", "EraseObject", "Update",
                 "AddInteger", "ArrayInsert", "ArrayMove", "ArrayErase", "Clear", "SetInsert", "SetErase", "Payload",
                 "Link", "GlobalKey", "ObjectId", "Timestamp", "Decimal128")
_LAZY: dict[str, str] = {
    "ChangesetError": "._codec",
    "DecodedChangeset": "._decoder", "decode_changeset": "._decoder",
    "encode_changeset": "._encoder",
    "parse_printed": "._printed",
    "SyncLog": "._logparse", "LogChangeset": "._logparse", "LogEvent": "._logparse", "LogError": "._logparse",
    "parse_log": "._logparse", "parse_log_text": "._logparse",
    "Translation": "._translate", "Untranslatable": "._translate", "translate": "._translate",
    "Replay": "._replay", "Step": "._replay", "Loss": "._replay", "BaseVersion": "._replay", "replay": "._replay",
    "replay_log": "._replay", "origin_base": "._replay",
    "register": "._cli",
    "SAMPLE_LOG": "._sample",
    "changesets_table": "._views", "list_figure": "._views",
    **dict.fromkeys(_INSTRUCTIONS, "._instructions"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'repro_kit.realm_log' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
