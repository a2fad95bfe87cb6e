"""Typed configuration: dataclass schemas + YAML files + `key=value` overrides (OmegaConf).

Every stage's schema is a dataclass built from the shared sections below. `load_config` merges
schema defaults <- YAML file <- dotlist overrides, and turns OmegaConf's errors into `ConfigError`s that name
the offending key (unknown keys and wrong types are errors, never silently ignored).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Protocol, Sequence, TypeVar, cast

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robustok.errors import ConfigError
from robustok.validation import check_bounds

T = TypeVar("T")


@dataclass
class RunConfig:
    dir: str = "runs/default"
    seed: int = 0
    log_every: int = 50  # steps between metrics.jsonl / TensorBoard rows
    sample_every: int = 500  # steps between sample grids (0: never)
    ckpt_every: int = 500  # steps between checkpoints (0: only the final one)
    keep_checkpoints: int = 2  # most recent checkpoints kept on disk
    progress: bool = True  # tqdm bar
    deterministic: bool = False  # bitwise-repeatable: one CPU thread, deterministic kernels (train/reproducible.py)

    BOUNDS: ClassVar[dict] = {"log_every": ">=1", "sample_every": ">=0", "ckpt_every": ">=0", "keep_checkpoints": ">=1"}


@dataclass
class DataConfig:
    train: str = "fashion-mnist:train"  # fashion-mnist:{train,test} | folder path | wds:<shard pattern>
    val: str = "fashion-mnist:test"  # held-out images: tokenizer training previews reconstruct them
    resolution: int = 32
    channels: int = 1  # 1 (gray) or 3 (RGB); images are converted explicitly
    batch_size: int = 64  # global batch, split over ranks
    num_workers: int = 0
    augment: bool = True  # random crop + h-flip on the training set
    root: Optional[str] = None  # where the embedded dataset's IDX files are (default: search)

    BOUNDS: ClassVar[dict] = {"resolution": ">=8", "batch_size": ">=1", "num_workers": ">=0"}
    DATA_SPECS: ClassVar[tuple] = ("train", "val")


class BatchOptions(Protocol):
    """What the training loop reads of a `data:` section (`DataConfig`, a generator's token data section)."""

    batch_size: int  # global batch, split over ranks
    num_workers: int


@dataclass
class TrainConfig:
    steps: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    ema_decay: float = 0.999  # 0 disables EMA
    amp: str = "auto"  # precision: auto | bf16 | fp32 (off = fp32), see robustok.train.precision
    compile: bool = False  # torch.compile the model

    BOUNDS: ClassVar[dict] = {
        "steps": ">=1",
        "lr": ">0",
        "min_lr": ">=0",
        "warmup_steps": ">=0",
        "weight_decay": ">=0",
        "betas": "[0,1)",
        "grad_clip": ">=0",
        "ema_decay": "[0,1)",
    }


def _to_container(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def load_config(
    schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = (), defaults: Optional[T] = None
) -> T:
    """Load `path` (YAML) over the defaults of dataclass `schema`, then apply `key=value` overrides.

    `path` may also name a preset shipped with the package when the schema declares its `PRESETS` stage
    (`fmnist-robust` for `TokenizerTrainConfig`). Returns an instance of `schema` (nested dataclasses included).
    Raises `ConfigError` naming the key on unknown keys, wrong types or malformed overrides. `defaults`: an
    instance of `schema` to start from instead of `schema()`; its sections may be subclasses of the declared ones,
    whose own keys are then accepted.
    """
    base = OmegaConf.structured(schema if defaults is None else defaults)
    where = "defaults"
    try:
        if path is not None:
            path = _config_file(schema, path)
            where = str(path)
            base = OmegaConf.merge(base, OmegaConf.load(path))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"override {bad[0]!r} is not of the form key=value")
        where = "command-line overrides"
        base = OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
        obj = OmegaConf.to_object(base)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or getattr(err, "key", None)
        msg = str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid config key {key!r}: {msg}") from None
    check_bounds(obj)
    return cast(T, obj)  # OmegaConf.to_object of a structured `schema` config is a `schema` instance


def _config_file(schema: type, path: str | Path) -> Path:
    """`path` itself, or, for a schema with a `PRESETS` stage, the shipped preset of that name (`robustok.presets`)."""
    stage = getattr(schema, "PRESETS", "")
    if stage:
        from robustok.presets import resolve_config

        return resolve_config(path, stage)
    if not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")
    return Path(path)


def to_dict(cfg: Any) -> dict:
    """A plain dict of a config dataclass (for JSON/YAML output)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    return dict(_to_container(cfg))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write a config as YAML (the exact configuration a run used)."""
    from robustok.hub import atomic_write_bytes  # hub imports this module

    atomic_write_bytes(path, OmegaConf.to_yaml(OmegaConf.create(to_dict(cfg))).encode())


def from_dict(schema: type[T], data: dict) -> T:
    """Build a schema instance from a dict (e.g. a model's config.json); unknown keys are errors."""
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(data)))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or getattr(err, "key", None)
        raise ConfigError(f"invalid key {key!r} for {schema.__name__}: {str(err).splitlines()[0]}") from None
    check_bounds(obj)
    return cast(T, obj)  # as in load_config
