"""The `--workers` flag of every command that reads images (see `robustok.data.loader`)."""

from __future__ import annotations

import argparse

from robustok.validation import bounded


def add_workers_arg(p: argparse.ArgumentParser) -> None:
    """--workers N: processes that read and decode images while the model runs (output identical for any N)."""
    p.add_argument(
        "--workers",
        type=bounded(int, ">=0"),
        default=None,
        help="processes reading and decoding images, overlapped with the model (results are identical "
        "for any N; 0: in this process). Default: 0 for Fashion-MNIST and sample .npz files, else "
        "the cores this process may use, shared among torchrun's ranks, at most 8",
    )
