"""Latent perturbation (RobusTok, arXiv 2509.12474 §4.2) and its annealing schedule.

Discrete tokens: each token is, with probability alpha, replaced by a code drawn uniformly from its delta
nearest codebook entries (the set includes the token's own code, so a fraction alpha*(1-1/delta) actually
changes). Neighbours are taken around the code e_k (`neighbours="code"`, the paper's wording) or around the
encoder output z (`"latent"`, what the authors' code does). In training, each image of a batch is perturbed
with probability beta (independently, so the fraction does not depend on the number of GPUs), and the
perturbed codes enter the decoder straight-through: gradients reach the encoder via z, VQ/commit losses are
computed before the perturbation. Continuous latents get Gaussian noise instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch


@dataclass
class PerturbationConfig:
    enabled: bool = False
    beta: float = 0.1  # fraction of images perturbed (each image independently)
    alpha: float = 1.0  # start value: per-token perturbation probability
    delta: int = 25  # start value: neighbourhood size (paper: 100 for K=4096)
    noise_std: float = 0.5  # start value: Gaussian noise std for continuous latents (times alpha ratio)
    end_ratio: float = 0.5  # alpha, delta and noise end at end_ratio x their start values
    anneal_start: float = 0.2  # fraction of train.steps where annealing starts (paper: epoch 40 of 200)
    anneal_end: float = 0.6  # fraction of train.steps where it ends (paper: epoch 120 of 200)
    neighbours: str = "code"  # "code": around e_k (paper) | "latent": around z (authors' code)

    BOUNDS: ClassVar[dict] = {
        "beta": "[0,1]",
        "alpha": "[0,1]",
        "delta": ">=1",
        "noise_std": ">=0",
        "end_ratio": "[0,1]",
        "anneal_start": "[0,1]",
        "anneal_end": "[0,1]",
    }


def anneal_ratio(step: int, total_steps: int, start: float, end: float, end_ratio: float) -> float:
    """Multiplier of the start values at `step`: 1 before `start`, linear to `end_ratio` at `end`, then flat.

    Computed per step and continuous at both ends (start/end are fractions of `total_steps`).
    """
    if not 0 <= start <= end <= 1:
        raise ValueError(f"need 0 <= anneal_start <= anneal_end <= 1, got {start}, {end}")
    t = step / max(total_steps, 1)
    if t <= start:
        return 1.0
    if t >= end:
        return end_ratio
    return 1.0 - (1.0 - end_ratio) * (t - start) / (end - start)


def scheduled(cfg: PerturbationConfig, step: int, total_steps: int) -> tuple[float, int, float]:
    """(alpha, delta, noise_std) at `step`."""
    r = anneal_ratio(step, total_steps, cfg.anneal_start, cfg.anneal_end, cfg.end_ratio)
    return cfg.alpha * r, max(1, int(round(cfg.delta * r))), cfg.noise_std * r


def neighbour_table(centers: torch.Tensor, codebook: torch.Tensor, delta: int) -> torch.Tensor:
    """Indices (N, delta) of the `delta` codes nearest (squared L2) to each row of `centers` (N, d)."""
    delta = min(delta, codebook.shape[0])
    c, e = centers.float(), codebook.float()
    d = c.pow(2).sum(1, keepdim=True) - 2 * c @ e.t() + e.pow(2).sum(1)[None]
    return d.topk(delta, dim=1, largest=False).indices


def perturb_ids(
    ids: torch.Tensor,
    codebook: torch.Tensor,
    alpha: float,
    delta: int,
    generator: Optional[torch.Generator] = None,
    z: Optional[torch.Tensor] = None,
    neighbours: str = "code",
    image_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Perturb token ids (B, h, w): each token w.p. `alpha` becomes a uniform draw from its `delta` neighbours.

    `z` (B, d, h, w) is needed for `neighbours="latent"`. `image_mask` (B,) bool limits the perturbation to
    some images. Deterministic for a given `generator` state.
    """
    if neighbours not in ("code", "latent"):
        raise ValueError(f"neighbours must be 'code' or 'latent', got {neighbours!r}")
    if not 0.0 <= alpha <= 1.0 or delta < 1:
        raise ValueError(f"need 0 <= alpha <= 1 and delta >= 1, got alpha={alpha}, delta={delta}")
    b, h, w = ids.shape
    flat = ids.reshape(-1)
    device = ids.device
    select = torch.rand(flat.shape, generator=generator, device=device) < alpha
    rank = torch.randint(0, min(delta, codebook.shape[0]), flat.shape, generator=generator, device=device)
    if image_mask is not None:
        select &= image_mask.to(device).repeat_interleave(h * w)
    out = flat.clone()
    where = select.nonzero().flatten()
    if where.numel() and alpha > 0:
        if neighbours == "code":
            centers = codebook[flat[where]]
        else:
            if z is None:
                raise ValueError("neighbours='latent' needs the latents z")
            centers = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])[where]
        table = neighbour_table(centers.detach(), codebook.detach(), delta)
        out[where] = table.gather(1, rank[where, None]).squeeze(1)
    return out.view(b, h, w)


def perturb_codes_st(
    z: torch.Tensor,
    ids: torch.Tensor,
    codebook: torch.Tensor,
    beta: float,
    alpha: float,
    delta: int,
    neighbours: str = "code",
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training-time perturbation of quantised latents, straight-through to the encoder output `z`.

    Returns `(z_dec, new_ids, image_mask)`: z_dec = z + sg(e[new_ids] - z) (B, d, h, w).
    """
    image_mask = torch.rand(ids.shape[0], generator=generator, device=ids.device) < beta
    new_ids = perturb_ids(ids, codebook, alpha, delta, generator, z=z, neighbours=neighbours, image_mask=image_mask)
    e = codebook.detach()[new_ids].permute(0, 3, 1, 2)
    return z + (e - z).detach(), new_ids, image_mask


def perturb_continuous(
    z: torch.Tensor, beta: float, noise_std: float, generator: Optional[torch.Generator] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous analogue: add N(0, noise_std^2) to the latents of a beta fraction of images."""
    image_mask = torch.rand(z.shape[0], generator=generator, device=z.device) < beta
    noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype) * noise_std
    return z + noise * image_mask.view(-1, 1, 1, 1).to(z.dtype), image_mask
