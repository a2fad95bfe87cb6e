"""Adapter registry, safe loading, error messages, `load_tokenizer` dispatch and the shared tokenizer protocol."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from safetensors.torch import save_file

from robustok.adapters import (
    ADAPTERS,
    LlamaGenVQ,
    LlamaGenVQConfig,
    MaskGITVQGAN,
    MaskGITVQGANConfig,
    RobusTokRelease,
    RobusTokReleaseConfig,
    load_external,
    load_tokenizer,
)
from robustok.errors import CheckpointError, ConfigError
from robustok.tokenizer.model import Tokenizer, TokenizerConfig
from tests.helpers import TINY_LLAMAGEN, llamagen_shapes, maskgit_shapes, random_state

pytestmark = pytest.mark.usefixtures("one_thread")


class _Payload:
    """Unpickling this would create a marker file: a stand-in for arbitrary code in a malicious checkpoint."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def tiny_vq_models():
    return [
        LlamaGenVQ(LlamaGenVQConfig(image_size=32, base_channels=8, z_channels=16, codebook_size=64, norm_groups=4)),
        MaskGITVQGAN(
            MaskGITVQGANConfig(image_size=32, hidden_channels=8, z_channels=16, codebook_size=64, norm_groups=4)
        ),
        RobusTokRelease(
            RobusTokReleaseConfig(
                image_size=32,
                patch_size=16,
                width=16,
                depth=1,
                heads=2,
                num_latent_tokens=4,
                codebook_size=64,
                code_dim=8,
            )
        ),
    ]


def test_registry_and_bad_arguments(tmp_path):
    assert set(ADAPTERS) == {"llamagen-vq16", "maskgit-vqgan", "robustok-release", "sd-vae"}
    with pytest.raises(ConfigError, match="unknown tokenizer kind"):
        load_external("vqgan-xl", tmp_path / "x.pt")
    p = tmp_path / "vq.pt"
    torch.save({"model": random_state(llamagen_shapes(**TINY_LLAMAGEN))}, p)
    with pytest.raises(ConfigError, match="unknown config field"):
        load_external("llamagen-vq16", p, nonsense=3)
    with pytest.raises(CheckpointError, match="not found"):
        load_external("llamagen-vq16", tmp_path / "absent.pt")


def test_wrong_kind_is_named(tmp_path):
    p = tmp_path / "maskgit.bin"
    torch.save(random_state(maskgit_shapes(ch=8, z=16, K=32)), p)
    with pytest.raises(CheckpointError, match=r"maskgit.bin: not a LlamaGen VQ checkpoint"):
        load_external("llamagen-vq16", p)
    with pytest.raises(CheckpointError, match="not a RobusTok release checkpoint"):
        load_external("robustok-release", p)
    s = tmp_path / "vae.safetensors"
    save_file({"encoder.conv_in.weight": torch.zeros(2, 3, 3, 3)}, str(s))
    with pytest.raises(CheckpointError, match="not a diffusers AutoencoderKL checkpoint"):
        load_external("sd-vae", s)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable PyTorch checkpoint"):
        load_external("llamagen-vq16", junk)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_external("sd-vae", bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": {"a": torch.zeros(1)}, "step": 3}, other)
    with pytest.raises(CheckpointError, match="without any of the entries"):
        load_external("llamagen-vq16", other)


def test_unsafe_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.save({"model": random_state(llamagen_shapes(**TINY_LLAMAGEN)), "extra": _Payload(str(marker))}, p)
    with pytest.raises(CheckpointError, match="evil.pt: refused to load: the file needs full unpickling"):
        load_external("llamagen-vq16", p)
    assert not marker.exists()


def test_load_tokenizer_dispatch(tmp_path):
    ours = Tokenizer(TokenizerConfig(base_channels=8, channel_mult=[1, 2], hidden_dim=16, codebook_size=16, code_dim=4))
    ours.save_pretrained(tmp_path / "ours")
    back = load_tokenizer(tmp_path / "ours")
    assert isinstance(back, Tokenizer) and not back.training and back.fingerprint() == ours.fingerprint()
    with pytest.raises(CheckpointError, match="is a file"):
        load_tokenizer(tmp_path / "ours" / "model.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_tokenizer(tmp_path / "nothing")
    ours.save_pretrained(tmp_path / "run" / "tokenizer")  # a training run's folder names its model
    with pytest.raises(CheckpointError, match="sub-folder: try .*run/tokenizer"):
        load_tokenizer(tmp_path / "run")
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "config.json").write_text(json.dumps({"class": "ARGenerator", "config": {}}))
    with pytest.raises(CheckpointError, match="not a tokenizer"):
        load_tokenizer(tmp_path / "gen")


@pytest.mark.parametrize("model", tiny_vq_models(), ids=lambda m: type(m).__name__)
def test_vq_protocol(model):
    model.eval()
    g = model.grid_size
    frozen = tuple(model.frozen_part_names())
    names = [k for k, _ in model.named_parameters()]
    assert any(k.startswith("quantizer.") for k in names if k.startswith(frozen))
    trainable = [k for k in names if not k.startswith(frozen)]
    assert trainable and all(k.startswith(("decoder.", "post_quant_conv.")) for k in trainable)
    assert any(model.last_layer is p for k, p in model.named_parameters() if k in trainable)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    ids = model.encode(x)
    assert ids.shape == (2, g, g) and ids.dtype == torch.long
    assert torch.equal(model.lookup(ids.view(2, g * g)), model.lookup(ids))
    assert model.lookup(ids).shape == (2, model.codebook.shape[1], g, g)
    assert model.codebook.shape[0] == model.codebook_size == 64
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        model.lookup(torch.full((1, g, g), 64))
    with pytest.raises(ValueError, match="expected token ids"):
        model.lookup(torch.zeros(1, g + 1, g, dtype=torch.long))
    with pytest.raises(ValueError, match="expected images"):
        model.encode(torch.zeros(1, 3, 16, 16))
    rec = model.reconstruct(x)
    assert rec.shape == x.shape and rec.abs().max() <= 1
    assert torch.equal(model.decode_latents(model.lookup(ids)), model.decode_codes(model.lookup(ids)))
    # training forward: VQ losses on the clean code; perturbation only in training mode
    perturb = {"beta": 1.0, "alpha": 1.0, "delta": 8, "neighbours": "code"}
    out = model(x, perturb=perturb)
    assert "perturbed_images" not in out.stats and torch.equal(out.ids, ids)
    model.train()
    gen = torch.Generator().manual_seed(0)
    out = model(x, perturb=perturb, generator=gen)
    assert out.stats["perturbed_images"] == 1.0 and out.stats["changed_tokens"] > 0
    (out.recon.square().mean() + out.losses["vq"] + out.losses["commit"]).backward()
    assert model.last_layer.grad is not None
    assert model.quantizer.embedding.weight.grad is not None  # vq loss trains the codebook


def test_convert_command_writes_a_loadable_directory(tmp_path):
    """`robustok convert` on an original-format file (a tiny LlamaGen-layout checkpoint built here)."""
    from robustok.adapters import load_external, load_tokenizer
    from robustok.cli import main

    torch.save({"model": random_state(llamagen_shapes(**TINY_LLAMAGEN))}, tmp_path / "vq.pt")
    assert (
        main(
            [
                "convert",
                "llamagen-vq16",
                str(tmp_path / "vq.pt"),
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
    tok = load_tokenizer(tmp_path / "d")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    direct = load_external("llamagen-vq16", tmp_path / "vq.pt", image_size=32, norm_groups=4)
    assert torch.equal(tok.encode(x), direct.encode(x))
    again = [
        "convert",
        "llamagen-vq16",
        str(tmp_path / "vq.pt"),
        "--out",
        str(tmp_path / "d"),
        "--image-size",
        "32",
        "--set",
        "norm_groups=4",
    ]
    assert main(again) == 2  # an existing tokenizer folder is not replaced silently
    assert main([*again, "--overwrite"]) == 0
    assert torch.equal(load_tokenizer(tmp_path / "d").encode(x), direct.encode(x))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
