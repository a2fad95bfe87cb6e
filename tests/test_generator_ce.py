"""`robustok generator-ce`: a generator's cross-entropy on real tokens is ln K for a random model and drops with
training; latent generators and stores of another tokenizer are refused in one line."""

from __future__ import annotations

import json
import math

import pytest
import torch

from robustok.cli import main
from robustok.generator import DiffusionConfig, DiffusionGenerator, load_generator
from robustok.generator.crossentropy import store_cross_entropy
from robustok.generator.task import GeneratorModelConfig, build_generator
from robustok.tokens.store import TokenDataset
from tests.helpers import ROOT, gray_class_folder, tiny16_tokenizer

K = 32  # tiny16_tokenizer's codebook


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    t = tmp_path_factory.mktemp("ce")
    gray_class_folder(t / "imgs", [8, 8])
    tiny16_tokenizer().save_pretrained(t / "tok")
    tiny16_tokenizer(seed=1).save_pretrained(t / "tok_other")
    for tok, out in (("tok", "store"), ("tok_other", "store_other")):
        assert (
            main(
                [
                    "pretokenize",
                    str(t / tok),
                    "--data",
                    str(t / "imgs"),
                    "--out",
                    str(t / out),
                    "--views",
                    "2",
                    "--no-progress",
                ]
            )
            == 0
        )
    return t


def _ce(work, gen_dir, *extra) -> dict:
    out = work / "ce.json"
    assert (
        main(
            ["generator-ce", str(gen_dir), "--tokens", str(work / "store"), "--json", str(out), "--no-progress", *extra]
        )
        == 0
    )
    return json.loads(out.read_text())


def _train(work, kind: str, steps: int) -> str:
    run = work / f"run-{kind}-{steps}"
    if (run / "generator").is_dir():
        return str(run / "generator")
    assert (
        main(
            [
                "train-generator",
                f"{ROOT}/configs/generator/fmnist-{kind}.yaml",
                f"data.tokens={work / 'store'}",
                f"run.dir={run}",
                f"train.steps={steps}",
                "train.warmup_steps=1",
                "train.ema_decay=0",
                "train.lr=3e-3",
                "data.batch_size=8",
                "run.progress=false",
                "run.log_every=100",
                "run.sample_every=0",
                "run.ckpt_every=0",
                "model.dim=32",
                "model.depth=1",
                "model.heads=2",
            ]
        )
        == 0
    )
    return str(run / "generator")


@pytest.mark.parametrize("kind", ["ar", "masked"])
def test_random_model_scores_ln_k_and_training_lowers_it(work, kind):
    store = TokenDataset(work / "store")
    torch.manual_seed(0)
    fresh = build_generator(GeneratorModelConfig(kind=kind, dim=32, depth=1, heads=2), store).eval()
    r = store_cross_entropy(fresh, store)  # zero-initialised head: exactly uniform
    assert r["entries"] == 32 and abs(r["cross_entropy"] - math.log(K)) < 1e-5
    torch.nn.init.normal_(fresh.head.weight, std=0.02)  # a random (non-zero) head: still about ln K
    assert abs(store_cross_entropy(fresh, store)["cross_entropy"] - math.log(K)) < 0.05
    before = _ce(work, _train(work, kind, 1))
    after = _ce(work, _train(work, kind, 40))
    assert before["ln_k"] == pytest.approx(math.log(K)) and before["vocab_size"] == K
    assert after["cross_entropy"] < before["cross_entropy"] - 0.2, (before, after)
    assert after["perplexity"] == pytest.approx(math.exp(after["cross_entropy"]))
    assert after["objective"] == ("next-token" if kind == "ar" else "masked-token")
    again = _ce(work, work / f"run-{kind}-40" / "generator")
    assert again["cross_entropy"] == after["cross_entropy"]  # seeded: the same number every run
    assert _ce(work, work / f"run-{kind}-40" / "generator", "--num", "5")["entries"] == 5


def test_refusals_are_one_line(work, capsys):
    gen = _train(work, "ar", 1)
    DiffusionGenerator(DiffusionConfig(latent_channels=4, grid=[8, 8], dim=32, depth=1, heads=2)).save_pretrained(
        work / "diffusion"
    )
    cases = [
        (["generator-ce", str(work / "diffusion"), "--tokens", str(work / "store")], "continuous latents"),
        (["generator-ce", gen, "--tokens", str(work / "store_other")], "tokens come from tokenizer"),
        (["generator-ce", gen, "--tokens", str(work / "imgs")], "manifest.json"),
        (["generator-ce", str(work / "store"), "--tokens", str(work / "store")], "config.json"),
        (["generator-ce", gen, "--tokens", str(work / "store"), "--num", "0"], "--num: must be >= 1"),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (argv, err)
    assert load_generator(gen).token_kind == "ids"
