"""Fault injection for crash tests: `ROBUSTOK_FAULT_AT=<site>:<n>[:<action>][@<rank>]` acts the n-th time (1-based)
the named point is reached (several as `a:1,b:3:enospc`). Without the variable `fault_point` does nothing.

Actions: `kill` (default: SIGKILL, no clean-up, like a power loss of the process), `stop` (SIGSTOP: the process
pauses there until it gets SIGCONT; tests use it to hold a run at a chosen point while a second one starts),
`enospc` / `eio` (raise the `OSError` a full or failing disk gives, naming the file being written). `@<rank>`
arms the fault only in that torchrun rank.

Sites: `step` (after an optimiser step), `ckpt-file` (after each file written into a checkpoint under its temp
name), `ckpt-rename` (checkpoint complete, before pruning), `ckpt-prune` (an old checkpoint half pruned),
`export` (between the model and its extras), `eval` (after a post-training evaluation), `pairs` (pair data
written under its temp name), `store-batch` (after each batch added to a token store being built), `samples-batch`
(after each batch of sampled images), `commit` (an output folder complete under its temp name, before the rename),
`write` (inside every atomic file write, after its first bytes, before the rename: `robustok.hub.atomic_file`).
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path
from typing import Optional

ENV = "ROBUSTOK_FAULT_AT"
ACTIONS = ("kill", "stop", "enospc", "eio")
_counts: dict[str, int] = {}


def _targets() -> dict[str, tuple[int, str]]:
    """site -> (n, action) of the faults armed in this process."""
    rank = os.environ.get("RANK", "0")
    out = {}
    for part in filter(None, (p.strip() for p in os.environ.get(ENV, "").split(","))):
        part, _, only = part.partition("@")
        if only and only != rank:
            continue
        site, _, rest = part.partition(":")
        n, _, action = rest.partition(":")
        if (action or "kill") not in ACTIONS:
            raise ValueError(f"{ENV}: unknown fault action {action!r} in {part!r} (one of {', '.join(ACTIONS)})")
        out[site] = (int(n or 1), action or "kill")
    return out


def fault_point(site: str, path: Optional[str | Path] = None) -> None:
    """Act on this process if `site` is armed for this visit (see the module docstring); `path`: the file being
    written, named by the injected disk errors."""
    if ENV not in os.environ:
        return
    _counts[site] = _counts.get(site, 0) + 1
    n, action = _targets().get(site, (0, ""))
    if n != _counts[site]:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        code = errno.ENOSPC if action == "enospc" else errno.EIO
        raise OSError(code, os.strerror(code), None if path is None else str(path))
