"""pFID: the delta rule, pFID(alpha=0) = rFID, growth with alpha, determinism, and the discrete-only check."""

import math

import pytest
import torch

from robustok import Tokenizer, TokenizerConfig
from robustok.errors import ConfigError
from robustok.metrics.features import RandomFeatures
from robustok.metrics.pfid import PFIDConfig, delta_triplet
from robustok.metrics.tokenizer_eval import evaluate_tokenizer


def test_delta_rule():
    assert delta_triplet(16384) == (200, 280, 360)
    assert delta_triplet(8192) == (100, 140, 180)
    assert delta_triplet(4096) == (50, 70, 90)
    assert delta_triplet(1024) == (10, 15, 20)
    assert delta_triplet(2048) == (23, 33, 43)  # 1/3 of the way from 1024 to 4096
    assert delta_triplet(12288) == (150, 210, 270)  # halfway between 8192 and 16384
    assert delta_triplet(512) == (5, 8, 10)  # 1024 triplet x K/1024
    assert delta_triplet(32768) == (400, 560, 720)  # 16384 triplet x K/16384
    assert delta_triplet(16) == (2, 2, 2)  # floor of 2 (delta 1 would perturb nothing)
    assert len(PFIDConfig().cells(4096)) == 15


def _images(n=48, seed=0):
    """Smooth synthetic gray images (sums of Gaussian blobs) in [-1, 1], (n, 1, 32, 32)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    out = torch.zeros(n, 1, 32, 32)
    for _ in range(3):
        cx, cy = torch.rand(n, 1, 1, generator=g) * 32, torch.rand(n, 1, 1, generator=g) * 32
        s = 3 + torch.rand(n, 1, 1, generator=g) * 6
        out[:, 0] += torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s**2))
    return (out / out.amax((2, 3), keepdim=True)) * 2 - 1


def _batches(x, bs=16):
    return [(x[i : i + bs], torch.zeros(len(x[i : i + bs]))) for i in range(0, len(x), bs)]


class PatchTokenizer(torch.nn.Module):
    """A transparent fake tokenizer: each 4x4 patch mean -> one of K levels; codes lie on an arc so that
    nearby codes are nearby gray levels. Perturbing tokens visibly degrades the image."""

    is_discrete = True

    def __init__(self, k=64):
        super().__init__()
        self.codebook_size = k
        angle = torch.linspace(0, math.pi / 2, k)
        self.register_buffer("codebook", torch.stack([angle.cos(), angle.sin()], 1))

    def encode(self, x):
        m = torch.nn.functional.avg_pool2d(x, 4)[:, 0]
        return ((m + 1) / 2 * (self.codebook_size - 1)).round().long().clamp(0, self.codebook_size - 1)

    def encode_latents(self, x):
        return self.codebook[self.encode(x)].permute(0, 3, 1, 2)

    def decode(self, ids):
        level = ids.float() / (self.codebook_size - 1) * 2 - 1
        return torch.nn.functional.interpolate(level[:, None], scale_factor=4, mode="nearest")


def test_pfid_zero_alpha_equals_rfid_and_grows_with_alpha():
    tok, feats = PatchTokenizer(), RandomFeatures()
    x = _images()
    cfg = PFIDConfig(alphas=(0.0, 0.3, 0.6, 0.9), deltas=(8,))
    res = evaluate_tokenizer(tok, _batches(x), ["rfid", "pfid"], feats, cfg)
    fids = [c["fid"] for c in res["pfid_grid"]]
    assert fids[0] == pytest.approx(res["rfid"], rel=1e-12)
    assert fids[1] < fids[2] < fids[3]
    assert res["pfid"] == pytest.approx(sum(fids) / 4)


def test_pfid_latent_neighbours_and_determinism():
    tok, feats = PatchTokenizer(), RandomFeatures()
    x = _images(32, seed=1)
    cfg = PFIDConfig(alphas=(0.5,), deltas=(4, 8), neighbours="latent", seed=3)
    a = evaluate_tokenizer(tok, _batches(x), ["pfid"], feats, cfg)
    b = evaluate_tokenizer(tok, _batches(x), ["pfid"], feats, cfg)
    assert a["pfid"] == b["pfid"] and a["pfid_grid"] == b["pfid_grid"]
    c = evaluate_tokenizer(tok, _batches(x), ["pfid"], feats, PFIDConfig((0.5,), (4, 8), "latent", seed=4))
    assert c["pfid"] != a["pfid"]


def _real_tokenizer(**kw):
    torch.manual_seed(0)
    return Tokenizer(
        TokenizerConfig(codebook_size=32, base_channels=8, hidden_dim=16, channel_mult=[1, 2], **kw)
    ).eval()


def test_real_tokenizer_all_metrics():
    tok, feats = _real_tokenizer(), RandomFeatures()
    x = _images(24, seed=2)
    cfg = PFIDConfig(alphas=(0.0, 0.9), deltas=(4,))
    res = evaluate_tokenizer(tok, _batches(x, 8), ["psnr", "ssim", "rfid", "pfid", "usage"], feats, cfg)
    assert res["num_images"] == 24 and res["features"] == "random"
    assert res["pfid_grid"][0]["fid"] == pytest.approx(res["rfid"], rel=1e-12)
    assert 0 < res["codebook_usage"] <= 1 and 1 <= res["perplexity"] <= 32
    assert set(res) >= {"psnr", "ssim", "rfid", "pfid", "pfid_grid", "codebook_usage", "perplexity"}


def test_continuous_tokenizer_has_no_pfid():
    tok = _real_tokenizer(bottleneck="kl")
    with pytest.raises(ConfigError, match="discrete tokenizer"):
        evaluate_tokenizer(tok, _batches(_images(8)), ["pfid"], RandomFeatures())
    res = evaluate_tokenizer(tok, _batches(_images(8)), ["psnr", "rfid"], RandomFeatures())
    assert "rfid" in res and "pfid" not in res


def test_bad_pfid_grid():
    with pytest.raises(ValueError, match="alphas"):
        PFIDConfig(alphas=(1.5,)).cells(1024)
    with pytest.raises(ValueError, match="neighbours"):
        PFIDConfig(neighbours="both").cells(1024)
