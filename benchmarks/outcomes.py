"""`python -m benchmarks.outcomes [--quick]`: hashes of the full final state of seeded runs.

What a speed-up must leave alone, beyond `tests/test_fingerprint.py`: run this on the code
before and after a change and compare the lines. Each line hashes, in order (dict key order
included, where the fingerprint sorts keys): every device's raw state, its pending and
in-flight changesets, server version and root; the server's history and state; the
translator's mirror; Atlas's documents; the random generator; the clock. The runs: the
scale benchmark's scenario (100 devices x 100 writes, and 20 x 20, both encodings), the
fingerprint's seeded multi-owner run with three seeds, a recorded Run test on a parent-pointer
tree and on the report's own tree (the recording's files), and a 300-user fleet (its recorded
history and events, and its sentence). `--quick`: the small sizes only (what the test runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, default=str).encode()).hexdigest()[:16]


def _entry(changeset: Any) -> dict[str, Any]:
    """A changeset as data: an older history entry's packed instructions read back as dicts."""
    return {key: (list(value) if key == "instructions" else value) for key, value in dict(changeset).items()}


def full_state(session: Any) -> dict[str, Any]:
    """Everything a run leaves behind, in the order it is held."""
    server, translator = session.server, session.translator
    return {
        "devices": [{"peer": d.peer, "state": d.state, "server_version": d.server_version,
                     "pending": [_entry(p) for p in d.pending], "inflight": _entry(d.inflight) if d.inflight else None,
                     "root": d.root_id()} for d in session.devices],
        "history": [[origin, _entry(entry)] for origin, entry in server.history],
        "server": server.state, "mirror": translator.mirror, "atlas": list(session.collection.find({})),
        "rng": session.rng.getstate(), "now": session.now(),
    }


def _scale(devices: int, writes: int, encoding: str) -> str:
    from benchmarks import scale

    session, _figures = scale.scenario_session(devices, writes, encoding)
    return _digest(full_state(session))


def _files(directory: Path) -> str:
    return _digest({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())
                    if p.suffix in (".jsonl", ".arrows")})


def hashes(quick: bool = False) -> Iterator[tuple[str, str]]:
    """(run, hash) for each run, in order."""
    from repro_kit import run_test
    from repro_kit.client import connect
    from repro_kit.fleets import fleet
    from repro_kit.recording import load_run

    sizes = [(20, 20)] if quick else [(100, 100), (20, 20)]
    for devices, writes in sizes:
        for encoding in ("replace", "diff"):
            yield f"scale {devices}x{writes} {encoding}", _scale(devices, writes, encoding)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_fingerprint import run_seeded_fleet

    for seed in (11,) if quick else (11, 12, 13):
        yield f"fingerprint run, seed {seed}", _digest(full_state(run_seeded_fleet(seed)))
    with tempfile.TemporaryDirectory(prefix="repro-kit-outcomes-") as tmp:
        for name, kwargs in (("run test, parent-pointer tree", {"tree": "parent"}), ("run test", {})):
            out = Path(tmp) / name.replace(" ", "-").replace(",", "")
            run_test(connect(seed=5, **kwargs), out=out, progress=False)
            yield name, _files(out)
        users = 40 if quick else 300
        analysis = fleet(users=users, notes_per_user=20, writes_per_user=20, write_every_s=1.0, deploy_at_s=5.5,
                         out=Path(tmp) / "fleet", progress=False)
        run = load_run(Path(tmp) / "fleet")
        yield f"fleet of {users}: history", _digest(run.history.to_dict("list"))
        yield f"fleet of {users}: events", _digest(run.events.to_dict("list"))
        yield f"fleet of {users}: sentence", analysis.summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outcomes", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small sizes only")
    args = parser.parse_args(argv)
    for name, value in hashes(args.quick):
        print(f"{name}: {value}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
