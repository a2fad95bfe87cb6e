"""Numeric precision of training (`train.amp`) and sampling (`--precision`): fp32 | bf16 | auto.

bf16 means bf16 autocast (weights and optimiser state stay fp32). `auto` picks bf16 on a CUDA device that
supports it and fp32 elsewhere; on CPUs with bf16 matrix instructions (AMX-BF16 or AVX512-BF16: Intel Xeon
4th generation and later, AMD Zen 4 and later) it picks bf16 only once `AUTO_BF16_ON_CPU` is set, which follows
the quality study `experiments/cpu_bf16.py` (its criterion is fixed in its docstring; results in
experiments/results/cpu-bf16.json). Where bf16 is asked for but not available (a CPU without those instructions,
where it would be emulated and slower, a GPU without bf16) the run says so and uses fp32.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import ContextManager

import torch

from robustok.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")
ALIASES = {"off": "fp32", "false": "fp32"}  # train.amp=off of earlier configs (YAML reads a bare off as False)
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
AUTO_BF16_ON_CPU = True  # the measurement passed (experiments/results/cpu-bf16.json, 2 seeds per precision)


def normalize(setting: str) -> str:
    """`setting` as one of PRECISIONS (`off` = fp32); a `ConfigError` for anything else."""
    s = str(setting).strip().lower()
    s = ALIASES.get(s, s)
    if s not in PRECISIONS:
        raise ConfigError(f"precision must be auto, bf16 or fp32 (train.amp, --precision), got {setting!r}")
    return s


@functools.lru_cache(maxsize=1)
def cpu_bf16_instructions() -> str | None:
    """The CPU's bf16 matrix instruction set (`amx_bf16` or `avx512_bf16`, from /proc/cpuinfo), or None."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return next((f for f in CPU_BF16_FLAGS if f in flags), None)


def resolve_precision(setting: str, device: str | torch.device) -> tuple[str, str]:
    """(`bf16` | `fp32`, why) for a setting on a device."""
    s, device = normalize(setting), torch.device(device)
    if s == "fp32":
        return "fp32", "fp32 asked for"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"{'auto: ' if s == 'auto' else ''}bf16 autocast on CUDA"
        return "fp32", "this GPU does not support bf16: using fp32"
    if device.type != "cpu":
        return "fp32", f"bf16 autocast is not used on {device.type}: using fp32"
    units = cpu_bf16_instructions()
    if units is None:
        return "fp32", (
            "auto: this CPU has no bf16 matrix instructions (amx_bf16/avx512_bf16)"
            if s == "auto"
            else "bf16 asked for, but this CPU has no bf16 matrix instructions (amx_bf16/avx512_bf16), "
            "where it would be emulated and slower: using fp32"
        )
    if s == "bf16" or AUTO_BF16_ON_CPU:
        return "bf16", f"{'auto: ' if s == 'auto' else ''}bf16 autocast on a CPU with {units}"
    return "fp32", (
        f"auto: fp32 on CPUs until experiments/cpu_bf16.py shows bf16 costs no quality; this CPU has "
        f"{units}: pass bf16 to use it"
    )


def autocast(precision: str, device: str | torch.device) -> ContextManager:
    """bf16 autocast on `device` for a resolved `bf16`, nothing for `fp32`."""
    device = torch.device(device)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
