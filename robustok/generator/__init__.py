"""Generators on tokens: an autoregressive transformer (discrete ids) and a flow-matching DiT (continuous latents),
both `TokenGenerator`s in the registry of `robustok.generator.base`, and the `train-generator` task. Token stores
live in `robustok.tokens`."""

from __future__ import annotations

from pathlib import Path

from robustok.generator.ar import ARConfig, ARGenerator
from robustok.generator.base import (
    GeneratorConfig,
    IdGeneratorConfig,
    TokenGenerator,
    generator_class,
    generator_classes_by_name,
    generator_kinds,
    register_generator,
)
from robustok.generator.diffusion import DiffusionConfig, DiffusionGenerator
from robustok.hf_hub import resolve_weights
from robustok.hub import load_by_class
from robustok.tokens.store import TokenDataset, read_manifest, write_token_store

Generator = TokenGenerator
__all__ = [
    "ARConfig",
    "ARGenerator",
    "DiffusionConfig",
    "DiffusionGenerator",
    "Generator",
    "GeneratorConfig",
    "IdGeneratorConfig",
    "TokenDataset",
    "TokenGenerator",
    "generator_class",
    "generator_kinds",
    "load_generator",
    "read_manifest",
    "register_generator",
    "write_token_store",
]


def load_generator(directory: str | Path, map_location: str = "cpu") -> TokenGenerator:
    """Load a generator directory (or a Hub reference `hf://<org>/<repo>[/<dir>]`): the class named in its
    `config.json`, among the registered generator kinds."""
    return load_by_class(
        resolve_weights(directory, directory=True),
        generator_classes_by_name(),
        "generator (e.g. runs/gen/generator)",
        map_location,
    )
