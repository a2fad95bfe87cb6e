"""MaskGIT VQGAN adapter: upstream key names/shapes, raw `.bin` state dicts, [0, 1] pixel convention."""
from __future__ import annotations

import torch

from robustok.adapters import MaskGITVQGAN, MaskGITVQGANConfig, load_external, load_tokenizer
from tests.test_adapters_llamagen import _one_thread, random_state  # noqa: F401  (autouse fixture)


def maskgit_shapes(ch=128, mult=(1, 1, 2, 2, 4), nres=2, z=256, K=1024) -> dict[str, tuple]:
    """Key -> shape of 1d-tokenizer's MaskGIT VQGAN (encoder/decoder/quantize), from maskgit_vqgan.py."""
    S: dict[str, tuple] = {}

    def conv(n, co, ci, k, bias=True):
        S[f"{n}.weight"] = (co, ci, k, k)
        if bias:
            S[f"{n}.bias"] = (co,)

    def norm(n, c):
        S[f"{n}.weight"], S[f"{n}.bias"] = (c,), (c,)

    def res(p, ci, co):
        norm(f"{p}.norm1", ci), conv(f"{p}.conv1", co, ci, 3, False)
        norm(f"{p}.norm2", co), conv(f"{p}.conv2", co, co, 3, False)
        if ci != co:
            conv(f"{p}.nin_shortcut", co, co, 1, False)      # maps the block output (out -> out)

    n = len(mult)
    conv("encoder.conv_in", ch, 3, 3, False)
    c = ch
    for i, m in enumerate(mult):
        for j in range(nres):
            res(f"encoder.down.{i}.block.{j}", c, ch * m)
            c = ch * m
    for j in range(nres):
        res(f"encoder.mid.{j}", c, c)
    norm("encoder.norm_out", c), conv("encoder.conv_out", z, c, 1)
    conv("decoder.conv_in", ch * mult[-1], z, 3)
    for j in range(nres):
        res(f"decoder.mid.{j}", ch * mult[-1], ch * mult[-1])
    for i in range(n):
        c = ch * (mult[-1] if i == n - 1 else mult[i + 1])
        for j in range(nres):
            res(f"decoder.up.{i}.block.{j}", c, ch * mult[i])
            c = ch * mult[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample_conv", c, c, 3)
    norm("decoder.norm_out", ch * mult[0]), conv("decoder.conv_out", 3, ch * mult[0], 3)
    S["quantize.embedding.weight"] = (K, z)
    return S


def test_full_size_key_set_matches_upstream_layout():
    with torch.device("meta"):
        m = MaskGITVQGAN(MaskGITVQGANConfig())
    own = {k.replace("quantizer.", "quantize.", 1): tuple(v.shape) for k, v in m.state_dict().items()}
    assert own == maskgit_shapes()
    assert m.frozen_part_names() == ["encoder.", "quantizer."]       # no quant_conv in this model


def test_load_raw_state_dict_forward_round_trip(tmp_path):
    state = random_state(maskgit_shapes(ch=8, z=16, K=32))
    path = tmp_path / "maskgit-vqgan-imagenet-f16-256.bin"
    torch.save(state, path)                                            # a plain state dict, as released
    tok = load_external("maskgit-vqgan", path, image_size=32, norm_groups=4)
    assert tok.config.hidden_channels == 8 and tok.config.z_channels == 16 and tok.codebook_size == 32
    assert torch.equal(tok.codebook, state["quantize.embedding.weight"])    # not normalised
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    h = tok.encode_latents(x)
    assert torch.equal(h, tok.encoder((x + 1) / 2))                    # the model sees [0, 1] pixels
    ids = tok.encode(x)
    assert ids.shape == (2, 2, 2)
    e = state["quantize.embedding.weight"]
    ref = torch.cdist(h.permute(0, 2, 3, 1).reshape(-1, 16), e).argmin(1)
    assert torch.equal(ids.flatten(), ref)
    img = tok.decode(ids)
    assert img.shape == (2, 3, 32, 32)
    raw = tok.decoder(tok.lookup(ids))
    assert torch.allclose(tok.decode_codes(tok.lookup(ids)), raw * 2 - 1)    # [0, 1] -> [-1, 1]
    out = tok(x)
    assert out.recon.shape == (2, 3, 32, 32) and torch.equal(out.ids, ids)
    tok.save_pretrained(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert isinstance(back, MaskGITVQGAN) and torch.equal(back.decode(ids), img)
