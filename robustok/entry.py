"""The `robustok` command's entry point: chooses OpenMP's wait policy before torch loads, then runs the CLI.

OpenMP (libgomp) reads `OMP_WAIT_POLICY` once, when torch loads it. Its default lets idle worker threads spin,
which on shared or oversubscribed CPUs steals time from other processes (and from this one's own threads). The
CLI therefore sets `OMP_WAIT_POLICY=PASSIVE` (idle threads sleep) unless the user chose a policy. This module
imports nothing heavy, and `import robustok` does not load torch, so the console script, `python -m robustok`
and `python -m robustok.cli` all set it in time. Child processes (e.g. torchrun workers) inherit it.
"""
from __future__ import annotations

import os
import sys

DEFAULT_WAIT_POLICY = "PASSIVE"


def choose_omp_policy() -> bool:
    """Set `OMP_WAIT_POLICY=PASSIVE` if the user has not set it and torch is not loaded yet; True if set."""
    if os.environ.get("OMP_WAIT_POLICY") or "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = DEFAULT_WAIT_POLICY
    return True


def main(argv: list[str] | None = None) -> int:
    """The console script `robustok` (and `python -m robustok`)."""
    choose_omp_policy()
    from robustok.cli import main as cli_main

    return cli_main(argv)
