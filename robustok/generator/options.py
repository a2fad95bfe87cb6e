"""The options every generator kind shares, and how a kind's own options are made from them.

Each registered generator kind owns three dataclasses (`robustok.generator.base.TokenGenerator`):
`options_class` (the `model:` section of `train-generator`, subclassing `GeneratorModelConfig`),
`objective_class` (the `objective:` section, subclassing `ObjectiveConfig`) and `sampling_class` (how to sample,
subclassing `SamplingOptions`; also the `sample:` preview section and the flags of `sample` / `post-train-data`).
The bases hold only what every kind has. A sampling field's `metadata` may carry `help` and `choices` for its
command-line flag; its class's `BOUNDS` give the flag's range.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, TypeVar

from robustok.errors import ConfigError
from robustok.generator.guidance import check_guidance

OptionsT = TypeVar("OptionsT")
S = TypeVar("S", bound="SamplingOptions")


@dataclass
class GeneratorModelConfig:
    """The `model:` fields of every kind: which kind, a named size and overrides of it, and an initialisation."""

    kind: str = "ar"  # a registered generator kind: ar (discrete ids) | diffusion (latents) | ...
    preset: str = "tiny"  # a size of the kind (e.g. ar: tiny|small|rar-b|rar-l|rar-xl)
    dim: int = 0  # 0: from the preset
    depth: int = 0
    heads: int = 0
    mlp_ratio: float = 0.0
    init: Optional[str] = None  # start from this generator directory (same architecture)

    BOUNDS: ClassVar[dict] = {"dim": ">=0", "depth": ">=0", "heads": ">=0", "mlp_ratio": ">=0"}


@dataclass
class ObjectiveConfig:
    """The `objective:` fields of every kind."""

    label_dropout: float = 0.1  # probability of the null class (enables classifier-free guidance)

    BOUNDS: ClassVar[dict] = {"label_dropout": "[0,1)"}


@dataclass
class SamplingOptions:
    """How to sample, the fields of every kind (a kind's `sampling_class` adds its own)."""

    cfg: float = field(default=1.0, metadata={"help": "classifier-free guidance scale (1 = off)"})
    precision: str = field(
        default="fp32",
        metadata={
            "help": "fp32, bf16 autocast, or auto: bf16 on CUDA (and on CPUs with bf16 matrix instructions once "
            "measured; robustok.train.precision); bf16 where unavailable -> fp32",
            "choices": ("fp32", "bf16", "auto"),
        },
    )

    BOUNDS: ClassVar[dict] = {"cfg": ">=0"}

    def check(self) -> None:
        """Raise `ConfigError` for values no generator can sample with (before any work starts)."""
        check_guidance(self.cfg)


@dataclass
class DrawOptions(SamplingOptions):
    """Sampling of token ids from guided logits (`robustok.generator.guidance.DrawRule`): the AR and masked kinds.
    `top_k` 0 and `top_p` 1 mean off (stored as None)."""

    cfg_schedule: str = field(
        default="constant",
        metadata={
            "help": "how the guidance scale grows over the decoding steps (power = RAR's guidance_scale_pow)",
            "choices": ("constant", "linear", "power"),
        },
    )
    cfg_power: float = field(default=1.0, metadata={"help": "exponent of the power schedule"})
    temperature: float = field(default=1.0, metadata={"help": "softmax temperature (0 = greedy)"})
    top_k: Optional[int] = field(default=None, metadata={"help": "keep the k most likely tokens (0 = all)"})
    top_p: Optional[float] = field(default=None, metadata={"help": "nucleus mass (1 = off)"})

    BOUNDS: ClassVar[dict] = {"cfg": ">=0", "cfg_power": ">=0", "temperature": ">=0", "top_k": ">=0", "top_p": "(0,1]"}

    def check(self) -> None:
        check_guidance(self.cfg, self.cfg_schedule, self.cfg_power)
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")

    def __post_init__(self) -> None:
        if self.top_k == 0:
            self.top_k = None
        if self.top_p is not None and self.top_p >= 1:
            self.top_p = None


def convert(options: Any, target: type[OptionsT], section: str, kind: str) -> OptionsT:
    """`options` as an instance of `target` (a kind's options class): the fields both classes have are copied,
    the rest take `target`'s defaults. A field `target` lacks must be at its default, else `ConfigError` naming
    `section.field` and the kind (`options` of another kind's class, e.g. AR's `pos` given to a masked model)."""
    if isinstance(options, target):
        return options
    have = {f.name for f in dataclasses.fields(target)}  # type: ignore[arg-type]
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    defaults = type(options)()
    for name, value in values.items():
        if name not in have and value != getattr(defaults, name):
            raise ConfigError(
                f"{section}.{name} is not an option of generator kind {kind!r} (its options: {', '.join(sorted(have))})"
            )
    return target(**{k: v for k, v in values.items() if k in have})


def sampling_options(target: type[S], kind: str, options: Optional[SamplingOptions], values: dict[str, Any]) -> S:
    """`options` converted to `target` (a kind's `sampling_class`: the shared fields kept, the kind's own at their
    defaults; another kind's field set is a `ConfigError`), or `target(**values)` when `options` is None."""
    if options is None:
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(target)})
        if unknown:
            raise ConfigError(f"sampling option(s) {', '.join(unknown)} are not options of generator kind {kind!r}")
        return target(**values)
    return convert(options, target, "sampling", kind)
