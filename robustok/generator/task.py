"""`train-generator`: the config schema and the training task (AR or diffusion) for `robustok.train.loop.train`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

import torch
from torch import Tensor, nn

from robustok.config import RunConfig, TrainConfig
from robustok.errors import ConfigError, DataError
from robustok.generator.ar import ARConfig, ARGenerator, ar_loss
from robustok.generator.diffusion import DiffusionConfig, DiffusionGenerator, flow_loss, sample_times
from robustok.generator.presets import AR_PRESETS, DIFFUSION_PRESETS, resolve
from robustok.generator.store import TokenDataset, TokenShards, open_token_store


@dataclass
class GeneratorDataConfig:
    tokens: str = ""                   # token store from `robustok pretokenize` (required)
    tokenizer: Optional[str] = None    # tokenizer dir: checks the store's fingerprint, decodes preview grids
    batch_size: int = 64               # global batch, split over ranks
    num_workers: int = 0

    BOUNDS: ClassVar[dict] = {"batch_size": ">=1", "num_workers": ">=0"}


@dataclass
class GeneratorModelConfig:
    kind: str = "ar"                   # ar | masked (discrete ids) | diffusion (continuous latents)
    preset: str = "tiny"               # ar: tiny|small|rar-b|rar-l|rar-xl; diffusion: tiny|small|sit-b|sit-l|sit-xl
    dim: int = 0                       # 0: from the preset
    depth: int = 0
    heads: int = 0
    mlp_ratio: float = 0.0
    qk_norm: bool = True
    pos: str = "rope"                  # ar: rope | learned
    dropout: float = 0.0               # ar only (RAR uses 0.1)
    random_order: bool = False         # ar: RAR randomized-order training (see objective.order_anneal_*)
    adaln: bool = False                # ar: class-conditional adaLN-Zero in every block (RAR)
    patch_size: int = 1                # diffusion only
    init: Optional[str] = None         # start from this generator directory (same architecture)

    BOUNDS: ClassVar[dict] = {"dim": ">=0", "depth": ">=0", "heads": ">=0", "mlp_ratio": ">=0",
                              "dropout": "[0,1)", "patch_size": ">=1"}


@dataclass
class ObjectiveConfig:
    label_dropout: float = 0.1         # probability of the null class (enables classifier-free guidance)
    order_anneal_start: float = 0.5    # random-order probability 1 until this fraction of train.steps ...
    order_anneal_end: float = 0.75     # ... then linearly to 0 here (RAR: 125k and 187.5k of 250k steps)
    time_sampling: str = "uniform"     # diffusion: uniform | logit-normal

    BOUNDS: ClassVar[dict] = {"label_dropout": "[0,1)", "order_anneal_start": "[0,1]", "order_anneal_end": "[0,1]"}


@dataclass
class SampleConfig:
    """Sampling settings of the preview grids written during training."""
    cfg: float = 2.0
    cfg_schedule: str = "constant"     # constant | linear | power
    cfg_power: float = 1.0
    temperature: float = 1.0
    top_k: int = 0                     # 0: off
    top_p: float = 1.0                 # 1: off
    steps: int = 25                    # diffusion ODE steps
    sampler: str = "heun"              # diffusion: euler | heun

    BOUNDS: ClassVar[dict] = {"cfg": ">=0", "cfg_power": ">=0", "temperature": ">=0", "top_k": ">=0",
                              "top_p": "(0,1]", "steps": ">=1"}


@dataclass
class GeneratorTrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: GeneratorDataConfig = field(default_factory=GeneratorDataConfig)
    model: GeneratorModelConfig = field(default_factory=GeneratorModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def build_generator(mc: GeneratorModelConfig, store: TokenDataset | TokenShards) -> nn.Module:
    """A fresh generator whose vocabulary, grid, classes (and latent statistics) come from the token store."""
    if mc.kind == "ar":
        if store.kind != "ids":
            raise DataError(f"{store.dir}: holds continuous latents; model.kind=ar needs token ids")
        dim, depth, heads, ratio = resolve(AR_PRESETS, mc.preset)
        cfg = ARConfig(vocab_size=store.codebook_size, grid=list(store.grid), num_classes=store.num_classes,
                       dim=mc.dim or dim, depth=mc.depth or depth, heads=mc.heads or heads,
                       mlp_ratio=mc.mlp_ratio or ratio, qk_norm=mc.qk_norm, pos=mc.pos, dropout=mc.dropout,
                       random_order=mc.random_order, adaln=mc.adaln,
                       tokenizer_fingerprint=store.fingerprint, preset=mc.preset)
        return ARGenerator(cfg)
    if mc.kind == "diffusion":
        if store.kind != "latents":
            raise DataError(f"{store.dir}: holds token ids; model.kind=diffusion needs continuous latents "
                            "(pretokenize with a continuous tokenizer)")
        dim, depth, heads, ratio = resolve(DIFFUSION_PRESETS, mc.preset)
        mean, std = store.latent_stats
        cfg = DiffusionConfig(latent_channels=int(store.manifest["latent_channels"]), grid=list(store.grid),
                              patch_size=mc.patch_size, num_classes=store.num_classes, dim=mc.dim or dim,
                              depth=mc.depth or depth, heads=mc.heads or heads, mlp_ratio=mc.mlp_ratio or ratio,
                              qk_norm=mc.qk_norm, latent_mean=mean, latent_std=std,
                              tokenizer_fingerprint=store.fingerprint, preset=mc.preset)
        return DiffusionGenerator(cfg)
    if mc.kind == "masked":   # masked generator (issue 11 part 6); to be replaced by the generator registry
        from robustok.generator.masked import MaskedGenerator
        return MaskedGenerator.build(mc, store)
    raise ConfigError(f"model.kind must be 'ar', 'masked' or 'diffusion', got {mc.kind!r}")


def init_generator(directory: str, store: TokenDataset | TokenShards) -> nn.Module:
    """A saved generator (its own architecture) to continue training on `store`; refuses incompatible stores."""
    from robustok.generator import load_generator

    model = load_generator(directory)
    c = model.config
    problems = []
    if list(c.grid) != list(store.grid):
        problems.append(f"grid {list(c.grid)} vs the store's {store.grid}")
    if isinstance(model, ARGenerator) and (store.kind != "ids" or c.vocab_size != store.codebook_size):
        problems.append(f"vocabulary {c.vocab_size} vs the store's {store.codebook_size or store.kind}")
    if isinstance(model, DiffusionGenerator) and (store.kind != "latents" or
                                                  c.latent_channels != int(store.manifest["latent_channels"])):
        problems.append(f"{c.latent_channels} latent channels vs the store's {store.manifest.get('latent_channels')}")
    if hasattr(model, "fit_problems"):   # masked generator (issue 11 part 6)
        problems += model.fit_problems(store)
    if c.num_classes != store.num_classes:
        problems.append(f"{c.num_classes} classes vs the store's {store.num_classes}")
    if c.tokenizer_fingerprint and store.fingerprint and c.tokenizer_fingerprint != store.fingerprint:
        problems.append(f"tokenizer {c.tokenizer_fingerprint} vs the store's {store.fingerprint}")
    if problems:
        raise DataError(f"model.init: {directory} does not fit data.tokens {store.dir}: {'; '.join(problems)}")
    return model


def order_ratio(obj: ObjectiveConfig, step: int, total: int) -> float:
    """RAR's random-order probability: 1 until `order_anneal_start`, linear to 0 at `order_anneal_end`."""
    frac = step / max(1, total)
    if frac <= obj.order_anneal_start:
        return 1.0
    if frac >= obj.order_anneal_end:
        return 0.0
    return 1.0 - (frac - obj.order_anneal_start) / max(1e-12, obj.order_anneal_end - obj.order_anneal_start)


class GeneratorTask:
    """The training step of a generator on a token store (see `robustok.train.loop` for the task protocol)."""

    kind = "generator"

    def __init__(self, cfg: GeneratorTrainConfig, dataset: Optional[TokenDataset | TokenShards] = None):
        self.cfg = cfg
        if not cfg.data.tokens and dataset is None:
            raise ConfigError("data.tokens: a token store directory is required (from `robustok pretokenize`)")
        o = cfg.objective
        if not 0 <= o.label_dropout < 1:
            raise ConfigError(f"objective.label_dropout must be in [0, 1), got {o.label_dropout}")
        if not 0 <= o.order_anneal_start <= o.order_anneal_end <= 1:
            raise ConfigError("objective.order_anneal_start/end are fractions of train.steps with start <= end")
        self.tokenizer = None
        fingerprint = None
        if cfg.data.tokenizer:
            from robustok.adapters import load_tokenizer
            self.tokenizer = load_tokenizer(cfg.data.tokenizer).eval().requires_grad_(False)
            fingerprint = self.tokenizer.fingerprint()
        self.dataset = dataset if dataset is not None else open_token_store(cfg.data.tokens, fingerprint)
        if fingerprint and self.dataset.fingerprint and self.dataset.fingerprint != fingerprint:
            raise DataError(f"data.tokens: the store was made by tokenizer {self.dataset.fingerprint}, "
                            f"data.tokenizer is {fingerprint}")
        torch.manual_seed(cfg.run.seed)
        if cfg.model.init:
            self.model = init_generator(cfg.model.init, self.dataset)
        else:
            self.model = build_generator(cfg.model, self.dataset)
        self.is_ar = isinstance(self.model, ARGenerator)
        self.protocol = hasattr(self.model, "training_loss")   # masked generator (issue 11 part 6)
        if not self.is_ar and not self.protocol:
            sample_times(1, o.time_sampling, torch.device("cpu"))      # validates objective.time_sampling
        self.preview_nrow = max(1, min(10, self.dataset.num_classes or 8))

    def step(self, model: nn.Module, batch, step: int) -> dict[str, Tensor]:
        x, y = batch[0], batch[1]
        o = self.cfg.objective
        inner = model.module if hasattr(model, "module") else model      # DDP
        inner = getattr(inner, "_orig_mod", inner)                        # torch.compile
        if self.protocol:   # masked generator (issue 11 part 6)
            return inner.training_loss(model, x, y, step, self.cfg.train.steps, o)
        if self.is_ar:
            ratio = order_ratio(o, step, self.cfg.train.steps) if self.cfg.model.random_order else 0.0
            loss = ar_loss(model, inner, x, y, o.label_dropout, ratio)
            return {"loss": loss, "order_ratio": torch.tensor(ratio)}
        return {"loss": flow_loss(model, inner, x, y, o.label_dropout, o.time_sampling)}

    @torch.no_grad()
    def preview(self, model: nn.Module, batch) -> Optional[Tensor]:
        """A class-per-column grid of samples, decoded with `data.tokenizer` (None without one)."""
        if self.tokenizer is None:
            return None
        s = self.cfg.sample
        dev = next(model.parameters()).device
        self.tokenizer.to(dev)
        n = self.preview_nrow
        labels = torch.arange(2 * n, device=dev) % max(1, self.dataset.num_classes or 1)
        if not self.dataset.num_classes:
            labels = torch.full_like(labels, model.null_class)
        was = model.training
        model.eval()
        g = torch.Generator(device=dev).manual_seed(self.cfg.run.seed)
        if self.protocol:   # masked generator (issue 11 part 6)
            from robustok.generator.sampling import SamplingOptions
            opts = SamplingOptions(cfg=s.cfg, cfg_schedule=s.cfg_schedule, cfg_power=s.cfg_power,
                                   temperature=s.temperature, top_k=s.top_k or None,
                                   top_p=s.top_p if s.top_p < 1 else None)
            images = model.decode(self.tokenizer, model.sample_codes(labels, opts, g))
        elif self.is_ar:
            ids = model.sample(labels, cfg=s.cfg, temperature=s.temperature, top_k=s.top_k or None,
                               top_p=s.top_p if s.top_p < 1 else None, generator=g, cfg_schedule=s.cfg_schedule,
                               cfg_power=s.cfg_power)
            images = self.tokenizer.decode(ids)
        else:
            z = model.sample(labels, cfg=s.cfg, steps=s.steps, sampler=s.sampler, generator=g)
            images = self.tokenizer.decode_latents(z).clamp(-1, 1)
        model.train(was)
        return images.float()
