"""`robustok fid`, `fid-stats` and `eval-tokenizer` end to end with the seeded random features (fast)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from robustok import Tokenizer, TokenizerConfig
from robustok.cli import main
from robustok.metrics.sources import read_samples_npz, write_samples_npz


def _folder(path, n, size=32, seed=0, rgb=True):
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 256, (size, size, 3) if rgb else (size, size), dtype=np.uint8)
        Image.fromarray(arr).save(path / f"{i:03d}.png")
    return path


def test_fid_folders_npz_and_stats(tmp_path, capsys):
    a, b = _folder(tmp_path / "a", 12, seed=0), _folder(tmp_path / "b", 10, seed=1)
    out = tmp_path / "fid.json"
    assert main(["fid", str(a), str(b), "--features", "random", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["features"] == "random" and res["num_images"] == [12, 10] and res["fid"] > 0
    assert "FID-random" in capsys.readouterr().out
    # the same images as an ADM sample file, and B as cached statistics
    imgs = np.stack([np.asarray(Image.open(p)) for p in sorted(a.glob("*.png"))])
    write_samples_npz(tmp_path / "a.npz", imgs)
    assert read_samples_npz(tmp_path / "a.npz").shape == (12, 32, 32, 3)
    assert main(["fid-stats", str(b), "--features", "random", "--out", str(tmp_path / "b_stats.npz")]) == 0
    out2 = tmp_path / "fid2.json"
    assert (
        main(
            ["fid", str(tmp_path / "a.npz"), str(tmp_path / "b_stats.npz"), "--features", "random", "--json", str(out2)]
        )
        == 0
    )
    assert json.loads(out2.read_text())["fid"] == pytest.approx(res["fid"], rel=1e-9)
    assert main(["fid", str(a), str(a), "--features", "random", "--json", str(out2)]) == 0
    assert json.loads(out2.read_text())["fid"] == pytest.approx(0.0, abs=1e-8)


def test_fid_bad_inputs(tmp_path, capsys):
    a, small = _folder(tmp_path / "a", 4), _folder(tmp_path / "s", 4, size=16)
    assert main(["fid", str(a), str(small), "--features", "random"]) == 2
    assert "image sizes differ" in capsys.readouterr().err
    one = _folder(tmp_path / "one", 1)
    assert main(["fid", str(one), str(a), "--features", "random"]) == 2
    assert "at least 2" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", foo=np.zeros(3))
    assert main(["fid", str(tmp_path / "bad.npz"), str(a), "--features", "random"]) == 2
    assert "arr_0" in capsys.readouterr().err
    np.savez(tmp_path / "wrongdim.npz", mu=np.zeros(5), sigma=np.eye(5))
    assert main(["fid", str(a), str(tmp_path / "wrongdim.npz"), "--features", "random"]) == 2
    assert "dimension 5" in capsys.readouterr().err
    mixed = _folder(tmp_path / "mixed", 3)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(mixed / "zz.png")
    assert main(["fid", str(mixed), str(a), "--features", "random"]) == 2
    assert "zz.png" in capsys.readouterr().err
    assert main(["fid", str(a), str(a), "--features", "nope"]) == 2
    assert "unknown feature network" in capsys.readouterr().err


def test_eval_tokenizer_cli(tmp_path, capsys):
    data = _folder(tmp_path / "data", 20, rgb=False)
    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig(codebook_size=32, base_channels=8, hidden_dim=16, channel_mult=[1, 2]))
    tok.save_pretrained(tmp_path / "tok")
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval-tokenizer",
                str(tmp_path / "tok"),
                "--data",
                str(data),
                "--num-images",
                "20",
                "--features",
                "random",
                "--pfid-alphas",
                "0.9,0.5",
                "--batch-size",
                "8",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    for key in ("psnr", "ssim", "rfid", "pfid", "pfid_grid", "codebook_usage", "perplexity", "features", "num_images"):
        assert key in res
    assert res["num_images"] == 20 and len(res["pfid_grid"]) == 6
    text = capsys.readouterr().out
    assert "pFID-random" in text and "rFID-random" in text
    assert main(["eval-tokenizer", str(tmp_path / "tok"), "--data", str(data), "--metrics", "psnr,bogus"]) == 2
    torch.manual_seed(0)
    Tokenizer(TokenizerConfig(bottleneck="kl", base_channels=8, hidden_dim=16, channel_mult=[1, 2])).save_pretrained(
        tmp_path / "kl"
    )
    assert (
        main(
            [
                "eval-tokenizer",
                str(tmp_path / "kl"),
                "--data",
                str(data),
                "--metrics",
                "pfid",
                "--features",
                "random",
                "--num-images",
                "4",
            ]
        )
        == 2
    )
    assert "discrete tokenizer" in capsys.readouterr().err


def test_class_accuracy_of_labelled_samples(tmp_path, capsys):
    from robustok.metrics.features import RandomFeatures

    imgs = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    predicted = RandomFeatures().logits(torch.from_numpy(imgs).permute(0, 3, 1, 2)).argmax(1).numpy()
    ref = _folder(tmp_path / "ref", 6)
    for name, labels, expected in (
        ("right", predicted, 1.0),
        ("wrong", (predicted + 1) % 10, 0.0),
        ("half", np.where(np.arange(20) < 10, predicted, (predicted + 1) % 10), 0.5),
    ):
        np.savez(tmp_path / f"{name}.npz", arr_0=imgs, arr_1=labels)
        out = tmp_path / f"{name}.json"
        assert (
            main(
                [
                    "fid",
                    str(tmp_path / f"{name}.npz"),
                    str(ref),
                    "--features",
                    "random",
                    "--metrics",
                    "fid,acc",
                    "--json",
                    str(out),
                ]
            )
            == 0
        )
        assert json.loads(out.read_text())["class_accuracy"] == pytest.approx(expected)
    assert "class accuracy (random classifier)" in capsys.readouterr().out
    np.savez(tmp_path / "nolabels.npz", arr_0=imgs)
    assert main(["fid", str(tmp_path / "nolabels.npz"), str(ref), "--features", "random", "--metrics", "acc"]) == 2
    assert "arr_1" in capsys.readouterr().err
    np.savez(tmp_path / "badlabels.npz", arr_0=imgs, arr_1=np.full(20, 12))
    assert main(["fid", str(tmp_path / "badlabels.npz"), str(ref), "--features", "random", "--metrics", "acc"]) == 2
    assert "labels must lie in [0, 10)" in capsys.readouterr().err
    assert main(["fid", str(ref), str(ref), "--features", "random", "--metrics", "acc"]) == 2
    assert "samples .npz with labels" in capsys.readouterr().err


def test_class_accuracy_refuses_mismatched_labels(tmp_path, capsys):
    imgs = np.zeros((4, 32, 32, 3), np.uint8)
    np.savez(tmp_path / "short.npz", arr_0=imgs, arr_1=np.zeros(3, np.int64))
    assert (
        main(
            [
                "fid",
                str(tmp_path / "short.npz"),
                str(tmp_path / "short.npz"),
                "--features",
                "random",
                "--metrics",
                "acc",
                "--num-images",
                "2",
            ]
        )
        == 2
    )
    assert "4 images but 3 labels" in capsys.readouterr().err
