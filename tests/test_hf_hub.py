"""Hub references (`hf://<org>/<repo>/<file>`, `hf://<org>/<repo>[/<dir>]`), resolved offline from a Hugging Face
cache folder built here (models--org--repo/snapshots/<rev>/... + refs/main), through every loader of weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from robustok.cli import main
from robustok.errors import CheckpointError, RobustokError
from robustok.hf_hub import parse_hub_ref, resolve_weights
from tests.helpers import REV, TINY_LLAMAGEN, cached_repo, llamagen_shapes, random_state, tiny16_tokenizer

pytest.importorskip("huggingface_hub")


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_parse_and_plain_paths():
    assert parse_hub_ref("hf://org/repo/sub/w.pt") == ("org/repo", "sub/w.pt", None)
    assert parse_hub_ref("hf://org/repo@v1.0") == ("org/repo", "", "v1.0")
    assert parse_hub_ref(Path("hf://org/repo/w.pt")) == ("org/repo", "w.pt", None)  # Path folds the //
    assert resolve_weights("runs/x/w.pt") == Path("runs/x/w.pt")
    for bad in ("hf://org", "hf://org/repo/../w.pt"):
        with pytest.raises(CheckpointError, match="not a Hub reference"):
            parse_hub_ref(bad)
    with pytest.raises(CheckpointError, match="names a repository, not a file"):
        resolve_weights("hf://org/repo")


def test_convert_and_load_from_the_cache_offline(offline_cache, tmp_path):
    torch.save({"model": random_state(llamagen_shapes(**TINY_LLAMAGEN))}, tmp_path / "vq.pt")
    tiny16_tokenizer().save_pretrained(tmp_path / "tokdir")
    snap = cached_repo(offline_cache, "someone/llamagen", {"vq_ds16_c2i.pt": tmp_path / "vq.pt"})
    cached_repo(
        offline_cache,
        "someone/robustok-models",
        {
            "tok/config.json": tmp_path / "tokdir" / "config.json",
            "tok/model.safetensors": tmp_path / "tokdir" / "model.safetensors",
        },
    )
    assert resolve_weights("hf://someone/llamagen/vq_ds16_c2i.pt") == snap / "vq_ds16_c2i.pt"
    assert resolve_weights(f"hf://someone/llamagen@{REV}/vq_ds16_c2i.pt") == snap / "vq_ds16_c2i.pt"
    with pytest.MonkeyPatch.context() as online:  # online: a cached file is still read without the network
        online.delenv("HF_HUB_OFFLINE")
        assert resolve_weights("hf://someone/llamagen/vq_ds16_c2i.pt") == snap / "vq_ds16_c2i.pt"
    assert (
        main(
            [
                "convert",
                "llamagen-vq16",
                "hf://someone/llamagen/vq_ds16_c2i.pt",
                "--out",
                str(tmp_path / "d"),
                "--image-size",
                "32",
                "--set",
                "norm_groups=4",
            ]
        )
        == 0
    )
    from robustok.adapters import load_external, load_tokenizer

    x = torch.rand(1, 3, 32, 32) * 2 - 1
    direct = load_external("llamagen-vq16", tmp_path / "vq.pt", image_size=32, norm_groups=4)
    assert torch.equal(load_tokenizer(tmp_path / "d").encode(x), direct.encode(x))
    # a model directory inside a repository, and the whole repository as the directory
    tok = load_tokenizer("hf://someone/robustok-models/tok")
    assert tok.fingerprint() == load_tokenizer(tmp_path / "tokdir").fingerprint()
    cached_repo(
        offline_cache, "someone/tok-only", {n: tmp_path / "tokdir" / n for n in ("config.json", "model.safetensors")}
    )
    assert load_tokenizer("hf://someone/tok-only").fingerprint() == tok.fingerprint()
    from robustok.generator import ARConfig, ARGenerator, load_generator

    gen = ARGenerator(ARConfig(vocab_size=32, grid=[8, 8], dim=32, depth=1, heads=2))
    gen.save_pretrained(tmp_path / "gen")
    cached_repo(
        offline_cache, "someone/gens", {f"ar/{n}": tmp_path / "gen" / n for n in ("config.json", "model.safetensors")}
    )
    assert load_generator("hf://someone/gens/ar").fingerprint() == gen.fingerprint()


def test_missing_files_and_missing_extra_are_one_line(offline_cache, tmp_path, capsys, monkeypatch):
    cached_repo(offline_cache, "someone/llamagen", {"other.pt": Path(__file__)})
    data = tmp_path / "data"  # beside --out: an output inside the data folder is refused first
    data.mkdir()
    cases = [
        (
            ["convert", "llamagen-vq16", "hf://someone/llamagen/vq_ds16_c2i.pt", "--out", str(tmp_path / "o")],
            "hf://someone/llamagen/vq_ds16_c2i.pt: file not in the Hugging Face cache",
        ),
        (
            ["convert", "llamagen-vq16", "hf://nobody/nothing/w.pt", "--out", str(tmp_path / "o")],
            "HF_HUB_OFFLINE is set",
        ),
        (
            ["pretokenize", "hf://someone/llamagen/no-such-dir", "--data", str(data), "--out", str(tmp_path / "o")],
            "hf://someone/llamagen/no-such-dir: folder not in the Hugging Face cache",
        ),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (argv, err)
    assert not (tmp_path / "o").exists()
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # the extra is not installed
    with pytest.raises(RobustokError, match=r"hf://someone/llamagen/other\.pt: .*pip install 'robustok\[hub\]'"):
        resolve_weights("hf://someone/llamagen/other.pt")
