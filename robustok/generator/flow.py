"""Flow matching with the linear interpolant (rectified flow), and its ODE samplers.

Convention (SiT's linear path): `x_t = (1 - t) * x_0 + t * noise`, t in [0, 1], t = 0 data, t = 1 noise.
The model predicts the velocity `v = dx_t/dt = noise - x_0`; sampling integrates from t = t_start down to 0.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from robustok.errors import ConfigError

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SAMPLERS = ("euler", "heun")


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`x_t = (1 - t) x0 + t noise` with t (B,) broadcast over the other dims."""
    t = t.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - t) * x0 + t * noise


def time_grid(steps: int, t_start: float = 1.0, shift: float = 1.0) -> torch.Tensor:
    """`steps + 1` decreasing times from `t_start` to 0; `shift > 1` spends more steps at high noise (SD3's shift)."""
    if steps < 1:
        raise ConfigError(f"sampling steps must be >= 1, got {steps}")
    if not 0 < t_start <= 1:
        raise ConfigError(f"t_start must be in (0, 1], got {t_start}")
    t = torch.linspace(t_start, 0.0, steps + 1, dtype=torch.float64)
    if shift != 1.0:
        t = shift * t / (1 + (shift - 1) * t)
    return t


def integrate(
    v: VelocityFn,
    x: torch.Tensor,
    ts: torch.Tensor,
    sampler: str = "heun",
    progress: Optional[Callable[[int], None]] = None,
) -> torch.Tensor:
    """Solve dx/dt = v(x, t) along the times `ts` (decreasing) with Euler or Heun (2nd order; Euler on the last
    step to t = 0, as in EDM). Returns x at ts[-1]."""
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    B = x.shape[0]
    for i in range(len(ts) - 1):
        t, t_next = float(ts[i]), float(ts[i + 1])
        dt = t_next - t
        d = v(x, torch.full((B,), t, device=x.device))
        x_euler = x + dt * d
        if sampler == "heun" and t_next > 0:
            d2 = v(x_euler, torch.full((B,), t_next, device=x.device))
            x = x + dt * 0.5 * (d + d2)
        else:
            x = x_euler
        if progress is not None:
            progress(i)
    return x
