"""Static-cache AR decoder (CUDA graphs on a GPU, the same steps eagerly on the CPU) == the dynamic KV cache."""

import pytest
import torch

from robustok.errors import ConfigError
from robustok.generator.decode import _DECODERS, release_static_decoder, static_decoder
from robustok.generator.guidance import DrawRule, draw, uniforms
from tests.helpers import random_ar, seeded

SETTINGS = {
    "plain": dict(),
    "cfg-topk": dict(cfg=3.0, temperature=1.1, top_k=30),
    "cfg-power-topp": dict(cfg=2.0, cfg_schedule="power", cfg_power=1.5, temperature=0.9, top_p=0.9),
    "greedy-linear": dict(cfg=1.5, cfg_schedule="linear", temperature=0.0),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
@pytest.mark.parametrize("pos,random_order,adaln", [("rope", False, True), ("learned", True, False)])
def test_static_equals_dynamic(name, pos, random_order, adaln):
    m = random_ar(pos, random_order, adaln=adaln)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 2])  # 5 = null class
    kw = SETTINGS[name]
    for seed in (1, 2):  # the second call reuses the decoder's buffers
        want = m.sample(labels, generator=seeded(seed), **kw)
        got = m.sample(labels, generator=seeded(seed), static_cache=True, **kw)
        assert torch.equal(got, want)
    assert len({id(d) for d in _DECODERS.values() if d is _DECODERS.get(m)}) == 1


def test_static_teacher_forcing_equals_dynamic():
    m = random_ar(adaln=True)
    labels = torch.tensor([0, 3, 4, 1])
    real = torch.randint(0, 48, (4, 16), generator=seeded(9))
    mask = torch.rand(4, 16, generator=seeded(10)) < 0.5
    kw = dict(cfg=2.0, temperature=1.2, top_k=20, keep_mask=mask, prefix_tokens=real)
    want = m.sample(labels, generator=seeded(6), **kw)
    got = m.sample(labels, generator=seeded(6), static_cache=True, **kw)
    assert torch.equal(got, want)
    assert torch.equal(got.flatten(1)[mask], real[mask])
    # the same decoder serves an untaught call after a taught one only through a rebuild, still equal
    assert torch.equal(m.sample(labels, generator=seeded(7), static_cache=True), m.sample(labels, generator=seeded(7)))


def test_smaller_batch_runs_padded_in_the_same_decoder():
    m = random_ar(adaln=True)
    kw = dict(cfg=2.0, top_k=25)
    m.sample(torch.arange(6) % 5, generator=seeded(0), static_cache=True, **kw)
    dec = _DECODERS[m]
    labels = torch.tensor([4, 0, 2])
    got = m.sample(labels, generator=seeded(3), static_cache=True, **kw)
    assert _DECODERS[m] is dec and dec.capacity == 6
    assert torch.equal(got, m.sample(labels, generator=seeded(3), **kw))
    m.sample(torch.arange(8) % 5, generator=seeded(0), static_cache=True, **kw)  # larger: a new decoder
    assert _DECODERS[m] is not dec and _DECODERS[m].capacity == 8
    release_static_decoder(m)
    assert m not in _DECODERS


def test_decoder_rebuilt_when_settings_or_weights_change():
    m = random_ar()
    a = static_decoder(m, 4, DrawRule(cfg=2.0), False)
    assert static_decoder(m, 4, DrawRule(cfg=2.0), False) is a
    assert static_decoder(m, 4, DrawRule(cfg=2.5), False) is not a
    b = static_decoder(m, 4, DrawRule(cfg=2.5), False)
    m.float()  # new parameter storage: graphs would read stale memory
    c = static_decoder(m, 4, DrawRule(cfg=2.5), False)
    assert c is not b
    with torch.inference_mode():  # its buffers could not be updated outside it
        assert static_decoder(m, 4, DrawRule(cfg=2.5), False) is not c


def test_static_sampling_in_and_out_of_inference_mode():
    m = random_ar()
    labels = torch.tensor([1, 2])
    with torch.inference_mode():
        a = m.sample(labels, generator=seeded(5), static_cache=True)
    assert torch.equal(m.sample(labels, generator=seeded(5), static_cache=True), a)


def test_uniforms_are_the_numbers_draw_takes():
    logits = torch.randn(5, 7, generator=seeded(0))
    g1, g2 = seeded(4), seeded(4)
    u = uniforms(g1, 3, 5, torch.device("cpu"))
    for s in range(3):
        assert torch.equal(draw(logits, g2), draw(logits, None, u=u[s]))
    assert torch.equal(torch.rand(2, generator=g1), torch.rand(2, generator=g2))  # same generator state after


def test_static_errors():
    m = random_ar()
    with pytest.raises(ConfigError, match="use_cache"):
        m.sample(torch.tensor([0]), static_cache=True, use_cache=False)
    with pytest.raises(ConfigError, match="CUDA"):
        static_decoder(m, 2, DrawRule(), False, graphs=True)
    drop = random_ar(dropout=0.1).train()
    with pytest.raises(ConfigError, match="eval"):
        drop.sample(torch.tensor([0]), static_cache=True)


def test_adaln_modulation_computed_once_per_call(monkeypatch):
    m = random_ar(adaln=True)
    calls = []
    blk = m.blocks[0]
    orig = blk.modulation
    monkeypatch.setattr(blk, "modulation", lambda c: calls.append(1) or orig(c))
    m.sample(torch.tensor([0, 1]), generator=seeded())
    assert len(calls) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_four_kernel_rope_gives_the_textbook_rotation_exactly(dtype):
    from robustok.generator.layers import apply_rope, interleave_rope, rope_2d

    cos, sin = (t.float() for t in rope_2d(torch.randint(0, 9, (17, 2), generator=seeded(0)), 16))
    x = (torch.randn(2, 3, 17, 16, generator=seeded(1)) * 3).to(dtype)
    a, b = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos.to(dtype), sin.to(dtype)
    textbook = torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)
    assert torch.equal(apply_rope(x, *interleave_rope(cos, sin)), textbook)
