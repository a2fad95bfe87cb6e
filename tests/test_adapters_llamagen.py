"""LlamaGen VQ-16 adapter: upstream key names/shapes, loading `vq_ds16_c2i.pt`-style files, round trip."""

from __future__ import annotations

import argparse

import pytest
import torch

from robustok.adapters import LlamaGenVQ, LlamaGenVQConfig, load_external, load_tokenizer
from robustok.errors import CheckpointError
from tests.helpers import TINY_LLAMAGEN, llamagen_shapes, random_state

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("llamagen") / "vq_ds16_c2i.pt"
    state = random_state(llamagen_shapes(**TINY_LLAMAGEN))
    torch.save({"model": state, "steps": 10, "args": argparse.Namespace(vq_model="VQ-16", image_size=32)}, path)
    return path, state


def test_full_size_key_set_matches_upstream_layout():
    with torch.device("meta"):
        m = LlamaGenVQ(LlamaGenVQConfig())
    own = {k.replace("quantizer.", "quantize.", 1): tuple(v.shape) for k, v in m.state_dict().items()}
    expected = llamagen_shapes()
    expected.pop("quantize.codebook_used")
    assert own == expected
    assert abs(sum(p.numel() for p in m.parameters()) / 1e6 - 72) < 0.5  # LlamaGen README: VQ-16 72M


def test_load_forward_and_round_trip(ckpt, tmp_path):
    path, state = ckpt
    tok = load_external("llamagen-vq16", path, image_size=32, norm_groups=4)
    assert not tok.training and tok.is_discrete and tok.grid_size == 2 and tok.codebook_size == 64
    assert tok.config.base_channels == 8 and tok.config.channel_mult == [1, 1, 2, 2, 4]  # read off the shapes
    sd = tok.state_dict()
    for k, v in state.items():
        if k != "quantize.codebook_used":
            assert torch.equal(sd[k.replace("quantize.", "quantizer.", 1)], v)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = tok.encode_latents(x)
    assert z.shape == (2, 8, 2, 2) and torch.allclose(z.norm(dim=1), torch.ones(2, 2, 2), atol=1e-5)
    ids = tok.encode(x)
    assert ids.shape == (2, 2, 2) and ids.dtype == torch.long
    assert torch.allclose(tok.codebook.norm(dim=1), torch.ones(64), atol=1e-5)
    img = tok.decode(ids)
    assert img.shape == (2, 3, 32, 32) and img.abs().max() <= 1
    assert torch.equal(tok.decode(ids.view(2, 4)), img)
    out = tok(x)
    assert out.recon.shape == (2, 3, 32, 32) and torch.equal(out.ids, ids) and set(out.losses) == {"vq", "commit"}
    assert tok.last_layer is tok.decoder.conv_out.weight
    tok.save_pretrained(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert isinstance(back, LlamaGenVQ) and not back.training
    assert torch.equal(back.encode(x), ids) and torch.equal(back.decode(ids), img)
    assert back.fingerprint() == tok.fingerprint()


def test_ema_entry_selectable_and_missing_entry(ckpt, tmp_path):
    path, state = ckpt
    p = tmp_path / "both.pt"
    ema = {k: v + 1 for k, v in state.items()}
    torch.save({"model": state, "ema": ema}, p)
    a = load_external("llamagen-vq16", p, norm_groups=4, image_size=32)
    b = load_external("llamagen-vq16", p, weights="ema", norm_groups=4, image_size=32)
    assert torch.equal(a.quant_conv.weight, state["quant_conv.weight"])
    assert torch.equal(b.quant_conv.weight, ema["quant_conv.weight"])
    with pytest.raises(CheckpointError, match="no state dict under 'nope'"):
        load_external("llamagen-vq16", p, weights="nope", norm_groups=4, image_size=32)


def test_missing_and_misshaped_keys_are_named(ckpt, tmp_path):
    _, state = ckpt
    s = dict(state)
    s.pop("decoder.conv_blocks.0.attn.1.q.weight")
    torch.save({"model": s}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing.pt\['model'\].*missing.*decoder.conv_blocks.0.attn.1.q.weight"):
        load_external("llamagen-vq16", tmp_path / "missing.pt", norm_groups=4, image_size=32)
    with pytest.raises(CheckpointError, match="shape mismatch"):  # config says 16 z channels, file has 16 -> 32
        load_external("llamagen-vq16", ckpt[0], norm_groups=4, image_size=32, z_channels=32)
