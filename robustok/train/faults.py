"""Fault injection for crash tests: `ROBUSTOK_FAULT_AT=<site>:<n>` SIGKILLs the process the n-th time (1-based)
the named point is reached (several as `a:1,b:3`). Without the variable `fault_point` does nothing.

Sites: `step` (after an optimiser step), `ckpt-file` (after each file written into a checkpoint under its temp
name), `ckpt-rename` (checkpoint complete, before pruning), `ckpt-prune` (an old checkpoint half pruned),
`export` (between the model and its extras), `eval` (after a post-training evaluation), `pairs` (pair data
written under its temp name), `store-batch` (after each batch added to a token store being built), `samples-batch`
(after each batch of sampled images), `commit` (an output folder complete under its temp name, before the rename).
"""
from __future__ import annotations

import os
import signal

ENV = "ROBUSTOK_FAULT_AT"
_counts: dict[str, int] = {}


def _targets() -> dict[str, int]:
    spec = os.environ.get(ENV, "")
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        site, _, n = part.partition(":")
        out[site] = int(n or 1)
    return out


def fault_point(site: str) -> None:
    """Kill this process (SIGKILL: no clean-up, like a power loss of the process) if `site` is armed."""
    if ENV not in os.environ:
        return
    _counts[site] = _counts.get(site, 0) + 1
    if _targets().get(site) == _counts[site]:
        os.kill(os.getpid(), signal.SIGKILL)
