"""Main training of a tokenizer (stage 1 of the paper): reconstruction + VQ + optional perceptual/GAN losses,
with latent perturbation on a beta fraction of images, annealed per step."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional, cast

import torch
from torch import Tensor, nn

from robustok.config import DataConfig, RunConfig, TrainConfig
from robustok.data import build_dataset
from robustok.errors import CheckpointError, ConfigError
from robustok.losses.config import LossConfig
from robustok.losses.discriminators import (
    Discriminator,
    build_discriminator,
    discriminator_spec,
    load_discriminator,
    save_discriminator,
)
from robustok.losses.objective import reconstruction_objective
from robustok.losses.perceptual import build_perceptual
from robustok.losses.semantic import build_semantic
from robustok.tokenizer.model import Tokenizer, TokenizerConfig
from robustok.tokenizer.perturbation import PerturbationConfig, scheduled
from robustok.train.task import Task

__all__ = ["LossConfig", "TokenizerTask", "TokenizerTrainConfig", "check_weight_files", "load_discriminator"]


@dataclass
class TokenizerTrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    perturb: PerturbationConfig = field(default_factory=PerturbationConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    PRESETS: ClassVar[str] = "tokenizer"  # `robustok train-tokenizer fmnist-robust`: robustok/configs/tokenizer/

    def validate(self) -> None:
        self.model.validate()
        if self.data.resolution != self.model.image_size:
            raise ConfigError(f"data.resolution ({self.data.resolution}) != model.image_size ({self.model.image_size})")
        if self.data.channels != self.model.channels:
            raise ConfigError(f"data.channels ({self.data.channels}) != model.channels ({self.model.channels})")
        p = self.perturb
        if not 0 <= p.beta <= 1 or not 0 <= p.alpha <= 1 or p.delta < 1:
            raise ConfigError(f"perturb: need 0<=beta<=1, 0<=alpha<=1, delta>=1 (got {p.beta}, {p.alpha}, {p.delta})")
        if p.enabled and self.model.bottleneck == "vq" and p.delta > self.model.codebook_size:
            raise ConfigError(f"perturb.delta ({p.delta}) must be <= model.codebook_size ({self.model.codebook_size})")
        if p.neighbours not in ("code", "latent"):
            raise ConfigError(f"perturb.neighbours must be 'code' or 'latent', got {p.neighbours!r}")
        if not 0 <= p.anneal_start <= p.anneal_end <= 1:
            raise ConfigError("perturb.anneal_start/anneal_end are fractions of train.steps with start <= end")


def check_weight_files(cfg: TokenizerTrainConfig) -> None:
    """Raise one `CheckpointError` listing every pretrained file the config needs that is not there (before any
    network is built: nothing is ever downloaded)."""
    lc = cfg.loss
    wanted = {"model.dinov2_checkpoint": cfg.model.dinov2_checkpoint}
    if lc.perceptual == "lpips":
        wanted.update({"loss.lpips_vgg": lc.lpips_vgg, "loss.lpips_lin": lc.lpips_lin})
    if lc.perceptual == "aux":
        wanted["loss.aux_perceptual_weights"] = lc.aux_perceptual_weights
    if lc.disc_weight > 0 and lc.disc_kind == "dino":
        wanted["loss.dino_disc_checkpoint"] = lc.dino_disc_checkpoint
    if lc.semantic != "none" and lc.semantic_weight != 0:
        wanted["loss.semantic_checkpoint"] = lc.semantic_checkpoint
    missing = [
        f"{key}={path or '(not set)'}"
        for key, path in wanted.items()
        if (path or key != "model.dinov2_checkpoint") and not (path and Path(path).is_file())
    ]
    if missing:
        raise CheckpointError(
            "pretrained weight file(s) not found (nothing is downloaded; give local paths, see "
            f"docs/imagenet.md): {', '.join(missing)}"
        )


class TokenizerTask(Task[Tokenizer]):
    """The training step of stage 1 (see `robustok.train.task` for the task contract).

    Previews show reconstructions of the first 8 images of `data.val` (held-out images) next to those of the
    current training batch.
    """

    kind = "tokenizer"
    preview_nrow = 8

    def __init__(self, cfg: TokenizerTrainConfig, model: Optional[Tokenizer] = None, dataset=None):
        cfg.validate()
        check_weight_files(cfg)
        self.cfg = cfg
        torch.manual_seed(cfg.run.seed)
        self.model = model if model is not None else Tokenizer(cfg.model)
        if cfg.model.dinov2_checkpoint and model is None:
            from robustok.tokenizer.vit import ViTDecoder, ViTEncoder, load_dinov2

            load_dinov2(
                cast(ViTEncoder, self.model.encoder), cfg.model.dinov2_checkpoint
            )  # dinov2_checkpoint is for backbone=vit
            if cfg.model.dinov2_init_decoder:
                load_dinov2(cast(ViTDecoder, self.model.decoder), cfg.model.dinov2_checkpoint)
        self.dataset = (
            dataset
            if dataset is not None
            else build_dataset(
                cfg.data.train,
                cfg.data.resolution,
                cfg.data.channels,
                train=cfg.data.augment,
                root=cfg.data.root,
                seed=cfg.run.seed,
            )
        )
        lc = cfg.loss
        self.perceptual = build_perceptual(lc.perceptual, lc.lpips_vgg, lc.lpips_lin, lc.aux_perceptual_weights)
        self.disc: Optional[Discriminator] = (
            build_discriminator(discriminator_spec(lc, cfg.model.channels)) if lc.disc_weight > 0 else None
        )
        self.semantic = build_semantic(lc, cfg.model.image_size, cfg.model.image_size // cfg.model.grid_size)
        if self.semantic is not None and self.semantic.dim != cfg.model.hidden_dim:
            raise ConfigError(
                f"loss.semantic: the teacher's width ({self.semantic.dim}) must equal model.hidden_dim "
                f"({cfg.model.hidden_dim}): its feature goes through the tokenizer's quant_conv"
            )
        self.disc_lr, self.disc_weight_decay = lc.disc_lr, lc.disc_weight_decay

    def perturb_args(self, step: int) -> Optional[dict]:
        p = self.cfg.perturb
        if not p.enabled:
            return None
        alpha, delta, noise = scheduled(p, step, self.cfg.train.steps)
        return {"beta": p.beta, "alpha": alpha, "delta": delta, "noise_std": noise, "neighbours": p.neighbours}

    def step(self, model: nn.Module, batch, step: int, inner: Tokenizer) -> dict[str, Tensor]:
        x = batch[0]
        perturb = self.perturb_args(step)
        out = model(x, perturb)
        loss, d_loss, logs = reconstruction_objective(
            out.recon.float(), x, self.cfg.loss, self.perceptual, self.disc, inner.last_layer, step
        )
        if self.semantic is not None:
            self.semantic.to(x.device)
            sem = self.semantic(x, out.latents, lambda f: inner._latent_mean(inner.quant_conv(f)))
            loss = loss + sem
            logs["semantic"] = sem.detach()
        loss = loss + sum(out.losses.values())
        result: dict[str, Tensor] = {} if d_loss is None else {"disc_loss": d_loss}
        if perturb is not None:
            logs.update(alpha=torch.tensor(perturb["alpha"]), delta=torch.tensor(float(perturb["delta"])))
        result.update(loss=loss, **logs, **{k: v.detach() for k, v in {**out.losses, **out.stats}.items()})
        if out.ids is not None:
            usage = inner._discrete("codebook usage").usage
            result["codebook_usage"] = (usage > self.cfg.model.dead_code_threshold).float().mean()
        return result

    def preview(self, model: Tokenizer, batch) -> Tensor:
        x = batch[0][:8]
        held_out = self._val_images(x.device)
        was = model.training
        model.eval()
        rows = [x, model.reconstruct(x), held_out, model.reconstruct(held_out)]
        model.train(was)
        return torch.cat(rows)

    def _val_images(self, device: torch.device) -> Tensor:
        """The first 8 images of `data.val` (read once)."""
        if getattr(self, "_val", None) is None:
            from robustok.data import eval_batches

            d = self.cfg.data
            self._val = next(iter(eval_batches(d.val, 8, 8, d.resolution, d.channels, root=d.root)))[0]
        return self._val.to(device)

    def export(self, directory: Path, model: Tokenizer) -> None:
        """Save the discriminator beside the tokenizer, so post-training can reuse it."""
        if self.disc is not None:
            save_discriminator(self.disc, directory)
