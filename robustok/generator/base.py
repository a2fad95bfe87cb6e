"""What every generator implements (`TokenGenerator`), and the registry of generator kinds (`model.kind`).

A new generator is one module: subclass `TokenGenerator`, decorate it with `@register_generator("name")`, and
every command (train-generator, sample, post-train-data, diagnose), the demo and post-training can use it.
Commands find a saved generator's class by the name in its `config.json` among the registered classes.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import Tensor, nn

from robustok.errors import CheckpointError, ConfigError, DataError
from robustok.generator.guidance import condition_labels
from robustok.generator.options import GeneratorModelConfig, ObjectiveConfig, SamplingOptions, convert, sampling_options
from robustok.hub import Pretrained
from robustok.registry import Registry
from robustok.tokens.kinds import TOKEN_KINDS, TokenKind, check_fingerprint, kind_of_tokenizer, token_kind


@dataclass
class GeneratorConfig:
    """The fields every built-in generator shares: the token grid, the classes, the transformer's size, and the
    tokenizer it belongs to. A generator's own config subclasses this (or `IdGeneratorConfig`) and adds its fields."""

    grid: list[int] = field(default_factory=lambda: [8, 8])  # token / latent grid (h, w); L = h*w
    num_classes: int = 10  # 0: unconditional (only the null class)
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    qk_norm: bool = True
    tokenizer_fingerprint: str = ""  # the tokenizer whose tokens this model was trained on
    preset: str = ""


@dataclass
class IdGeneratorConfig(GeneratorConfig):
    """`GeneratorConfig` of a generator of discrete token ids: the vocabulary and dropout."""

    vocab_size: int = 4096  # K, codebook size of the tokenizer
    dropout: float = 0.0


GENERATORS: Registry[type["TokenGenerator"]] = Registry("generator kind", "model.kind")
BUILTIN_MODULES = (
    "robustok.generator.ar",
    "robustok.generator.diffusion",
    "robustok.generator.masked",
    "robustok.generator.llamagen_gpt",
    "robustok.generator.rar",
)


class TokenGenerator(Pretrained, metaclass=abc.ABCMeta):
    """A class-conditional generative model of one tokenizer's tokens (class `num_classes` = null, for CFG).

    Subclasses set `config_class` (a dataclass with `grid`, `num_classes`, `tokenizer_fingerprint`) and
    `token_kind`, and implement `build`, `training_loss`, `sample_codes` and `paired`; `fit_problems` and
    `check_tokenizer` are extended (call `super()`) with what only they know (vocabulary, latent channels).
    Their own options are dataclasses that subclass the shared ones (`robustok.generator.options`):
    `options_class` (the `model:` section), `objective_class` (`objective:`) and `sampling_class` (`sample:`,
    and the flags of `sample` / `post-train-data`). For type checking, a kind declares them with its classes
    (`options_class: ClassVar[type[MyOptions]] = MyOptions`) and overrides `model_options` / `objective` /
    `sampling` with the same body and its class as the return type.
    """

    kind: ClassVar[str] = ""  # registry name (`model.kind`), set by `register_generator`
    token_kind: ClassVar[str] = ""  # the tokens it models: "ids" | "latents" (`robustok.tokens.kinds`)
    options_class: ClassVar[type[GeneratorModelConfig]] = GeneratorModelConfig
    objective_class: ClassVar[type[ObjectiveConfig]] = ObjectiveConfig
    sampling_class: ClassVar[type[SamplingOptions]] = SamplingOptions
    null_class: int

    # ---- options -------------------------------------------------------------------------------------------
    @classmethod
    def model_options(cls, options: GeneratorModelConfig) -> GeneratorModelConfig:
        """`options` (a `model:` section) as this kind's `options_class` (`ConfigError` for another kind's field)."""
        return convert(options, cls.options_class, "model", cls.kind)

    @classmethod
    def objective(cls, options: ObjectiveConfig) -> ObjectiveConfig:
        """`options` (an `objective:` section) as this kind's `objective_class`."""
        return convert(options, cls.objective_class, "objective", cls.kind)

    @classmethod
    def sampling(cls, options: Optional[SamplingOptions] = None, **values: Any) -> SamplingOptions:
        """This kind's sampling options: `options` converted to `sampling_class` (the shared fields kept, the
        kind's own at their defaults; another kind's field set is a `ConfigError`), or `sampling_class(**values)`."""
        return sampling_options(cls.sampling_class, cls.kind, options, values)

    # ---- building ------------------------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def build(cls, model_cfg: Any, store: Any) -> "TokenGenerator":
        """A fresh model from `model_cfg` (an `options_class`: preset, overrides, the kind's fields) whose
        vocabulary / latent channels, grid, classes and tokenizer fingerprint come from the token `store` (already
        of `token_kind`)."""

    def fit_problems(self, store: Any) -> list[str]:
        """Why this (saved) model cannot continue training on `store`: an empty list if it can."""
        c, problems = self.config, []
        if store.kind != self.token_kind:
            problems.append(
                f"{type(self).__name__} models {self.tokens.description}, the store holds "
                f"{token_kind(store.kind).description}"
            )
        if list(c.grid) != list(store.grid):
            problems.append(f"grid {list(c.grid)} vs the store's {store.grid}")
        if c.num_classes != store.num_classes:
            problems.append(f"{c.num_classes} classes vs the store's {store.num_classes}")
        if c.tokenizer_fingerprint and store.fingerprint and c.tokenizer_fingerprint != store.fingerprint:
            problems.append(f"tokenizer {c.tokenizer_fingerprint} vs the store's {store.fingerprint}")
        return problems

    def check_objective(self, objective: Any) -> None:
        """Refuse `objective` (an `objective_class`) settings this generator cannot train with (default: none)."""

    # ---- training ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def training_loss(
        self, model: nn.Module, tokens: Tensor, labels: Tensor, step: int, total_steps: int, objective: Any
    ) -> dict[str, Tensor]:
        """The loss on a batch of tokens (`"loss"`, plus scalars to log). `model` is the module to run the forward
        pass through (this model, or its DDP / compiled wrapper); `self` is the unwrapped model."""

    # ---- sampling ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def sample_codes(self, labels: Tensor, opts: Any, generator: Optional[torch.Generator] = None) -> Tensor:
        """Tokens ((B, h, w) ids | (B, C, h, w) raw latents) for class ids `labels` (B,); `opts`: a
        `SamplingOptions` (convert it with `self.sampling(opts)`)."""

    @abc.abstractmethod
    def paired(
        self, real: Tensor, labels: Tensor, sigma: float, opts: Any, rng: torch.Generator, mask_rng: torch.Generator
    ) -> Tensor:
        """Post-training pairs: generated tokens that keep the real tokens `real` with preservation ratio `sigma`
        (1: `real` itself). Random draws that choose what to keep use `mask_rng`, sampling uses `rng`."""

    def token_cross_entropy(self, tokens: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy (nats per token) of real `tokens` for class ids `labels` (-1: the null class); only
        generators of token ids have one (`IdGenerator`)."""
        raise ConfigError(
            f"{type(self).__name__} models {self.tokens.description}: a cross-entropy over a "
            "vocabulary needs a generator of token ids"
        )

    def check_labels(self, labels: Tensor) -> None:
        """Raise `DataError` for class ids outside [0, num_classes] (num_classes = the null class)."""
        if labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi > self.null_class:
                raise DataError(
                    f"class ids must be in [0, {self.config.num_classes}) (or {self.null_class} = "
                    f"null), got [{lo}, {hi}]"
                )

    def prepare_labels(self, labels: Tensor, label_dropout: float = 0.0) -> Tensor:
        """Unlabeled (-1) -> null class; each label replaced by the null class with probability `label_dropout`."""
        return condition_labels(labels, self.null_class, label_dropout)

    @property
    def tokens(self) -> TokenKind:
        return token_kind(self.token_kind)

    def decode(self, tokenizer: Any, codes: Tensor) -> Tensor:
        """Images float [-1, 1] (B, C, H, W) of tokens from `sample_codes`, decoded by `tokenizer`."""
        return self.tokens.decode(tokenizer, codes).float()

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Refuse a tokenizer other than the one whose tokens this model was trained on (`CheckpointError`)."""
        check_fingerprint(
            self.config.tokenizer_fingerprint,
            tokenizer.fingerprint(),
            "the generator (its config.json tokenizer_fingerprint) vs --tokenizer",
            CheckpointError,
        )
        kind = kind_of_tokenizer(tokenizer)
        if kind != self.token_kind:
            raise CheckpointError(
                f"{type(self).__name__} models {self.tokens.description}; this tokenizer gives "
                f"{token_kind(kind).description}"
            )

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class IdGenerator(TokenGenerator):
    """Base of generators of discrete token ids (AR, masked): `config` has `vocab_size` and `grid`, the model has
    `seq_len`; this adds the vocabulary checks and the validation of teacher-forcing inputs."""

    token_kind: ClassVar[str] = "ids"
    cross_entropy_kind: ClassVar[str] = "next-token"  # what `token_cross_entropy` scores (its training loss)
    seq_len: int

    @abc.abstractmethod
    def _sample_with(self, labels: Tensor, o: Any, generator: Optional[torch.Generator], **forcing: Any) -> Tensor:
        """`self.sample` with this kind's sampling options `o` (free sampling, or with the kept real tokens passed
        through `forcing` as `keep_mask` and `prefix_tokens`); (B, h, w) ids."""

    def sample_codes(self, labels: Tensor, opts: Any, generator: Optional[torch.Generator] = None) -> Tensor:
        """Token ids (B, h, w) with the sampling options `opts` (this kind's `sampling_class`)."""
        return self._sample_with(labels, self.sampling(opts), generator)

    @torch.no_grad()
    def paired(
        self,
        real: Tensor,
        labels: Tensor,
        sigma: float,
        opts: Any,
        rng: Optional[torch.Generator] = None,
        mask_rng: Optional[torch.Generator] = None,
    ) -> Tensor:
        """Teacher forcing: each real token kept with probability `sigma` (i.i.d. per position, drawn from
        `mask_rng`, else `rng`), the others sampled with the kept ones fed back (AR: in raster order; masked: by
        masked decoding); (B, h, w)."""
        real = real.to(next(self.parameters()).device).long()
        keep = self.keep_draw(real, sigma, mask_rng if mask_rng is not None else rng)
        return self._sample_with(labels, self.sampling(opts), rng, keep_mask=keep, prefix_tokens=real).view_as(real)

    @torch.no_grad()
    def token_cross_entropy(self, tokens: Tensor, labels: Tensor) -> Tensor:
        """The training loss on real `tokens` (B, h, w) without label dropout, at the end of the training schedule
        (AR: raster next-token cross-entropy; masked: masked-token cross-entropy under a random training mask).
        Call it in eval mode; random draws (masks) use torch's global generator."""
        from robustok.generator.task import ObjectiveConfig

        labels = self.prepare_labels(labels)
        self.check_inputs(tokens, labels)
        return self.training_loss(self, tokens, labels, 1, 1, ObjectiveConfig(label_dropout=0.0))["loss"].float()

    def fit_problems(self, store: Any) -> list[str]:
        problems = super().fit_problems(store)
        if store.kind == "ids" and self.config.vocab_size != store.codebook_size:
            problems.append(f"vocabulary {self.config.vocab_size} vs the store's {store.codebook_size}")
        return problems

    def check_tokenizer(self, tokenizer: Any) -> None:
        super().check_tokenizer(tokenizer)
        if int(tokenizer.codebook_size) != self.config.vocab_size:
            raise CheckpointError(
                f"tokenizer codebook size {tokenizer.codebook_size} != generator vocabulary {self.config.vocab_size}"
            )

    def check_inputs(self, tokens: Optional[Tensor] = None, labels: Optional[Tensor] = None) -> None:
        """Raise `DataError` for token ids outside [0, K), a wrong grid, or class ids outside [0, C] (C = null)."""
        c = self.config
        if tokens is not None:
            if tokens.dim() == 3 and list(tokens.shape[1:]) != list(c.grid):
                raise DataError(f"token grid {tuple(tokens.shape[1:])} does not match the generator's {tuple(c.grid)}")
            if tokens.flatten(1).shape[1] != self.seq_len:
                raise DataError(f"{tokens.flatten(1).shape[1]} tokens per image, the generator expects {self.seq_len}")
            if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= c.vocab_size):
                raise DataError(
                    f"token ids must be in [0, {c.vocab_size}), got [{int(tokens.min())}, {int(tokens.max())}]"
                )
        if labels is not None:
            self.check_labels(labels)

    def kept_tokens(
        self, keep_mask: Optional[Tensor], prefix_tokens: Optional[Tensor], batch: int, device: torch.device
    ) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """Teacher-forcing inputs as (B, L) bool mask and (B, L) ids on `device`, checked; (None, None) without."""
        if keep_mask is None:
            return None, None
        if prefix_tokens is None:
            raise ConfigError("keep_mask needs prefix_tokens (the real tokens to keep)")
        prefix_tokens = prefix_tokens.to(device).long().flatten(1)
        keep_mask = keep_mask.to(device).bool().flatten(1)
        want = (batch, self.seq_len)
        if keep_mask.shape != want or prefix_tokens.shape != want:
            raise DataError(
                f"keep_mask and prefix_tokens must be {want}, got {tuple(keep_mask.shape)} "
                f"and {tuple(prefix_tokens.shape)}"
            )
        self.check_inputs(tokens=prefix_tokens)
        return keep_mask, prefix_tokens

    @staticmethod
    def keep_draw(real: Tensor, sigma: float, mask_rng: Optional[torch.Generator]) -> Tensor:
        """Which real tokens a post-training pair keeps: (B, L) bool, each with probability `sigma`."""
        if not 0.0 <= sigma <= 1.0:
            raise ConfigError(f"sigma must lie in [0, 1], got {sigma}")
        return torch.rand(real.flatten(1).shape, generator=mask_rng, device=real.device) < sigma

    @staticmethod
    def init_weights(m: nn.Module) -> None:
        """Truncated-normal (0.02) linear and embedding weights, zero biases (GPT / MaskGIT initialisation)."""
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)


def register_generator(name: str) -> Callable[[type[TokenGenerator]], type[TokenGenerator]]:
    """Class decorator: make a `TokenGenerator` subclass available as `model.kind: <name>` and to `load_generator`."""

    def add(cls: type[TokenGenerator]) -> type[TokenGenerator]:
        if not (isinstance(cls, type) and issubclass(cls, TokenGenerator)):
            raise TypeError(f"register_generator({name!r}): {cls!r} is not a TokenGenerator subclass")
        if cls.token_kind not in TOKEN_KINDS:
            raise TypeError(f"{cls.__name__}.token_kind must be one of {sorted(TOKEN_KINDS)}")
        for attr, option_class, base in (
            ("options_class", cls.options_class, GeneratorModelConfig),
            ("objective_class", cls.objective_class, ObjectiveConfig),
            ("sampling_class", cls.sampling_class, SamplingOptions),
        ):
            if not (dataclasses.is_dataclass(option_class) and issubclass(option_class, base)):
                raise TypeError(f"{cls.__name__}.{attr} must be a dataclass subclassing {base.__name__}")
        if name in GENERATORS:
            old = GENERATORS.lookup(name)
            if old.__qualname__ != cls.__qualname__:
                raise ConfigError(f"generator kind {name!r} is already registered to {old.__module__}.{old.__name__}")
            GENERATORS.unregister(name)  # the same class again (a plug-in file imported twice)
        cls.kind = name
        return GENERATORS.register(name, cls)

    return add


def _load_builtins() -> None:
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def generator_kinds() -> list[str]:
    """The registered generator kinds (the values `model.kind` accepts)."""
    _load_builtins()
    return sorted(GENERATORS.names())


def generator_class(kind: str, where: str = "model.kind") -> type[TokenGenerator]:
    """The generator class registered as `kind`; `ConfigError` naming `where` and the known kinds otherwise."""
    _load_builtins()
    if kind not in GENERATORS:
        raise ConfigError(f"{where}: unknown generator kind {kind!r}; registered kinds: {sorted(GENERATORS.names())}")
    return GENERATORS.lookup(kind)


def generator_classes_by_name() -> dict[str, type[TokenGenerator]]:
    """Registered classes by class name (the "class" field of a saved generator's config.json)."""
    _load_builtins()
    return {cls.__name__: cls for cls in (GENERATORS.lookup(name) for name in GENERATORS)}
