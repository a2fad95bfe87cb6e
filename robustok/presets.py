"""Named configs shipped inside the package: `robustok train-tokenizer fmnist-robust` is the file
`robustok/configs/tokenizer/fmnist-robust.yaml`, found with `importlib.resources`, so an installed wheel needs no
checkout. A path to a YAML file always works too, and wins over a preset of the same name.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from robustok.errors import ConfigError

STAGES = ("tokenizer", "generator", "posttrain")


def _folder(stage: str) -> Path:
    if stage not in STAGES:
        raise ValueError(f"unknown preset stage {stage!r}; stages: {', '.join(STAGES)}")
    return Path(str(files("robustok") / "configs" / stage))


def preset_names(stage: str) -> list[str]:
    """The presets of a stage (`tokenizer`, `generator`, `posttrain`), sorted."""
    return sorted(p.stem for p in _folder(stage).glob("*.yaml"))


def preset_path(stage: str, name: str) -> Path:
    """The YAML file of preset `name` of `stage`; `ConfigError` listing the presets if there is none."""
    path = _folder(stage) / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no {stage} preset {name!r}; presets: {', '.join(preset_names(stage))}")
    return path


def resolve_config(ref: str | Path, stage: str) -> Path:
    """`ref` as a config file: an existing file, else the preset of that name (with or without `.yaml`)."""
    path = Path(ref)
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and (_folder(stage) / f"{name}.yaml").is_file():
        return _folder(stage) / f"{name}.yaml"
    raise ConfigError(
        f"config file not found: {ref} (a YAML path, or a {stage} preset: {', '.join(preset_names(stage))})"
    )
