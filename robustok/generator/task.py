"""`train-generator`: the config schema and the training task (AR or diffusion) for `robustok.train.loop.train`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

import torch
from torch import Tensor, nn

from robustok.config import RunConfig, TrainConfig
from robustok.errors import ConfigError, DataError
from robustok.generator.ar import order_ratio  # noqa: F401  (re-exported: the objective's schedule)
from robustok.generator.base import TokenGenerator, generator_class
from robustok.generator.sampling import SamplingOptions
from robustok.tokens.kinds import check_fingerprint, token_kind
from robustok.tokens.store import TokenDataset, TokenShards, open_token_store
from robustok.train.task import Task


@dataclass
class GeneratorDataConfig:
    tokens: str = ""                   # token store from `robustok pretokenize` (required)
    tokenizer: Optional[str] = None    # tokenizer dir: checks the store's fingerprint, decodes preview grids
    batch_size: int = 64               # global batch, split over ranks
    num_workers: int = 0

    BOUNDS: ClassVar[dict] = {"batch_size": ">=1", "num_workers": ">=0"}


@dataclass
class GeneratorModelConfig:
    kind: str = "ar"                   # a registered generator kind: ar (discrete ids) | diffusion (latents) | ...
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

    PRESETS: ClassVar[str] = "generator"   # `robustok train-generator fmnist-ar`: robustok/configs/generator/


def build_generator(mc: GeneratorModelConfig, store: TokenDataset | TokenShards) -> TokenGenerator:
    """A fresh generator of kind `mc.kind` whose vocabulary, grid, classes (and latent statistics) come from the
    token store."""
    cls = generator_class(mc.kind)
    if store.kind != cls.token_kind:
        hint = " (pretokenize with a continuous tokenizer)" if cls.token_kind == "latents" else ""
        raise DataError(f"{store.dir}: holds {token_kind(store.kind).description}; model.kind={mc.kind} needs "
                        f"{token_kind(cls.token_kind).description}{hint}")
    return cls.build(mc, store)


def init_generator(directory: str, store: TokenDataset | TokenShards) -> TokenGenerator:
    """A saved generator (its own architecture) to continue training on `store`; refuses incompatible stores."""
    from robustok.generator import load_generator

    model = load_generator(directory)
    problems = model.fit_problems(store)
    if problems:
        raise DataError(f"model.init: {directory} does not fit data.tokens {store.dir}: {'; '.join(problems)}")
    return model


class GeneratorTask(Task):
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
        generator_class(cfg.model.kind)                                     # a registered kind
        self.tokenizer = None
        fingerprint = None
        if cfg.data.tokenizer:
            from robustok.tokenizer.loading import load_tokenizer
            self.tokenizer = load_tokenizer(cfg.data.tokenizer).eval().requires_grad_(False)
            fingerprint = self.tokenizer.fingerprint()
        self.dataset = dataset if dataset is not None else open_token_store(cfg.data.tokens, fingerprint)
        check_fingerprint(self.dataset.fingerprint, fingerprint or "", "data.tokens (vs data.tokenizer)")
        torch.manual_seed(cfg.run.seed)
        if cfg.model.init:
            self.model = init_generator(cfg.model.init, self.dataset)
        else:
            self.model = build_generator(cfg.model, self.dataset)
        self.model.check_objective(o)
        self.preview_nrow = max(1, min(10, self.dataset.num_classes or 8))

    def step(self, model: nn.Module, batch, step: int, inner: TokenGenerator) -> dict[str, Tensor]:
        """The loss on one batch: `model` runs the forward pass (maybe DDP / compiled), `inner` is the unwrapped
        generator."""
        return inner.training_loss(model, batch[0], batch[1], step, self.cfg.train.steps, self.cfg.objective)

    def sampling_options(self) -> SamplingOptions:
        """The `sample` section as sampling options (for the preview grids)."""
        s = self.cfg.sample
        return SamplingOptions(cfg=s.cfg, cfg_schedule=s.cfg_schedule, cfg_power=s.cfg_power,
                               temperature=s.temperature, top_k=s.top_k or None,
                               top_p=s.top_p if s.top_p < 1 else None, steps=s.steps, sampler=s.sampler)

    @torch.no_grad()
    def preview(self, model: TokenGenerator, batch) -> Optional[Tensor]:
        """A class-per-column grid of samples, decoded with `data.tokenizer` (None without one)."""
        if self.tokenizer is None:
            return None
        dev = next(model.parameters()).device
        self.tokenizer.to(dev)
        n = self.preview_nrow
        labels = torch.arange(2 * n, device=dev) % max(1, self.dataset.num_classes or 1)
        if not self.dataset.num_classes:
            labels = torch.full_like(labels, model.null_class)
        was = model.training
        model.eval()
        g = torch.Generator(device=dev).manual_seed(self.cfg.run.seed)
        images = model.decode(self.tokenizer, model.sample_codes(labels, self.sampling_options(), generator=g))
        model.train(was)
        return images
