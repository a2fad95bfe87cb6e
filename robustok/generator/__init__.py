"""Generators on tokens: an autoregressive transformer (discrete ids) and a flow-matching DiT (continuous latents),
token stores from `robustok pretokenize`, and the `train-generator` task."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from robustok.hub import load_by_class
from robustok.generator.ar import ARConfig, ARGenerator
from robustok.generator.diffusion import DiffusionConfig, DiffusionGenerator
from robustok.generator.masked import MaskedConfig, MaskedGenerator  # masked generator (issue 11 part 6)
from robustok.generator.store import TokenDataset, read_manifest, write_token_store

Generator = Union[ARGenerator, DiffusionGenerator, MaskedGenerator]
__all__ = ["ARConfig", "ARGenerator", "DiffusionConfig", "DiffusionGenerator", "Generator", "MaskedConfig", "MaskedGenerator", "TokenDataset",
           "load_generator", "read_manifest", "write_token_store"]


def load_generator(directory: str | Path, map_location: str = "cpu") -> Generator:
    """Load an AR or diffusion generator directory (the class is read from its `config.json`)."""
    classes = {"ARGenerator": ARGenerator, "DiffusionGenerator": DiffusionGenerator,
               "MaskedGenerator": MaskedGenerator}
    return load_by_class(directory, classes, "generator (e.g. runs/gen/generator)", map_location)
