"""LlamaGen VQ-16 adapter: upstream key names/shapes, loading `vq_ds16_c2i.pt`-style files, round trip."""
from __future__ import annotations

import argparse

import pytest
import torch

from robustok.adapters import LlamaGenVQ, LlamaGenVQConfig, load_external, load_tokenizer
from robustok.errors import CheckpointError


def llamagen_shapes(ch=128, mult=(1, 1, 2, 2, 4), nres=2, z=256, K=16384, d=8) -> dict[str, tuple]:
    """Key -> shape of LlamaGen's VQModel state dict, written out from vq_model.py's layer layout."""
    S: dict[str, tuple] = {}

    def conv(n, co, ci, k):
        S[f"{n}.weight"], S[f"{n}.bias"] = (co, ci, k, k), (co,)

    def norm(n, c):
        S[f"{n}.weight"], S[f"{n}.bias"] = (c,), (c,)

    def res(p, ci, co):
        norm(f"{p}.norm1", ci), conv(f"{p}.conv1", co, ci, 3), norm(f"{p}.norm2", co), conv(f"{p}.conv2", co, co, 3)
        if ci != co:
            conv(f"{p}.nin_shortcut", co, ci, 1)

    def attn(p, c):
        norm(f"{p}.norm", c)
        for n in ("q", "k", "v", "proj_out"):
            conv(f"{p}.{n}", c, c, 1)

    n = len(mult)
    conv("encoder.conv_in", ch, 3, 3)
    c = ch
    for i, m in enumerate(mult):
        for j in range(nres):
            res(f"encoder.conv_blocks.{i}.res.{j}", c, ch * m)
            c = ch * m
            if i == n - 1:
                attn(f"encoder.conv_blocks.{i}.attn.{j}", c)
        if i != n - 1:
            conv(f"encoder.conv_blocks.{i}.downsample.conv", c, c, 3)
    res("encoder.mid.0", c, c), attn("encoder.mid.1", c), res("encoder.mid.2", c, c)
    norm("encoder.norm_out", c), conv("encoder.conv_out", z, c, 3)
    c = ch * mult[-1]
    conv("decoder.conv_in", c, z, 3)
    res("decoder.mid.0", c, c), attn("decoder.mid.1", c), res("decoder.mid.2", c, c)
    for idx, i in enumerate(reversed(range(n))):
        for j in range(nres + 1):
            res(f"decoder.conv_blocks.{idx}.res.{j}", c, ch * mult[i])
            c = ch * mult[i]
            if i == n - 1:
                attn(f"decoder.conv_blocks.{idx}.attn.{j}", c)
        if i != 0:
            conv(f"decoder.conv_blocks.{idx}.upsample.conv", c, c, 3)
    norm("decoder.norm_out", c), conv("decoder.conv_out", 3, c, 3)
    conv("quant_conv", d, z, 1), conv("post_quant_conv", z, d, 1)
    S["quantize.embedding.weight"] = (K, d)
    S["quantize.codebook_used"] = (65536,)
    return S


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convolutions are far faster single-threaded on a shared CPU; restore the setting afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = dict(ch=8, mult=(1, 1, 2, 2, 4), nres=2, z=16, K=64, d=8)


def random_state(shapes: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in shapes.items():
        if k.endswith("codebook_used"):
            out[k] = torch.zeros(s)
        elif "norm" in k.split(".")[-2] and k.endswith(".weight"):
            out[k] = 1 + 0.1 * torch.randn(s, generator=g)
        else:
            out[k] = 0.1 * torch.randn(s, generator=g)
    return out


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("llamagen") / "vq_ds16_c2i.pt"
    state = random_state(llamagen_shapes(**TINY))
    torch.save({"model": state, "steps": 10, "args": argparse.Namespace(vq_model="VQ-16", image_size=32)}, path)
    return path, state


def test_full_size_key_set_matches_upstream_layout():
    with torch.device("meta"):
        m = LlamaGenVQ(LlamaGenVQConfig())
    own = {k.replace("quantizer.", "quantize.", 1): tuple(v.shape) for k, v in m.state_dict().items()}
    expected = llamagen_shapes()
    expected.pop("quantize.codebook_used")
    assert own == expected
    assert abs(sum(p.numel() for p in m.parameters()) / 1e6 - 72) < 0.5      # LlamaGen README: VQ-16 72M


def test_load_forward_and_round_trip(ckpt, tmp_path):
    path, state = ckpt
    tok = load_external("llamagen-vq16", path, image_size=32, norm_groups=4)
    assert not tok.training and tok.is_discrete and tok.grid_size == 2 and tok.codebook_size == 64
    assert tok.config.base_channels == 8 and tok.config.channel_mult == [1, 1, 2, 2, 4]    # read off the shapes
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
    with pytest.raises(CheckpointError, match="shape mismatch"):     # config says 16 z channels, file has 16 -> 32
        load_external("llamagen-vq16", ckpt[0], norm_groups=4, image_size=32, z_channels=32)
