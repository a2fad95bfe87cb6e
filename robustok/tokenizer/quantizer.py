"""The tokenizer bottlenecks: `VectorQuantizer` (l2-normalised low-dimensional codes, straight-through gradients,
dead-code restart) and `GaussianBottleneck` (continuous latents: reparameterised sample + KL).

Both are registered in `robustok.tokenizer.components.BOTTLENECKS` (`model.bottleneck`: vq | kl); each is a
`Bottleneck`: `discrete`, `input_factor` (pre-quantisation channels per code dimension) and
`from_config(TokenizerConfig)`."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def _dist_ready() -> bool:
    return dist.is_available() and dist.is_initialized()


class Bottleneck(nn.Module):
    """Base of the bottlenecks: `discrete` (True: token ids, the module has `VectorQuantizer`'s interface),
    `input_factor` (pre-quantisation channels per code dimension) and `from_config(TokenizerConfig)`."""

    discrete: ClassVar[bool]
    input_factor: ClassVar[int]

    @classmethod
    def from_config(cls, c: Any) -> "Bottleneck":
        raise NotImplementedError(f"{cls.__name__} must implement from_config(TokenizerConfig)")


class VectorQuantizer(Bottleneck):
    """Nearest-neighbour VQ over a K x d codebook (squared L2, == cosine when `l2_norm`).

    Losses (computed on the clean assignment): `vq` = mean((z_q - sg z)^2) trains the codebook, `commit` =
    commit_weight * mean((sg z_q - z)^2) trains the encoder. Dead codes (usage EMA below `dead_threshold`
    counts per step) are re-initialised from current encoder outputs at the start of a training forward;
    under torch.distributed usage is summed over ranks and new codes come from rank 0.
    """

    discrete = True
    input_factor = 1
    usage: Tensor  # buffer (with track_usage): EMA of per-step code counts

    @classmethod
    def from_config(cls, c) -> "VectorQuantizer":
        return cls(c.codebook_size, c.code_dim, c.l2_norm, c.commit_weight, c.dead_code_threshold, c.usage_decay)

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        l2_norm: bool = True,
        commit_weight: float = 0.25,
        dead_threshold: float = 0.01,
        usage_decay: float = 0.99,
        track_usage: bool = True,
    ):
        super().__init__()
        self.codebook_size, self.dim, self.l2_norm = codebook_size, dim, l2_norm
        self.commit_weight, self.usage_decay, self.track_usage = commit_weight, usage_decay, track_usage
        self.dead_threshold = dead_threshold if track_usage else 0.0
        self.embedding = nn.Embedding(codebook_size, dim)
        nn.init.normal_(self.embedding.weight)
        if track_usage:  # without it the only state is the codebook (e.g. adapters of released tokenizers)
            self.register_buffer("usage", torch.ones(codebook_size))

    @property
    def codebook(self) -> torch.Tensor:
        """The (K, d) code vectors as used for lookup (l2-normalised if configured)."""
        w = self.embedding.weight
        return F.normalize(w, dim=1) if self.l2_norm else w

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=1) if self.l2_norm else z

    def nearest(self, z_flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of `z_flat` (N, d)."""
        e = self.codebook.float()
        z_flat = z_flat.float()
        d = z_flat.pow(2).sum(1, keepdim=True) - 2 * z_flat @ e.t() + e.pow(2).sum(1)[None]
        return d.argmin(1)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors for ids (B, h, w) -> (B, d, h, w)."""
        if ids.is_floating_point():
            raise ValueError(f"token ids must be integers, got {ids.dtype}")
        ids = ids.long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise ValueError(
                f"token ids must lie in [0, {self.codebook_size}); got range [{int(ids.min())}, {int(ids.max())}]"
            )
        return F.embedding(ids, self.codebook).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def _restart_dead_codes(self, z_flat: torch.Tensor) -> int:
        dead = (self.usage < self.dead_threshold).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        pick = torch.randint(0, z_flat.shape[0], (dead.numel(),), device=z_flat.device)
        new = z_flat[pick].to(self.embedding.weight.dtype)
        if _dist_ready():
            dist.broadcast(new, src=0)
        self.embedding.weight.data[dead] = new
        self.usage[dead] = 1.0
        return int(dead.numel())

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """z (B, d, h, w) -> (straight-through z_q, ids (B, h, w), losses and stats)."""
        z = self.normalize(z.float())
        b, d, h, w = z.shape
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        restarted = 0
        if self.training and self.dead_threshold > 0:
            restarted = self._restart_dead_codes(z_flat.detach())
        ids_flat = self.nearest(z_flat.detach())
        z_q = self.codebook[ids_flat].view(b, h, w, d).permute(0, 3, 1, 2)
        losses = {"vq": F.mse_loss(z_q, z.detach()), "commit": self.commit_weight * F.mse_loss(z, z_q.detach())}
        counts = torch.bincount(ids_flat, minlength=self.codebook_size).float()
        if self.training and self.track_usage:
            with torch.no_grad():
                if _dist_ready():
                    dist.all_reduce(counts)
                self.usage.mul_(self.usage_decay).add_(counts, alpha=1 - self.usage_decay)
        probs = counts / counts.sum().clamp_min(1)
        stats = {
            "perplexity": torch.exp(-(probs * probs.clamp_min(1e-10).log()).sum()),
            "batch_usage": (counts > 0).float().mean(),
            "restarted": torch.tensor(float(restarted)),
        }
        z_q_st = z + (z_q - z).detach()
        return z_q_st, ids_flat.view(b, h, w), {**losses, **stats}


class GaussianBottleneck(Bottleneck):
    """Diagonal Gaussian posterior over continuous latents (no parameters).

    In training: a reparameterised sample drawn with `generator` (the global RNG when None), then latent noise on
    a `perturb["beta"]` fraction of images; in eval mode: the mean, unperturbed. The KL to N(0, I) is weighted
    by `kl_weight`. `scale` multiplies the latents (after sampling, before the perturbation).
    """

    discrete = False
    input_factor = 2  # mean and log-variance

    def __init__(self, kl_weight: float = 1e-6):
        super().__init__()
        self.kl_weight = kl_weight

    @classmethod
    def from_config(cls, c) -> "GaussianBottleneck":
        return cls(c.kl_weight)

    def forward(
        self,
        mean: Tensor,
        logvar: Tensor,
        perturb: dict | None = None,
        generator: torch.Generator | None = None,
        scale: float = 1.0,
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """(latents, {"kl": weighted KL}, stats) from the posterior moments (B, d, h, w)."""
        from robustok.tokenizer.perturbation import perturb_continuous

        logvar = logvar.clamp(-30.0, 20.0)
        if self.training:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + eps * (0.5 * logvar).exp()
        else:
            z = mean
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3)).mean()
        z = z * scale
        stats: dict[str, Tensor] = {}
        if self.training and perturb is not None and perturb.get("beta", 0) > 0:
            z, mask = perturb_continuous(z, perturb["beta"], perturb["noise_std"], generator)
            stats["perturbed_images"] = mask.float().mean()
        return z, {"kl": self.kl_weight * kl}, stats
