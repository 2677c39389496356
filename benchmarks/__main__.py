"""`python -m benchmarks [--only NAME ...] [--smoke] [--build auto|compiled|pure] [--out PATH]`: run the
figures, print the table.

`--build auto` (the default for full sizes) measures the compiled build (`repro_kit._compiled`,
made in build/compiled if it is missing or stale) when this machine can make it, else pure Python,
and says which; `--smoke` runs pure Python unless told otherwise."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import COMPILED_DIR, MODULES, build_in_use, format_table, row, write_results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", action="append", choices=MODULES, help="run only this module (repeatable)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (what the smoke test runs)")
    parser.add_argument("--build", choices=("auto", "compiled", "pure"), default=None,
                        help="which build to measure (default: auto; pure with --smoke)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")), help="results JSON path")
    args = parser.parse_args(argv)
    build = args.build or ("pure" if args.smoke else "auto")
    if build != "pure" and build_in_use() == "pure Python":
        return _in_compiled_build(argv, required=build == "compiled")
    if build == "pure" and build_in_use() != "pure Python":  # (REPRO_KIT_COMPILED set around us)
        from repro_kit import _compiled  # noqa: PLC0415

        env = {k: v for k, v in os.environ.items() if k != _compiled.ENV}
        return subprocess.run([sys.executable, "-m", "benchmarks", *argv], env=env).returncode
    print(f"build: {build_in_use()}", file=sys.stderr, flush=True)
    rows = []
    for name in args.only or MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            rows += module.run(**(module.SMOKE if args.smoke else {}))
        except Exception as exc:  # one broken figure must not hide the others
            rows.append(row(name, None, "", "", False, error=f"{type(exc).__name__}: {exc}"))
        print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    print(format_table(rows))
    path = write_results(rows, args.out)
    print(f"\nwritten {path}")
    failed = [r["figure"] for r in rows if "error" in r["details"]]
    missed = [r["figure"] for r in rows if r["met"] is False and "error" not in r["details"]]
    for figure in failed:
        print(f"FAILED: {figure}", file=sys.stderr)
    if args.smoke:  # tiny sizes on a shared machine say nothing about speed: only breakage fails
        if missed:
            print(f"(smoke sizes: {len(missed)} target(s) not judged)", file=sys.stderr)
        return 1 if failed else 0
    for figure in missed:
        print(f"MISSED TARGET: {figure}", file=sys.stderr)
    return 1 if failed or missed else 0


def _in_compiled_build(argv: list[str], required: bool) -> int:
    """Run these benchmarks again in a process that uses the compiled build (made now if missing or
    stale); without one (no C compiler, no mypyc), measure pure Python, or fail if it was required."""
    from repro_kit import _compiled  # noqa: PLC0415 - the kit is loaded only once the build is chosen

    try:
        where = _compiled.ensure(COMPILED_DIR)
    except (RuntimeError, OSError) as exc:
        print(f"no compiled build ({exc})" + ("" if required else "; measuring pure Python"), file=sys.stderr)
        if required:
            return 4
        return main([*argv, "--build", "pure"])
    env = {**os.environ, _compiled.ENV: str(where)}
    return subprocess.run([sys.executable, "-m", "benchmarks", *argv, "--build", "compiled"], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
