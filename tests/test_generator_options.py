"""Per-kind generator options: each kind's model / objective / sampling dataclasses, the YAML sections checked
against them, the command-line flags derived from the registered kinds, and the conversions between them."""

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional

import pytest
import torch

from robustok.commands._sampling_args import add_sampling_args, sampling_options
from robustok.errors import ConfigError
from robustok.generator import load_generator
from robustok.generator.ar import ARConfig, ARGenerator, ARModelOptions, ARObjective, ARSampling
from robustok.generator.base import GENERATORS, TokenGenerator, register_generator
from robustok.generator.diffusion import DiffusionGenerator, DiffusionSampling
from robustok.generator.masked import MaskedGenerator, MaskedModelOptions, MaskedSampling
from robustok.generator.options import GeneratorModelConfig, SamplingOptions
from robustok.generator.task import generator_config_defaults, load_generator_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "generator").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_into_their_kinds_classes(path):
    cfg = load_generator_config(path)
    cls = {"ar": ARGenerator, "diffusion": DiffusionGenerator, "masked": MaskedGenerator}[cfg.model.kind]
    assert type(cfg.model) is cls.options_class and type(cfg.sample) is cls.sampling_class
    assert type(cfg.objective) is cls.objective_class


def test_yaml_values_reach_the_kinds_fields():
    cfg = load_generator_config(ROOT / "configs/generator/imagenet-rar-b.yaml", ["sample.top_k=0"])
    assert (cfg.model.pos, cfg.model.random_order, cfg.model.adaln, cfg.model.dropout) == ("learned", True, True, 0.1)
    assert (cfg.sample.cfg_schedule, cfg.sample.cfg_power, cfg.sample.top_k) == ("power", 1.15, None)  # 0 = off
    with pytest.raises(ConfigError, match="model.pos.*MaskedModelOptions"):
        load_generator_config(ROOT / "configs/generator/fmnist-ar.yaml", ["model.kind=masked"])
    with pytest.raises(ConfigError, match="objective.time_sampling.*ARObjective"):
        load_generator_config(ROOT / "configs/generator/fmnist-ar.yaml", ["objective.time_sampling=uniform"])
    with pytest.raises(ConfigError, match="unknown generator kind 'nope'"):
        load_generator_config(ROOT / "configs/generator/fmnist-ar.yaml", ["model.kind=nope"])
    assert generator_config_defaults("diffusion").sample == DiffusionSampling(cfg=2.0)


def test_the_committed_generator_still_loads():
    gen = load_generator(ROOT / "experiments/models/baseline-s0/generator-ar2000")
    assert isinstance(gen, ARGenerator) and gen.config.pos in ("rope", "learned")


def test_conversions_keep_shared_fields_and_refuse_another_kinds():
    assert ARGenerator.sampling(SamplingOptions(cfg=3.0)) == ARSampling(cfg=3.0)
    opts = ARSampling(cfg=2.0, temperature=0.5)
    assert ARGenerator.sampling(opts) is opts
    assert MaskedGenerator.sampling(ARSampling(cfg=2.0, temperature=0.5)) == MaskedSampling(cfg=2.0, temperature=0.5)
    with pytest.raises(ConfigError, match="sampling.mask_steps is not an option of generator kind 'ar'"):
        ARGenerator.sampling(MaskedSampling(mask_steps=4))
    with pytest.raises(ConfigError, match="sampling.temperature is not an option of generator kind 'diffusion'"):
        DiffusionGenerator.sampling(ARSampling(temperature=0.5))
    with pytest.raises(ConfigError, match="steps are not options of generator kind 'ar'"):
        ARGenerator.sampling(steps=3)
    assert DiffusionGenerator.sampling(ARSampling(cfg=1.5)) == DiffusionSampling(cfg=1.5)  # defaults pass
    with pytest.raises(ConfigError, match="model.random_order is not an option of generator kind 'masked'"):
        MaskedGenerator.model_options(ARModelOptions(kind="masked", random_order=True))
    assert MaskedGenerator.model_options(GeneratorModelConfig(kind="masked", dim=8)) == MaskedModelOptions(
        kind="masked", dim=8
    )
    assert ARGenerator.objective(ARObjective(order_anneal_end=0.8)).order_anneal_end == 0.8


def test_options_with_only_shared_fields_sample_like_the_kinds_defaults():
    torch.manual_seed(0)
    gen = ARGenerator(ARConfig(vocab_size=8, grid=[2, 2], num_classes=2, dim=16, depth=1, heads=2)).eval()
    labels = torch.tensor([0, 1])
    a = gen.sample_codes(labels, SamplingOptions(cfg=2.0), torch.Generator().manual_seed(1))
    b = gen.sample(labels, cfg=2.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


@dataclass
class EchoSampling(SamplingOptions):
    echo_volume: Optional[int] = field(default=None, metadata={"help": "how loud", "choices": None})
    whisper: bool = field(default=False, metadata={"help": "quietly"})

    BOUNDS: ClassVar[dict] = {"cfg": ">=0", "echo_volume": ">=1"}


class Echo(TokenGenerator):  # registered, never built: only its options matter here
    token_kind = "ids"
    sampling_class = EchoSampling


def _parse(argv):
    p = argparse.ArgumentParser(exit_on_error=False)
    add_sampling_args(p)
    return p, p.parse_args(argv)


def test_a_registered_kind_brings_its_flags():
    register_generator("echo-test")(Echo)
    try:
        p, args = _parse(["--echo-volume", "3", "--whisper"])
        assert "echo-test: how loud" in p.format_help()
        opts = sampling_options(args, Echo)
        assert opts == EchoSampling(echo_volume=3, whisper=True)
        with pytest.raises(argparse.ArgumentError, match="--echo-volume: must be >= 1"):
            _parse(["--echo-volume", "0"])
        with pytest.raises(ConfigError, match="--echo-volume: not a sampling option of this generator"):
            sampling_options(_parse(["--echo-volume", "3"])[1], ARGenerator)
    finally:
        GENERATORS.unregister("echo-test")
    assert "--echo-volume" not in _parse([])[0].format_help()
    assert sampling_options(_parse(["--top-k", "0"])[1], ARGenerator) == ARSampling()  # unset flags: defaults
    assert sampling_options(_parse(["--steps", "7"])[1], DiffusionGenerator) == DiffusionSampling(steps=7)
