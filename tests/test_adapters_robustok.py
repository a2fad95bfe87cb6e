"""RobusTok release adapter: upstream key names/shapes (main-train.pt with model/ema/args), ignored teacher keys."""

from __future__ import annotations

import argparse

import pytest
import torch

from robustok.adapters import RobusTokRelease, RobusTokReleaseConfig, load_external, load_tokenizer
from robustok.errors import CheckpointError
from tests.helpers import levels, random_state, robustok_shapes, tiny_state  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def test_full_size_key_set_matches_upstream_layout():
    with torch.device("meta"):
        m = RobusTokRelease(RobusTokReleaseConfig())
    own = {k.replace("quantizer.", "quantize.", 1): tuple(v.shape) for k, v in m.state_dict().items()}
    expected = robustok_shapes(teacher=False)
    for k in ("encoder.lvl1LC", "decoder.lvl1LC", "quantize.ema_vocab_hit_SV"):  # recomputed / unused buffers
        expected.pop(k)
    assert own == expected


def test_load_main_train_checkpoint(tmp_path):
    model, ema = tiny_state(0), tiny_state(1)
    path = tmp_path / "main-train.pt"
    torch.save(
        {
            "model": model,
            "ema": ema,
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]},
            "discriminator": {"w": torch.zeros(2)},
            "steps": 5,
            "args": argparse.Namespace(ema=True),
        },
        path,
    )
    tok = load_external("robustok-release", path, heads=2)
    c = tok.config
    assert (c.width, c.depth, c.image_size, c.patch_size, c.num_latent_tokens, c.codebook_size, c.code_dim) == (
        32,
        2,
        32,
        8,
        16,
        64,
        8,
    )
    assert torch.equal(tok.quant_conv.weight, ema["quant_conv.weight"])  # "ema" preferred
    plain = load_external("robustok-release", path, weights="model", heads=2)
    assert torch.equal(plain.quant_conv.weight, model["quant_conv.weight"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = tok.encode_latents(x)
    assert z.shape == (2, 8, 4, 4) and torch.allclose(z.norm(dim=1), torch.ones(2, 4, 4), atol=1e-5)
    ids = tok.encode(x)
    img = tok.decode(ids)
    assert ids.shape == (2, 4, 4) and img.shape == (2, 3, 32, 32)
    assert tok.last_layer is tok.decoder.to_pixel.model.weight
    out = tok(x)
    assert torch.equal(out.ids, ids) and out.recon.shape == (2, 3, 32, 32)
    tok.save_pretrained(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert isinstance(back, RobusTokRelease) and torch.equal(back.decode(ids), img)
    assert not any(k.startswith("semantic_model") for k in back.state_dict())


def test_unpatchify_is_channels_last_within_a_patch():
    tok = RobusTokRelease(
        RobusTokReleaseConfig(
            image_size=16, patch_size=8, width=16, depth=1, heads=2, num_latent_tokens=4, codebook_size=8, code_dim=4
        )
    ).eval()
    lin = tok.decoder.to_pixel.model
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.copy_(torch.arange(8 * 8 * 3, dtype=torch.float))
        img = tok.decode_codes(torch.zeros(1, 4, 2, 2))
    # output feature f = (row * 8 + col) * 3 + channel, same for every patch
    assert img[0, 2, 1, 5] == (1 * 8 + 5) * 3 + 2 and img[0, 0, 8 + 3, 8 + 4] == (3 * 8 + 4) * 3


def test_wrong_level_buffer_means_wrong_config(tmp_path):
    s = tiny_state()
    s["encoder.lvl1LC"] = levels(16, 17)
    torch.save({"ema": s}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="lvl1LC"):
        load_external("robustok-release", tmp_path / "bad.pt", heads=2)
