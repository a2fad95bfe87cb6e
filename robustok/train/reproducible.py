"""`run.deterministic=true`: bitwise-repeatable runs for a given seed.

Data order and augmentation are already pure functions of (seed, step, index) and every step reseeds torch
(`robustok.seeding.step_seed`); what remains nondeterministic is the arithmetic itself: multi-threaded CPU kernels
reduce in an order that depends on scheduling (two runs on 2 threads first differed at step 7, by 1e-7), and some
CUDA kernels use atomics. This mode runs the process on one CPU thread and asks torch for deterministic
algorithms (an error names any operation that has none). It stays in force for the rest of the process.
"""

from __future__ import annotations

import os

import torch


def make_deterministic() -> None:
    """One intra-op thread, deterministic kernels, no cuDNN autotuning (idempotent)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS reductions
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
