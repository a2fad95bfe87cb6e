"""Sampling helpers: classifier-free guidance schedules, top-k / top-p filtering, seeded categorical draws."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from robustok.errors import ConfigError

SCHEDULES = ("constant", "linear", "power")


def check_guidance(scale: float, schedule: str = "constant", power: float = 1.0) -> None:
    """Raise `ConfigError` for a negative scale, an unknown schedule or a negative power (power 0: RAR's constant
    scale)."""
    if not math.isfinite(scale) or scale < 0:
        raise ConfigError(f"cfg scale must be >= 0, got {scale}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"cfg schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not (math.isfinite(power) and power >= 0):
        raise ConfigError(f"cfg power must be >= 0, got {power}")


def guidance_scale(scale: float, step: int, total: int, schedule: str = "constant", power: float = 1.0) -> float:
    """The guidance scale at sampling step `step` of `total` (0-based).

    constant: `scale`; linear: 1 -> scale as step/total grows; power (RAR's `guidance_scale_pow`):
    `1 + (scale-1) * (1 - cos(pi * (step/total)**power)) / 2` (power 0: `scale` at every step, 0**0 = 1).
    """
    frac = step / total
    if schedule == "constant":
        return scale
    if schedule == "linear":
        return 1.0 + (scale - 1.0) * frac
    if schedule == "power":
        return 1.0 + (scale - 1.0) * (1.0 - math.cos(math.pi * frac**power)) / 2.0
    raise ConfigError(f"cfg schedule must be one of {SCHEDULES}, got {schedule!r}")


def filter_logits(logits: torch.Tensor, top_k: Optional[int] = None, top_p: Optional[float] = None) -> torch.Tensor:
    """Set logits outside the top-k and outside the smallest nucleus of mass >= top_p to -inf (one is always kept)."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p  # mass before this token already >= p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw(
    logits: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    greedy: bool = False,
    u: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """One category per row of (already tempered and filtered) `logits` (B, K): an inverse-CDF draw, or argmax.

    Exactly one uniform number per row is consumed from `generator` (also when greedy), so two code paths that
    produce the same logits produce the same samples. `u` (B, 1) float64 on the logits' device: the uniform
    numbers to use instead (see `uniforms`); then `generator` is not touched.
    """
    if u is None:
        dev = generator.device if generator is not None else logits.device
        u = torch.rand(logits.shape[0], 1, generator=generator, device=dev, dtype=torch.float64).to(logits.device)
    if greedy:
        return logits.argmax(-1)
    cdf = torch.softmax(logits.double(), dim=-1).cumsum(-1)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)
    return idx.clamp_(max=logits.shape[-1] - 1)


def uniforms(generator: Optional[torch.Generator], steps: int, batch: int, device: torch.device) -> torch.Tensor:
    """The numbers `steps` successive `draw` calls on `batch` rows would take from `generator`, drawn the same way
    (one call per step, so also a CUDA generator gives the same values): (steps, batch, 1) float64 on `device`."""
    dev = generator.device if generator is not None else device
    u = [torch.rand(batch, 1, generator=generator, device=dev, dtype=torch.float64) for _ in range(steps)]
    return torch.stack(u).to(device)


@dataclass(frozen=True)
class DrawRule:
    """How AR sampling turns the logits of one step into a token: guidance, temperature, top-k, top-p."""

    cfg: float = 1.0
    schedule: str = "constant"
    power: float = 1.0
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    interval: int = -1  # LlamaGen's cfg_interval: guidance only for steps <= interval + 1 (-1: all)

    @property
    def guided(self) -> bool:
        """Whether conditional and unconditional rows run together (a scale other than a constant 1)."""
        return not (self.cfg == 1.0 and self.schedule == "constant")

    def apply(self, logits: torch.Tensor, batch: int, step: int, total: int) -> torch.Tensor:
        """Guided, tempered and filtered logits (batch, K) from the model's logits of one step (rows x K)."""
        if self.guided:
            cond, uncond = logits[:batch], logits[batch:]
            if self.interval >= 0 and step > self.interval + 1:
                logits = cond
            else:
                scale = guidance_scale(self.cfg, step, total, self.schedule, self.power)
                logits = cond + (scale - 1.0) * (cond - uncond)
        if self.temperature > 0:
            logits = filter_logits(logits / self.temperature, self.top_k, self.top_p)
        return logits


def condition_labels(labels: torch.Tensor, null_class: int, label_dropout: float = 0.0) -> torch.Tensor:
    """Unlabeled (-1) -> null class; each label replaced by the null class with probability `label_dropout`
    (the label dropout that classifier-free guidance needs)."""
    labels = labels.clone()
    labels[labels < 0] = null_class
    if label_dropout > 0:
        labels[torch.rand(labels.shape[0], device=labels.device) < label_dropout] = null_class
    return labels
