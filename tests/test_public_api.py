"""repro_kit's public surface: every exported name resolves, and resolves to the function."""

import subprocess
import sys

import repro_kit


def test_every_exported_name_resolves():
    for name in repro_kit.__all__:
        assert getattr(repro_kit, name) is not None, name


def test_sweep_is_the_function_even_after_its_module_is_imported():
    import repro_kit.sweeps  # noqa: F401

    assert callable(repro_kit.sweep) and repro_kit.sweep.__module__ == "repro_kit.sweeps"
    assert repro_kit.check.__module__ == "repro_kit.findings"
    import repro_kit.fleets  # noqa: F401

    assert callable(repro_kit.fleet) and repro_kit.fleet.__module__ == "repro_kit.fleets"


def test_import_is_cheap():
    code = "import sys, repro_kit; print(sorted(m for m in ('pandas', 'matplotlib', 'ipywidgets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
