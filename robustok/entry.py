"""The `robustok` command's entry point: shortens OpenMP's idle spinning before torch loads, then runs the CLI.

OpenMP (libgomp) reads its settings once, when torch loads it. By default idle worker threads spin for a long time,
which on shared or oversubscribed CPUs steals time from other processes and from this one's own threads
(`python benchmarks/omp_policy.py --load 1`: 740 ms per tokenizer step spinning vs 508 ms with
`OMP_WAIT_POLICY=PASSIVE`). PASSIVE costs 11-14% on quiet cores, though (240 vs 267-278 ms), so the CLI sets a
short spin instead, `GOMP_SPINCOUNT=1000` (quiet: +4%; next to one busy process: 542 ms), unless the user set
`OMP_WAIT_POLICY` or `GOMP_SPINCOUNT`. This module imports nothing heavy and `import robustok` does not load
torch, so the console script, `python -m robustok` and `python -m robustok.cli` all set it in time. Child
processes (e.g. torchrun workers) inherit it.
"""

from __future__ import annotations

import os
import sys

DEFAULT_SPINCOUNT = "1000"


def choose_omp_policy() -> bool:
    """Set `GOMP_SPINCOUNT=1000` unless the user chose a policy or spin count, or torch is loaded; True if set."""
    if os.environ.get("OMP_WAIT_POLICY") or os.environ.get("GOMP_SPINCOUNT") or "torch" in sys.modules:
        return False
    os.environ["GOMP_SPINCOUNT"] = DEFAULT_SPINCOUNT
    return True


def main(argv: list[str] | None = None) -> int:
    """The console script `robustok` (and `python -m robustok`)."""
    choose_omp_policy()
    from robustok.cli import main as cli_main

    return cli_main(argv)
