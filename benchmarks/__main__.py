"""`python -m benchmarks [--only NAME ...] [--smoke] [--out PATH]`: run the figures, print the table."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from benchmarks import MODULES, format_table, row, write_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", action="append", choices=MODULES, help="run only this module (repeatable)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (what the smoke test runs)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")), help="results JSON path")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
