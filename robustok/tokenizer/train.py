"""Main training of a tokenizer (stage 1 of the paper): reconstruction + VQ + optional perceptual/GAN losses,
with latent perturbation on a beta fraction of images, annealed per step."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from robustok.config import DataConfig, RunConfig, TrainConfig
from robustok.data import build_dataset
from robustok.errors import ConfigError
from robustok.hub import atomic_write_bytes, save_tensors
from robustok.losses.gan import LeCam, PatchDiscriminator
from robustok.losses.objective import reconstruction_objective
from robustok.losses.perceptual import build_perceptual
from robustok.tokenizer.model import Tokenizer, TokenizerConfig
from robustok.tokenizer.perturbation import PerturbationConfig, scheduled


@dataclass
class LossConfig:
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    perceptual: str = "none"          # none | lpips (needs lpips_vgg + lpips_lin weight files)
    perceptual_weight: float = 1.0
    lpips_vgg: Optional[str] = None
    lpips_lin: Optional[str] = None
    disc_weight: float = 0.0          # GAN term weight (paper: 0.5); 0 disables the discriminator
    disc_start: int = 0               # step at which the GAN terms switch on
    disc_lr: float = 1e-4
    disc_weight_decay: float = 0.0
    disc_width: int = 32
    disc_layers: int = 2
    lecam_weight: float = 0.001
    adaptive_weight: bool = True


@dataclass
class TokenizerTrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    perturb: PerturbationConfig = field(default_factory=PerturbationConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        self.model.validate()
        if self.data.resolution != self.model.image_size:
            raise ConfigError(f"data.resolution ({self.data.resolution}) != model.image_size ({self.model.image_size})")
        if self.data.channels != self.model.channels:
            raise ConfigError(f"data.channels ({self.data.channels}) != model.channels ({self.model.channels})")
        p = self.perturb
        if not 0 <= p.beta <= 1 or not 0 <= p.alpha <= 1 or p.delta < 1:
            raise ConfigError(f"perturb: need 0<=beta<=1, 0<=alpha<=1, delta>=1 (got {p.beta}, {p.alpha}, {p.delta})")
        if p.neighbours not in ("code", "latent"):
            raise ConfigError(f"perturb.neighbours must be 'code' or 'latent', got {p.neighbours!r}")
        if not 0 <= p.anneal_start <= p.anneal_end <= 1:
            raise ConfigError("perturb.anneal_start/anneal_end are fractions of train.steps with start <= end")


class Discriminator(nn.Module):
    """PatchGAN + its LeCam EMA state, checkpointed together."""

    def __init__(self, channels: int, width: int, layers: int):
        super().__init__()
        self.net = PatchDiscriminator(channels, width, layers)
        self.lecam = LeCam()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TokenizerTask:
    """The training step of stage 1 (see `robustok.train.loop` for the task protocol)."""

    kind = "tokenizer"
    preview_nrow = 8

    def __init__(self, cfg: TokenizerTrainConfig, model: Optional[Tokenizer] = None, dataset=None):
        cfg.validate()
        self.cfg = cfg
        torch.manual_seed(cfg.run.seed)
        self.model = model if model is not None else Tokenizer(cfg.model)
        if cfg.model.dinov2_checkpoint and model is None:
            from robustok.tokenizer.vit import load_dinov2
            load_dinov2(self.model.encoder, cfg.model.dinov2_checkpoint)
        self.dataset = dataset if dataset is not None else build_dataset(
            cfg.data.train, cfg.data.resolution, cfg.data.channels, train=cfg.data.augment, root=cfg.data.root,
            seed=cfg.run.seed)
        lc = cfg.loss
        self.perceptual = build_perceptual(lc.perceptual, lc.lpips_vgg, lc.lpips_lin)
        self.disc = Discriminator(cfg.model.channels, lc.disc_width, lc.disc_layers) if lc.disc_weight > 0 else None
        self.disc_lr, self.disc_weight_decay = lc.disc_lr, lc.disc_weight_decay

    def perturb_args(self, step: int) -> Optional[dict]:
        p = self.cfg.perturb
        if not p.enabled:
            return None
        alpha, delta, noise = scheduled(p, step, self.cfg.train.steps)
        return {"beta": p.beta, "alpha": alpha, "delta": delta, "noise_std": noise, "neighbours": p.neighbours}

    def step(self, model: nn.Module, batch, step: int) -> dict[str, Tensor]:
        x = batch[0]
        perturb = self.perturb_args(step)
        out = model(x, perturb)
        loss, d_loss, logs = reconstruction_objective(out.recon.float(), x, self.cfg.loss, self.perceptual,
                                                      self.disc, self.model.last_layer, step)
        loss = loss + sum(out.losses.values())
        result: dict[str, Tensor] = {} if d_loss is None else {"disc_loss": d_loss}
        if perturb is not None:
            logs.update(alpha=torch.tensor(perturb["alpha"]), delta=torch.tensor(float(perturb["delta"])))
        result.update(loss=loss, **logs, **{k: v.detach() for k, v in {**out.losses, **out.stats}.items()})
        if out.ids is not None:
            result["codebook_usage"] = (self.model.quantizer.usage > self.cfg.model.dead_code_threshold).float().mean()
        return result

    def preview(self, model: Tokenizer, batch) -> Tensor:
        x = batch[0][:8]
        was = model.training
        model.eval()
        rows = [x, model.reconstruct(x)]
        model.train(was)
        return torch.cat(rows)

    def export(self, directory: Path, model: Tokenizer) -> None:
        """Save the discriminator beside the tokenizer, so post-training can reuse it."""
        if self.disc is not None:
            lc = self.cfg.loss
            save_tensors(self.disc.state_dict(), Path(directory) / "discriminator.safetensors")
            atomic_write_bytes(Path(directory) / "discriminator.json", json.dumps(
                {"channels": self.cfg.model.channels, "width": lc.disc_width, "layers": lc.disc_layers}).encode())
