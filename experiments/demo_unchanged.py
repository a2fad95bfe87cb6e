"""Does a code change leave the demo's numbers alone? `robustok demo --quick` at one thread vs a recorded result.

    python experiments/demo_unchanged.py --record experiments/results/demo-quick-reference.json   # before
    python experiments/demo_unchanged.py --check experiments/results/demo-quick-reference.json    # after

Runs the quick demo in a temporary folder with `OMP_NUM_THREADS=1` (`run.deterministic`-like: one thread gives
one result on one machine), drops the wall times and replaces the output folder in paths by `<out>`, then
records the rest or compares it value by value (exit 1 and the differing keys if any differ). Floating-point
results depend on the CPU's instruction set, so a reference recorded on another machine may differ in the last
digits: record the reference and check on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

TIMING_KEYS = {"wall_time_s", "stage_time_s"}


def normalized(results: dict, out: str) -> dict:
    """`results` without wall times and with the output folder in paths written as `<out>`."""

    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if k not in TIMING_KEYS}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x.replace(out, "<out>") if isinstance(x, str) else x

    return clean(results)


def differences(a: Any, b: Any, path: str = "") -> Iterator[str]:
    """The keys (as dotted paths) where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                yield f"{path}.{k}: only in {'reference' if k in a else 'this run'}"
            else:
                yield from differences(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b and not (a != a and b != b):  # NaN == NaN here
        yield f"{path}: {a!r} -> {b!r}"


def run_quick_demo() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "quick")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        r = subprocess.run(
            [sys.executable, "-m", "robustok.cli", "demo", "--quick", "--out", out],
            env=env,
            capture_output=True,
            text=True,
        )
        if r.returncode:
            sys.exit(f"robustok demo --quick failed:\n{r.stderr[-3000:]}")
        return normalized(json.loads((Path(out) / "results.json").read_text()), out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--record", metavar="JSON", help="write this run's normalized results.json here")
    g.add_argument("--check", metavar="JSON", help="compare this run with a recorded one")
    args = p.parse_args()
    res = run_quick_demo()
    if args.record:
        Path(args.record).write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
        print(f"recorded {args.record}")
        return 0
    ref = json.loads(Path(args.check).read_text())
    diff = list(differences(ref, res))
    for line in diff[:40]:
        print(line)
    print(f"{len(diff)} values differ from {args.check}" if diff else f"identical to {args.check}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
