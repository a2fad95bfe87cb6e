"""Check that two `robustok demo` runs gave the same numbers: `results.json` equal except timing fields and the
output folder in paths.

    OMP_NUM_THREADS=1 robustok demo --quick --out /tmp/before     # on the old commit
    OMP_NUM_THREADS=1 robustok demo --quick --out /tmp/after      # on the new commit
    python benchmarks/same_results.py /tmp/before /tmp/after      # exit 0: identical; 1: lists the differences
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

TIMING = ("wall_time_s", "stage_time_s")


def normalised(out: Path) -> object:
    """results.json of the demo in `out`, without timing fields and with `out` replaced by OUT in strings."""
    data = json.loads((out / "results.json").read_text())
    for key in TIMING:
        data.pop(key, None)
    return json.loads(json.dumps(data).replace(str(out).rstrip("/"), "OUT"))


def differences(a: object, b: object, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in differences(a.get(k), b.get(k), f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where or '/'}: {a!r} != {b!r}"]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    diff = differences(*(normalised(Path(p)) for p in argv))
    print("\n".join(diff) if diff else "identical (except timing fields and the output folder)")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
