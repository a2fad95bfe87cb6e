"""MaskGIT VQGAN adapter: upstream key names/shapes, raw `.bin` state dicts, [0, 1] pixel convention."""

from __future__ import annotations

import pytest
import torch

from robustok.adapters import MaskGITVQGAN, MaskGITVQGANConfig, load_external, load_tokenizer
from tests.helpers import maskgit_shapes, random_state

pytestmark = pytest.mark.usefixtures("one_thread")


def test_full_size_key_set_matches_upstream_layout():
    with torch.device("meta"):
        m = MaskGITVQGAN(MaskGITVQGANConfig())
    own = {k.replace("quantizer.", "quantize.", 1): tuple(v.shape) for k, v in m.state_dict().items()}
    assert own == maskgit_shapes()
    assert m.frozen_part_names() == ["encoder.", "quantizer."]  # no quant_conv in this model


def test_load_raw_state_dict_forward_round_trip(tmp_path):
    state = random_state(maskgit_shapes(ch=8, z=16, K=32))
    path = tmp_path / "maskgit-vqgan-imagenet-f16-256.bin"
    torch.save(state, path)  # a plain state dict, as released
    tok = load_external("maskgit-vqgan", path, image_size=32, norm_groups=4)
    assert tok.config.hidden_channels == 8 and tok.config.z_channels == 16 and tok.codebook_size == 32
    assert torch.equal(tok.codebook, state["quantize.embedding.weight"])  # not normalised
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    h = tok.encode_latents(x)
    assert torch.equal(h, tok.encoder((x + 1) / 2))  # the model sees [0, 1] pixels
    ids = tok.encode(x)
    assert ids.shape == (2, 2, 2)
    e = state["quantize.embedding.weight"]
    ref = torch.cdist(h.permute(0, 2, 3, 1).reshape(-1, 16), e).argmin(1)
    assert torch.equal(ids.flatten(), ref)
    img = tok.decode(ids)
    assert img.shape == (2, 3, 32, 32)
    raw = tok.decoder(tok.lookup(ids))
    assert torch.allclose(tok.decode_codes(tok.lookup(ids)), raw * 2 - 1)  # [0, 1] -> [-1, 1]
    out = tok(x)
    assert out.recon.shape == (2, 3, 32, 32) and torch.equal(out.ids, ids)
    tok.save_pretrained(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert isinstance(back, MaskGITVQGAN) and torch.equal(back.decode(ids), img)
