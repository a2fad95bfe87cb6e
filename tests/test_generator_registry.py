"""The generator registry and protocol: lookup, unknown kinds, and a toy generator registered from outside the
package driven through the CLI (pretokenize -> train-generator -> sample -> post-train-data)."""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustok.cli import main
from robustok.errors import CheckpointError, ConfigError
from robustok.generator import ARGenerator, DiffusionGenerator, load_generator
from robustok.generator.base import TokenGenerator, generator_class, generator_kinds, register_generator
from robustok.generator.options import SamplingOptions
from tests.helpers import gray_class_folder, tiny16_tokenizer


@dataclass
class ToyConfig:
    vocab_size: int = 8
    grid: list[int] = field(default_factory=lambda: [2, 2])
    num_classes: int = 2
    tokenizer_fingerprint: str = ""


@dataclass
class ToySampling(SamplingOptions):
    temperature: float = field(default=1.0, metadata={"help": "softmax temperature"})


@register_generator("toy-table")
class ToyTable(TokenGenerator):
    """Independent tokens: one learned categorical distribution per class and grid position."""

    config_class = ToyConfig
    token_kind = "ids"
    sampling_class = ToySampling

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        self.null_class = config.num_classes
        self.logits = nn.Parameter(torch.zeros(config.num_classes + 1, *config.grid, config.vocab_size))

    @classmethod
    def build(cls, model_cfg, store) -> "ToyTable":
        return cls(ToyConfig(store.codebook_size, list(store.grid), store.num_classes, store.fingerprint))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.logits[labels]

    def training_loss(self, model, tokens, labels, step, total_steps, objective) -> dict:
        logits = model(self.prepare_labels(labels, objective.label_dropout))
        return {"loss": F.cross_entropy(logits.flatten(0, 2), tokens.flatten())}

    def sample_codes(self, labels, opts, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        probs = (self.logits[labels.long().to(self.logits.device)] / self.sampling(opts).temperature).softmax(-1)
        return torch.multinomial(probs.flatten(0, 2), 1, generator=generator).view(len(labels), *self.config.grid)

    def paired(self, real, labels, sigma, opts, rng, mask_rng) -> torch.Tensor:
        keep = torch.rand(real.shape, generator=mask_rng, device=real.device) < sigma
        return torch.where(keep, real, self.sample_codes(labels, opts, rng))


def test_builtin_kinds_and_lookup():
    assert {"ar", "diffusion"} <= set(generator_kinds())
    assert generator_class("ar") is ARGenerator and generator_class("diffusion") is DiffusionGenerator
    assert ARGenerator.token_kind == "ids" and DiffusionGenerator.token_kind == "latents"
    assert generator_class("toy-table") is ToyTable and ToyTable.kind == "toy-table"


def test_unknown_kind_lists_the_registered_ones():
    with pytest.raises(
        ConfigError,
        match=r"model.kind: unknown generator kind 'maskgit-xl'; registered kinds: "
        r"\[.*'ar', 'diffusion'",
    ):
        generator_class("maskgit-xl")
    from robustok.generator.task import GeneratorTask, GeneratorTrainConfig

    cfg = GeneratorTrainConfig()
    cfg.data.tokens, cfg.model.kind = "nowhere", "nope"
    with pytest.raises(ConfigError, match="unknown generator kind 'nope'"):
        GeneratorTask(cfg)


def test_registration_checks_the_class():
    with pytest.raises(TypeError, match="not a TokenGenerator"):
        register_generator("bad")(nn.Linear)

    class NoKind(ToyTable):
        token_kind = "pixels"

    with pytest.raises(TypeError, match="token_kind"):
        register_generator("bad")(NoKind)

    class Other(ToyTable):
        pass

    with pytest.raises(ConfigError, match="already registered"):
        register_generator("ar")(Other)
    assert generator_class("ar") is ARGenerator


def test_toy_generator_saved_and_loaded_through_the_registry(tmp_path):
    ToyTable(ToyConfig(tokenizer_fingerprint="abc")).save_pretrained(tmp_path / "g")
    back = load_generator(tmp_path / "g")
    assert type(back) is ToyTable and back.config.tokenizer_fingerprint == "abc"
    (tmp_path / "g" / "config.json").write_text('{"class": "Unregistered", "config": {}}')
    with pytest.raises(CheckpointError, match=r"'Unregistered'.*ToyTable"):
        load_generator(tmp_path / "g")


def test_check_tokenizer_refuses_the_wrong_kind_and_fingerprint():
    vq, kl = tiny16_tokenizer("vq"), tiny16_tokenizer("kl")
    toy = ToyTable(ToyConfig(vocab_size=vq.codebook_size))
    toy.check_tokenizer(vq)
    with pytest.raises(CheckpointError, match="models token ids; this tokenizer gives continuous latents"):
        toy.check_tokenizer(kl)
    toy.config.tokenizer_fingerprint = "0123"
    with pytest.raises(CheckpointError, match="tokenizer 0123"):
        toy.check_tokenizer(vq)


def test_step_runs_the_forward_through_the_wrapper_given(tmp_path):
    from robustok.data import build_dataset
    from robustok.generator.task import GeneratorTask, GeneratorTrainConfig
    from robustok.tokens.store import write_token_store

    gray_class_folder(tmp_path / "imgs", [3, 3])
    write_token_store(
        tiny16_tokenizer("vq"), build_dataset(str(tmp_path / "imgs"), 16, 1), tmp_path / "st", progress=False
    )
    cfg = GeneratorTrainConfig()
    cfg.data.tokens, cfg.model.kind = str(tmp_path / "st"), "toy-table"
    task = GeneratorTask(cfg)
    x, y = task.dataset[0][0][None], torch.tensor([1])

    class Wrapper(nn.Module):  # what DDP looks like to the task: the model under `.module`
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *a):
            return self.module(*a)

    torch.manual_seed(0)
    a = task.step(task.model, [x, y], 0, task.model)["loss"]
    torch.manual_seed(0)
    b = task.step(Wrapper(task.model), [x, y], 0, task.model)["loss"]
    assert torch.equal(a, b)


def test_toy_generator_through_the_cli(tmp_path):
    from robustok.tokens.pairs import PairStore

    t = tmp_path
    gray_class_folder(t / "imgs", [6, 6])
    tiny16_tokenizer("vq").save_pretrained(t / "vq")
    assert (
        main(["pretokenize", str(t / "vq"), "--data", str(t / "imgs"), "--out", str(t / "store"), "--no-progress"]) == 0
    )
    (t / "toy.yaml").write_text("model:\n  kind: toy-table\nobjective:\n  label_dropout: 0.1\n")
    assert (
        main(
            [
                "train-generator",
                str(t / "toy.yaml"),
                f"data.tokens={t / 'store'}",
                f"data.tokenizer={t / 'vq'}",
                f"run.dir={t / 'run'}",
                "train.steps=3",
                "data.batch_size=4",
                "run.sample_every=3",
                "run.progress=false",
                "train.lr=0.1",
            ]
        )
        == 0
    )
    gen = load_generator(t / "run" / "generator")
    assert type(gen) is ToyTable and list((t / "run" / "samples").glob("*.png"))
    assert (
        main(
            [
                "sample",
                str(t / "run" / "generator"),
                "--tokenizer",
                str(t / "vq"),
                "--num-images",
                "4",
                "--out",
                str(t / "samples"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert np.load(t / "samples" / "samples.npz")["arr_0"].shape == (4, 16, 16, 1)
    assert (
        main(
            [
                "post-train-data",
                str(t / "run" / "generator"),
                "--tokenizer",
                str(t / "vq"),
                "--data",
                str(t / "imgs"),
                "--sigma",
                "0.5",
                "--num-pairs",
                "8",
                "--num-eval",
                "4",
                "--batch-size",
                "4",
                "--temperature",
                "0.5",
                "--out",
                str(t / "pairs"),
                "--no-progress",
            ]
        )
        == 0
    )
    store = PairStore(t / "pairs", tiny16_tokenizer("vq"))
    assert store.kind == "ids" and store.generated.shape == (8, 8, 8) and store.eval_generated.shape == (4, 8, 8)
    assert store.manifest["generator"] == "toy-table" and store.manifest["sampling"] == {
        "cfg": 1.0,
        "precision": "fp32",
        "temperature": 0.5,
    }
