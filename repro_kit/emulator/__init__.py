"""The emulated backend: device, sync server, translator, Atlas collection and control plane."""

from repro_kit import _compiled

_compiled.extend(__path__, "emulator")  # REPRO_KIT_COMPILED: this subpackage's compiled modules first
