"""Honest time estimates: measure a few training steps on this machine, then say how long the run will take.

The same 2-core machine kind can train the robust Fashion-MNIST tokenizer at ~300 img/s on one CPU model and
~70 img/s on another, so a fixed "about 30 minutes" misleads. `ThroughputProbe` wraps the training loop's batch
iterator (one line in `train.loop`): it skips a few warm-up steps, times the next few (data loading included)
and prints the measured rate, the device and the expected wall time of the run before the long part starts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import torch


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's "model name" from /proc/cpuinfo (or the platform's processor string where there is none)."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name" and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device | str) -> str:
    """A GPU's name (torch.cuda.get_device_name), or the CPU model and the number of torch threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} threads of {os.cpu_count()} logical CPUs)"


def format_duration(seconds: float) -> str:
    """'45 s', '12.3 min' or '2 h 05 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


class ThroughputProbe:
    """Times steps `[start + warmup, start + warmup + measure)` of a run of `total` steps and logs one estimate.

    `world`: processes sharing the work (each batch counts `world` times); `log`: where the line goes.
    """

    def __init__(
        self,
        total: int,
        start: int,
        device: torch.device | str,
        world: int = 1,
        warmup: int = 3,
        measure: int = 10,
        enabled: bool = True,
        log: Optional[Callable[[str], None]] = None,
    ):
        self.total, self.start, self.device, self.world = total, start, torch.device(device), world
        self.warmup, self.measure, self.enabled = warmup, measure, enabled
        self.log = log or _tqdm_write
        self.result: Optional[dict] = None

    def wrap(self, batches: Iterable) -> Iterator:
        """Yield `batches` unchanged, timing the steps between successive requests."""
        t0, images = 0.0, 0
        for i, batch in enumerate(batches):
            if self.enabled and self.result is None:
                if i == self.warmup:
                    t0 = time.perf_counter()
                elif i == self.warmup + self.measure:
                    self.report(time.perf_counter() - t0, images)
                if self.warmup <= i < self.warmup + self.measure:
                    images += _batch_size(batch) * self.world
            yield batch

    def report(self, seconds: float, images: int) -> dict:
        """Log the measured rate and the expected wall time of the run's steps; return them as a dict."""
        per_step = seconds / self.measure
        total = self.total - self.start
        left = self.total - (self.start + self.warmup + self.measure)
        self.result = {
            "images_per_s": images / max(seconds, 1e-9),
            "seconds_per_step": per_step,
            "device": device_name(self.device),
            "expected_total_s": per_step * total,
            "expected_left_s": per_step * left,
        }
        r = self.result
        self.log(
            f"measured {r['images_per_s']:.0f} img/s ({per_step:.3f} s/step over {self.measure} steps) on "
            f"{r['device']}: expected total ~{format_duration(r['expected_total_s'])} for {total} steps "
            f"(~{format_duration(r['expected_left_s'])} from now; periodic evaluation, checkpoints and "
            f"slower later phases such as a GAN loss come on top)"
        )
        return self.result


def _batch_size(batch) -> int:
    first = batch[0] if isinstance(batch, (list, tuple)) and batch else batch
    return int(first.shape[0]) if torch.is_tensor(first) else 0


def _tqdm_write(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line)
