"""`train-generator`: the config schema and the training task (any generator kind) for `robustok.train.loop.train`.

The `model:`, `objective:` and `sample:` sections are the generator kind's own option classes
(`TokenGenerator.options_class` / `objective_class` / `sampling_class`); `load_generator_config` picks them by
`model.kind`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import Tensor, nn

from robustok.config import RunConfig, TrainConfig, load_config
from robustok.errors import ConfigError, DataError
from robustok.generator.ar import ARObjective, order_ratio  # noqa: F401  (re-exported: the objective's schedule)
from robustok.generator.base import TokenGenerator, generator_class
from robustok.generator.options import GeneratorModelConfig, ObjectiveConfig, SamplingOptions
from robustok.presets import resolve_config
from robustok.tokens.kinds import check_fingerprint, token_kind
from robustok.tokens.store import TokenDataset, TokenShards, open_token_store
from robustok.train.task import Task


@dataclass
class GeneratorDataConfig:
    tokens: str = ""  # token store from `robustok pretokenize` (required)
    tokenizer: Optional[str] = None  # tokenizer dir: checks the store's fingerprint, decodes preview grids
    batch_size: int = 64  # global batch, split over ranks
    num_workers: int = 0

    BOUNDS: ClassVar[dict] = {"batch_size": ">=1", "num_workers": ">=0"}


@dataclass
class GeneratorTrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: GeneratorDataConfig = field(default_factory=GeneratorDataConfig)
    model: GeneratorModelConfig = field(default_factory=GeneratorModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    sample: SamplingOptions = field(default_factory=lambda: SamplingOptions(cfg=PREVIEW_CFG))
    train: TrainConfig = field(default_factory=TrainConfig)

    PRESETS: ClassVar[str] = "generator"  # `robustok train-generator fmnist-ar`: robustok/configs/generator/


PREVIEW_CFG = 2.0  # the default guidance scale of the preview grids (`sample:`)


def generator_config_defaults(kind: str) -> GeneratorTrainConfig:
    """The defaults of a `train-generator` config for generator kind `kind`: its `model:`, `objective:` and
    `sample:` sections are the kind's own option classes (so their keys are checked against the kind)."""
    cls = generator_class(kind)
    return GeneratorTrainConfig(
        model=cls.options_class(kind=kind), objective=cls.objective_class(), sample=cls.sampling_class(cfg=PREVIEW_CFG)
    )


def load_generator_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> GeneratorTrainConfig:
    """`load_config` of a `train-generator` YAML + `key=value` overrides, checked against the options of the
    generator kind it names (`model.kind`, default ar). `path` may name a shipped preset (`fmnist-diffusion`)."""
    if path is not None:
        path = resolve_config(path, GeneratorTrainConfig.PRESETS)
    return load_config(
        GeneratorTrainConfig, path, overrides, defaults=generator_config_defaults(_kind(path, overrides))
    )


def _kind(path: str | Path | None, overrides: Sequence[str]) -> str:
    """`model.kind` of a YAML file + overrides (the default when unreadable: `load_config` then says why)."""
    kind = None
    try:
        raw: Any = OmegaConf.load(path) if path is not None and Path(path).is_file() else OmegaConf.create()
        raw = OmegaConf.merge(raw, OmegaConf.from_dotlist([o for o in overrides if "=" in o]))
        kind = OmegaConf.select(raw, "model.kind", default=None)
    except (OmegaConfBaseException, OSError, ValueError, yaml.YAMLError):
        pass
    return kind if isinstance(kind, str) and kind else GeneratorModelConfig.kind


def build_generator(mc: GeneratorModelConfig, store: TokenDataset | TokenShards) -> TokenGenerator:
    """A fresh generator of kind `mc.kind` (`mc`: its `options_class`, or the shared fields) whose vocabulary,
    grid, classes (and latent statistics) come from the token store."""
    cls = generator_class(mc.kind)
    if store.kind != cls.token_kind:
        hint = " (pretokenize with a continuous tokenizer)" if cls.token_kind == "latents" else ""
        raise DataError(
            f"{store.dir}: holds {token_kind(store.kind).description}; model.kind={mc.kind} needs "
            f"{token_kind(cls.token_kind).description}{hint}"
        )
    return cls.build(mc, store)


def init_generator(directory: str, store: TokenDataset | TokenShards) -> TokenGenerator:
    """A saved generator (its own architecture) to continue training on `store`; refuses incompatible stores."""
    from robustok.generator import load_generator

    model = load_generator(directory)
    problems = model.fit_problems(store)
    if problems:
        raise DataError(f"model.init: {directory} does not fit data.tokens {store.dir}: {'; '.join(problems)}")
    return model


class GeneratorTask(Task[TokenGenerator]):
    """The training step of a generator on a token store (see `robustok.train.loop` for the task protocol)."""

    kind = "generator"

    def __init__(self, cfg: GeneratorTrainConfig, dataset: Optional[TokenDataset | TokenShards] = None):
        self.cfg = cfg
        if not cfg.data.tokens and dataset is None:
            raise ConfigError("data.tokens: a token store directory is required (from `robustok pretokenize`)")
        o = cfg.objective
        if not 0 <= o.label_dropout < 1:
            raise ConfigError(f"objective.label_dropout must be in [0, 1), got {o.label_dropout}")
        kind = generator_class(cfg.model.kind)  # a registered kind
        kind.model_options(cfg.model), kind.objective(o), kind.sampling(cfg.sample)  # its options only
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
        self.objective = self.model.objective(o)
        self.model.check_objective(self.objective)
        self.preview_options = self.model.sampling(cfg.sample)
        self.preview_nrow = max(1, min(10, self.dataset.num_classes or 8))

    def step(self, model: nn.Module, batch, step: int, inner: TokenGenerator) -> dict[str, Tensor]:
        """The loss on one batch: `model` runs the forward pass (maybe DDP / compiled), `inner` is the unwrapped
        generator."""
        return inner.training_loss(model, batch[0], batch[1], step, self.cfg.train.steps, self.objective)

    @torch.no_grad()
    def preview(self, model: TokenGenerator, batch) -> Optional[Tensor]:
        """A class-per-column grid of samples, decoded with `data.tokenizer` (None without one)."""
        if self.tokenizer is None:
            return None
        dev = next(model.parameters()).device
        self.tokenizer.to(dev)
        n = self.preview_nrow or 8
        labels = torch.arange(2 * n, device=dev) % max(1, self.dataset.num_classes or 1)
        if not self.dataset.num_classes:
            labels = torch.full_like(labels, model.null_class)
        was = model.training
        model.eval()
        g = torch.Generator(device=dev).manual_seed(self.cfg.run.seed)
        images = model.decode(self.tokenizer, model.sample_codes(labels, self.preview_options, generator=g))
        model.train(was)
        return images
