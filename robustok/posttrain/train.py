"""Decoder post-training: fine-tune the decoder side of a tokenizer on (generated tokens -> real image) pairs.

Encoder, pre-quant projection and codebook are frozen (they define the tokens; `frozen_part_names()`), so
generators and token stores made with the tokenizer stay valid. Losses are those of main training
(reconstruction + optional perceptual + GAN with the main-training discriminator when one was saved).
`control=True` runs the same fine-tuning on clean pairs (the real image's own tokens, sigma = 1): the
equal-compute control without which no gain can be attributed to the generated tokens.
Every `eval_every` steps a gFID proxy is computed: the held-out free samples of the same generator decoded by
the current decoder (the EMA decoder when `train.ema_decay > 0` and `eval_ema`), against reference statistics of
the real data (with an EMA, the raw weights' proxy is recorded beside it); the best decoder is kept. Recipe
options (paper values in docs/posttrain.md): `epochs` (length over the pairs), `eval_ema` / `ema_warmup` /
`ema_keep` (an EMA that starts at the untouched decoder, its decay optionally set from the run's length),
`reuse_discriminator` / `disc_diffaug` with the `loss.disc_*` keys (GAN from step 0), `loss.perceptual=aux` (an
offline perceptual network that is not the FID network) and, in the pairs, `pair_input` (token ids or the
authors' round trip). `configs/posttrain/fmnist-authors.yaml` combines them (docs/studies.md, E2).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor, nn

from robustok.config import DataConfig, RunConfig, TrainConfig
from robustok.data import build_dataset, to_uint8
from robustok.errors import ConfigError
from robustok.losses.config import LossConfig
from robustok.losses.diffaug import DiffAugment
from robustok.losses.discriminators import (
    Discriminator,
    build_discriminator,
    discriminator_spec,
    has_discriminator,
    load_discriminator,
)
from robustok.losses.objective import reconstruction_objective
from robustok.losses.perceptual import build_perceptual
from robustok.metrics.features import FeatureNet
from robustok.tokenizer.base import TokenizerBase
from robustok.tokens.pairs import PairDataset, PairStore
from robustok.train.faults import fault_point
from robustok.train.task import Task


@dataclass
class PostTrainConfig:
    tokenizer: str = ""  # tokenizer directory (main-trained, or an adapter's directory)
    pairs: str = ""  # pairs folder from `robustok post-train-data` (or import-pairs)
    control: bool = False  # train on the real tokens instead (sigma = 1 control)
    clean_fraction: float = 0.0  # share of each batch trained on clean pairs (protects rFID)
    reuse_discriminator: bool = True  # load <tokenizer>/discriminator/ if present (authors: false,
    # fresh heads from step 0: their yaml sets debug_disc)
    disc_diffaug: Optional[str] = None  # DiffAugment policy of the post-training D; None: a reused D keeps its
    # own, a fresh one uses loss.diffaug (authors: color,translation,cutout)
    epochs: float = 0.0  # > 0: train.steps = ceil(epochs * num_pairs / data.batch_size)
    # (paper: 40, Table 4b); 0: train.steps as given
    eval_ema: bool = True  # with train.ema_decay > 0: proxy, best and exported decoder are the EMA
    # (authors: EMA 0.9999, evaluated with the EMA); false: the online one
    ema_warmup: bool = False  # false: the EMA starts at the untouched decoder with the plain decay
    # (authors); true: the loop's warm-up min(decay, (1+s)/(10+s)), which
    # soon forgets the untouched decoder
    ema_keep: float = 0.0  # > 0: train.ema_decay = ema_keep ** (1 / train.steps), so that after the
    # last step the EMA keeps this share of the untouched decoder, whatever the
    # length (authors: 0.9999 over 7,813 steps keeps 0.46)
    eval_every: int = 0  # steps between gFID-proxy evaluations (0: only at the end)
    eval_features: str = "fmnist"  # feature network of the proxy FID
    eval_reference: str = ""  # data spec of the proxy's reference set (default: the pairs' data)
    eval_num_reference: int = 5000
    run: RunConfig = field(default_factory=lambda: RunConfig(dir="runs/post", ckpt_every=0, sample_every=0))
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=64, augment=False))
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=400, lr=5e-4, min_lr=5e-5, warmup_steps=20, ema_decay=0.0)
    )

    BOUNDS: ClassVar[dict] = {
        "clean_fraction": "[0,1]",
        "eval_every": ">=0",
        "eval_num_reference": ">=2",
        "epochs": ">=0",
        "ema_keep": "[0,1]",
    }
    DATA_SPECS: ClassVar[tuple] = ("eval_reference",)
    PRESETS: ClassVar[str] = "posttrain"  # `robustok post-train fmnist`: robustok/configs/posttrain/
    NPZ_SPECS: ClassVar[tuple] = ("eval_reference",)  # may also be a statistics / samples .npz (ADM's batch)


def freeze_encoder_side(tok: TokenizerBase) -> list[nn.Parameter]:
    """Freeze every parameter under `tok.frozen_part_names()`; return the trainable (decoder-side) ones."""
    prefixes = tuple(tok.frozen_part_names())
    trainable = []
    for name, p in tok.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)
        else:
            trainable.append(p)
    if not trainable:
        raise ConfigError("this tokenizer has no decoder parameters to post-train")
    return trainable


def epochs_to_steps(epochs: float, num_pairs: int, batch_size: int) -> int:
    """Optimisation steps for `epochs` passes over `num_pairs` pairs at global batch `batch_size` (at least 1)."""
    if epochs <= 0 or num_pairs < 1 or batch_size < 1:
        raise ConfigError(
            f"epochs ({epochs}), number of pairs ({num_pairs}) and data.batch_size ({batch_size}) must be positive"
        )
    return max(1, math.ceil(epochs * num_pairs / batch_size))


class PostTrainTask(Task[TokenizerBase]):
    """Decoder fine-tuning on pairs (see `robustok.train.task` for the task contract)."""

    kind = "tokenizer"
    preview_nrow = 8

    def __init__(
        self,
        cfg: PostTrainConfig,
        tokenizer: Optional[TokenizerBase] = None,
        store: Optional[PairStore] = None,
        reference_stats: Any = None,
    ):
        if not 0 <= cfg.clean_fraction <= 1:
            raise ConfigError(f"clean_fraction must lie in [0, 1], got {cfg.clean_fraction}")
        self.cfg = cfg
        if tokenizer is None:
            from robustok.tokenizer.loading import load_tokenizer  # any tokenizer directory (ours or an adapter's)

            tokenizer = load_tokenizer(cfg.tokenizer)
        self.model = tokenizer
        self.model.train()
        self.params = freeze_encoder_side(self.model)
        self.store = store if store is not None else PairStore(cfg.pairs, self.model)
        if cfg.epochs > 0:  # the length in passes over the pairs; the loop (and the saved config) see the steps
            cfg.train.steps = epochs_to_steps(cfg.epochs, len(self.store), cfg.data.batch_size)
        if cfg.ema_keep > 0:  # the decay from the run's length (the saved config holds the resulting decay)
            cfg.train.ema_decay = cfg.ema_keep ** (1 / cfg.train.steps)
        self.eval_ema, self.ema_warmup = cfg.eval_ema, cfg.ema_warmup  # read by the training loop
        m = self.store.manifest
        images = build_dataset(m["data"], m["resolution"], m["channels"], train=False, root=cfg.data.root)
        self.dataset = PairDataset(self.store, images)
        lc = cfg.loss
        self.perceptual = build_perceptual(lc.perceptual, lc.lpips_vgg, lc.lpips_lin, lc.aux_perceptual_weights)
        self.disc: Optional[Discriminator] = None
        if lc.disc_weight > 0:
            torch.manual_seed(cfg.run.seed)  # a fresh discriminator: the same one in every process (resume)
            self.disc = self._discriminator(m["channels"])
        self.disc_lr, self.disc_weight_decay = lc.disc_lr, lc.disc_weight_decay
        self.eval_every = cfg.eval_every or cfg.train.steps
        self._reference = reference_stats
        self._features: Optional[FeatureNet] = None
        self.best: Optional[float] = None
        self.best_state: Optional[dict[str, Tensor]] = None  # the best decoder's (non-frozen) tensors
        self.curve: list[dict] = []

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.params

    def _discriminator(self, channels: int) -> Discriminator:
        lc = self.cfg.loss
        d = Path(self.cfg.tokenizer) if self.cfg.tokenizer else None
        if self.cfg.reuse_discriminator and d and has_discriminator(d):
            disc = load_discriminator(d, lc.dino_disc_checkpoint)
            self.reused_discriminator = True
        else:
            self.reused_discriminator = False
            disc = build_discriminator(discriminator_spec(lc, channels))
        if self.cfg.disc_diffaug is not None:
            try:
                disc.augment = DiffAugment(self.cfg.disc_diffaug)
            except ConfigError as err:
                raise ConfigError(str(err).replace("loss.diffaug", "disc_diffaug")) from None
            disc.spec["diffaug"] = self.cfg.disc_diffaug
        return disc

    def decode(self, model: nn.Module, generated: Tensor) -> Tensor:
        return self.store.token_kind.decode_raw(model, generated)

    def step(self, model: nn.Module, batch, step: int, inner: TokenizerBase) -> dict[str, Tensor]:
        generated, x, _ = batch
        if self.cfg.control or self.cfg.clean_fraction > 0:
            with torch.no_grad():
                clean = self.store.token_kind.encode(inner, x)
            if self.cfg.control:
                generated = clean
            else:
                n_clean = int(round(self.cfg.clean_fraction * x.shape[0]))
                generated = torch.cat([clean[:n_clean], generated[n_clean:]])
        recon = self.decode(model, generated).float()
        loss, d_loss, logs = reconstruction_objective(
            recon, x, self.cfg.loss, self.perceptual, self.disc, inner.last_layer, step
        )
        return {"loss": loss, **logs, **({} if d_loss is None else {"disc_loss": d_loss})}

    def preview(self, model: nn.Module, batch) -> Tensor:
        generated, x, _ = batch
        with torch.no_grad():
            return torch.cat([x[:8], self.decode(model, generated[:8]).clamp(-1, 1)])

    # --- gFID proxy -------------------------------------------------------------------------------------
    def _proxy_setup(self, device: torch.device):
        from robustok.metrics.features import get_feature_net
        from robustok.metrics.fid import source_stats

        if self._features is None:
            self._features = get_feature_net(self.cfg.eval_features, device)
        if self._reference is None:
            m = self.store.manifest
            spec = self.cfg.eval_reference or m["data"]
            self._reference = source_stats(
                spec, self._features, num_images=self.cfg.eval_num_reference, resolution=m["resolution"]
            )
        return self._features, self._reference

    @torch.no_grad()
    def proxy_fid(self, model: nn.Module) -> float:
        """FID of the held-out free samples decoded by `model` against the real reference set."""
        from robustok.metrics.fid import extract, fid_between

        if self.store.eval_generated is None:
            raise ConfigError(f"{self.store.dir}: no held-out samples (eval_generated.npy) for the gFID proxy")
        device = next(model.parameters()).device
        feats, ref = self._proxy_setup(device)
        was = model.training
        model.eval()
        from robustok.distributed import rank_world

        rank, world = rank_world()
        gen = self.store.tensor(self.store.eval_generated)[rank::world]  # stats are gathered over ranks

        def batches():
            for lo in range(0, len(gen), 200):
                yield to_uint8(self.decode(model, gen[lo : lo + 200].to(device)).clamp(-1, 1)).cpu()

        stats = extract(batches(), feats, "decoded samples")
        model.train(was)
        return fid_between(stats, ref)

    def epoch_at(self, step: int) -> float:
        """Passes over the pairs after `step` optimisation steps."""
        return step * self.cfg.data.batch_size / len(self.store)

    def evaluate(self, model: TokenizerBase, step: int) -> dict[str, float]:
        """The gFID proxy of `model` (the EMA when one is evaluated: then also of the raw weights, reported only)."""
        fid = self.proxy_fid(model)
        point = {"step": step, "epoch": self.epoch_at(step), "gfid_proxy": fid}
        if model is not self.model:  # the EMA is evaluated: the raw (online) decoder's proxy beside it
            point["gfid_proxy_raw"] = self.proxy_fid(self.model)
        self.curve.append(point)
        if self.best is None or fid < self.best:
            self.best = fid
            frozen = tuple(self.model.frozen_part_names())
            self.best_state = {
                k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith(frozen)
            }
            self._save_best(model)
        fault_point("eval")
        return {k: v for k, v in point.items() if k.startswith("gfid")} | {"gfid_proxy_best": self.best}

    def _save_best(self, model: TokenizerBase) -> None:
        """Write `<run.dir>/tokenizer-best/` (rank 0) from the best decoder tensors + the frozen parts."""
        from robustok.distributed import rank_world

        if self.best_state is None or rank_world()[0] != 0:
            return
        state = {**{k: v.detach().cpu() for k, v in model.state_dict().items()}, **self.best_state}
        model.save_pretrained(Path(self.cfg.run.dir) / "tokenizer-best", state=state)

    # --- resume: best score, proxy curve and best decoder are part of the checkpoint --------------------
    def checkpoint_state(self) -> dict:
        return {"best": self.best, "curve": [dict(c) for c in self.curve], "best_state": self.best_state}

    def load_checkpoint_state(self, state: dict) -> None:
        self.best = state.get("best")
        self.curve = [dict(c) for c in state.get("curve", [])]
        self.best_state = state.get("best_state")

    def export(self, directory: Path, model: TokenizerBase) -> None:
        """Rewrite `tokenizer-best/` from the checkpointed best (a resumed run's matches an uninterrupted one)."""
        self._save_best(model)


def post_train(cfg: PostTrainConfig, resume: bool = False, with_control: bool = False, log=print) -> dict:
    """Post-train (and, with `with_control`, run the sigma = 1 control in `<run.dir>/control`); return a summary.

    The summary holds the gFID proxy of the untouched decoder, after post-training (final and best), and of
    the control, all on the same held-out generated tokens, with the features used.
    """
    import copy

    from robustok.config import to_dict
    from robustok.hub import atomic_write_bytes
    from robustok.train.lock import run_lock
    from robustok.train.loop import train

    with run_lock(cfg.run.dir, enabled=int(os.environ.get("RANK", "0")) == 0):  # torchrun: rank 0 holds it
        task = PostTrainTask(cfg)
        before = task.proxy_fid(task.model)
        log(f"gFID-proxy ({cfg.eval_features}) with the untouched decoder: {before:.3f}")
        out = train(task, cfg.run, cfg.train, cfg.data, full_config=cfg, resume=resume, log=log)
        summary = {
            "features": cfg.eval_features,
            "sigma": task.store.sigma,
            "steps": cfg.train.steps,
            "epochs": task.epoch_at(cfg.train.steps),
            "pair_input": task.store.pair_input,
            "ema": cfg.train.ema_decay > 0 and cfg.eval_ema,
            "disc_diffaug": task.disc.augment.extra_repr() if task.disc is not None else None,
            "gfid_proxy_before": before,
            "gfid_proxy_after": task.curve[-1]["gfid_proxy"] if task.curve else None,
            "gfid_proxy_after_raw": task.curve[-1].get("gfid_proxy_raw") if task.curve else None,
            "gfid_proxy_best": task.best,
            "curve": task.curve,
            "tokenizer": str(out),
            "reused_discriminator": getattr(task, "reused_discriminator", None),
            "num_eval_samples": task.store.num_eval,
        }
        if with_control and not cfg.control:
            ccfg = copy.deepcopy(cfg)
            ccfg.control = True
            ccfg.run.dir = str(Path(cfg.run.dir) / "control")
            ctask = PostTrainTask(ccfg, reference_stats=task._reference)
            train(ctask, ccfg.run, ccfg.train, ccfg.data, full_config=ccfg, resume=resume, log=log)
            summary.update(
                gfid_proxy_control=ctask.curve[-1]["gfid_proxy"] if ctask.curve else None,
                gfid_proxy_control_raw=ctask.curve[-1].get("gfid_proxy_raw") if ctask.curve else None,
                gfid_proxy_control_best=ctask.best,
                control_curve=ctask.curve,
                control_tokenizer=str(Path(ccfg.run.dir) / "tokenizer"),
            )
        summary["config"] = to_dict(cfg)
        atomic_write_bytes(Path(cfg.run.dir) / "posttrain.json", json.dumps(summary, indent=2).encode())
    return summary
