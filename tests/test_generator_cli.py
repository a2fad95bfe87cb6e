"""End to end through the CLI: pretokenize -> train-generator -> sample (AR and diffusion), and one-line errors."""

import numpy as np
import pytest

from robustok.cli import main
from tests.helpers import ROOT, gray_class_folder, tiny16_tokenizer


@pytest.fixture
def setup(tmp_path):
    gray_class_folder(tmp_path / "imgs", [6, 6])
    for kind in ("vq", "kl"):
        tiny16_tokenizer(kind).save_pretrained(tmp_path / kind)
    return tmp_path


@pytest.mark.parametrize("kind", ["ar", "diffusion"])
def test_pipeline(setup, kind):
    t = setup
    tok = t / ("vq" if kind == "ar" else "kl")
    assert (
        main(
            [
                "pretokenize",
                str(tok),
                "--data",
                str(t / "imgs"),
                "--out",
                str(t / "store"),
                "--views",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    overrides = [
        f"data.tokens={t / 'store'}",
        f"data.tokenizer={tok}",
        f"run.dir={t / 'run'}",
        "train.steps=4",
        "data.batch_size=4",
        "run.log_every=2",
        "run.sample_every=4",
        "run.progress=false",
        "model.dim=32",
        "model.depth=1",
        "model.heads=2",
    ]
    # each kind's own keys: `sample.steps` is a diffusion option, `model.random_order` an AR one
    overrides += ["model.random_order=true"] if kind == "ar" else ["sample.steps=2"]
    assert main(["train-generator", f"{ROOT}/configs/generator/fmnist-{kind}.yaml", *overrides]) == 0
    assert (t / "run" / "generator" / "model.safetensors").is_file()
    assert list((t / "run" / "samples").glob("*.png"))
    args = [
        "sample",
        str(t / "run" / "generator"),
        "--tokenizer",
        str(tok),
        "--num-images",
        "5",
        "--cfg",
        "2",
        "--out",
        str(t / "samples"),
        "--batch-size",
        "3",
        "--no-progress",
        *(["--steps", "2"] * (kind != "ar")),
    ]
    assert main(args) == 0
    npz = np.load(t / "samples" / "samples.npz")
    assert npz["arr_0"].shape == (5, 16, 16, 1) and npz["arr_0"].dtype == np.uint8
    assert npz["arr_1"].tolist() == [0, 1, 0, 1, 0]
    assert len(list((t / "samples" / "000").glob("*.png"))) == 3
    # same seed -> same images
    args[args.index(str(t / "samples"))] = str(t / "samples2")
    assert main(args) == 0
    assert np.array_equal(np.load(t / "samples2" / "samples.npz")["arr_0"], npz["arr_0"])
    if kind == "ar":  # the static decoder: the same images (the last batch runs padded)
        args[args.index(str(t / "samples2"))] = str(t / "samples3")
        assert main([*args, "--static-cache"]) == 0
        assert np.array_equal(np.load(t / "samples3" / "samples.npz")["arr_0"], npz["arr_0"])


def test_cli_errors_are_one_line(setup, capsys):
    t = setup
    assert main(["pretokenize", str(t / "vq"), "--data", str(t / "imgs"), "--out", str(t / "st"), "--no-progress"]) == 0
    gen_args = [
        f"data.tokens={t / 'st'}",
        f"run.dir={t / 'run'}",
        "train.steps=1",
        "data.batch_size=4",
        "run.progress=false",
        "model.dim=32",
        "model.depth=1",
        "model.heads=2",
    ]
    assert main(["train-generator", f"{ROOT}/configs/generator/fmnist-ar.yaml", *gen_args]) == 0
    gen = str(t / "run" / "generator")
    cases = [
        (["sample", gen, "--tokenizer", str(t / "kl"), "--num-images", "2", "--out", str(t / "o")], "tokenizer"),
        (
            ["sample", gen, "--tokenizer", str(t / "vq"), "--num-images", "2", "--cfg", "-1", "--out", str(t / "o")],
            "--cfg: must be >= 0",
        ),
        (
            [
                "sample",
                gen,
                "--tokenizer",
                str(t / "vq"),
                "--num-images",
                "2",
                "--mask-steps",
                "3",
                "--out",
                str(t / "o"),
            ],
            "--mask-steps: not a sampling option of this generator (kind 'ar'",
        ),
        (
            [
                "train-generator",
                f"{ROOT}/configs/generator/fmnist-ar.yaml",
                f"data.tokens={t / 'st'}",
                "model.patch_size=2",
            ],
            "invalid config key 'model.patch_size': Key 'patch_size' not in 'ARModelOptions'",
        ),
        (
            ["sample", gen, "--tokenizer", str(t / "vq"), "--num-images", "2", "--classes", "7", "--out", str(t / "o")],
            "classes",
        ),
        (["sample", str(t / "st"), "--tokenizer", str(t / "vq"), "--out", str(t / "o")], "config.json"),
        (["train-generator", f"{ROOT}/configs/generator/fmnist-ar.yaml", f"data.tokens={t / 'imgs'}"], "manifest.json"),
        (
            [
                "train-generator",
                f"{ROOT}/configs/generator/fmnist-ar.yaml",
                f"data.tokens={t / 'st'}",
                f"data.tokenizer={t / 'kl'}",
            ],
            "tokenizer",
        ),
        (["pretokenize", str(t / "vq"), "--data", str(t / "imgs"), "--out", str(t / "x"), "--views", "0"], "views"),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (argv, err)
