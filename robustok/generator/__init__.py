"""Generators on tokens: an autoregressive transformer (discrete ids) and a flow-matching DiT (continuous latents),
token stores from `robustok pretokenize`, and the `train-generator` task."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from robustok.errors import CheckpointError
from robustok.generator.ar import ARConfig, ARGenerator
from robustok.generator.diffusion import DiffusionConfig, DiffusionGenerator
from robustok.generator.store import TokenDataset, read_manifest, write_token_store

Generator = Union[ARGenerator, DiffusionGenerator]
__all__ = ["ARConfig", "ARGenerator", "DiffusionConfig", "DiffusionGenerator", "Generator", "TokenDataset",
           "load_generator", "read_manifest", "write_token_store"]


def load_generator(directory: str | Path, map_location: str = "cpu") -> Generator:
    """Load an AR or diffusion generator directory (the class is read from its `config.json`)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; is {directory} a generator directory (e.g. runs/gen/generator)?")
    try:
        name = json.loads(path.read_text()).get("class")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise CheckpointError(f"{path}: invalid JSON ({err})") from None
    classes = {"ARGenerator": ARGenerator, "DiffusionGenerator": DiffusionGenerator}
    if name not in classes:
        raise CheckpointError(f"{path}: holds a {name!r}, not a generator (ARGenerator or DiffusionGenerator)")
    return classes[name].from_pretrained(directory, map_location)
