"""What several test files share: the checkout root, tiny models and configs that train in seconds, stand-in
weights in upstream layouts, and the Fashion-MNIST skip mark. Test modules import from here, never from each other."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustok.config import load_config
from robustok.data.fashion_mnist import find_dir
from robustok.errors import DataError
from robustok.generator.ar import ARConfig, ARGenerator
from robustok.hub import save_tensors
from robustok.losses.frozen_vit import FrozenViT
from robustok.tokenizer.model import Tokenizer, TokenizerConfig
from robustok.tokenizer.train import TokenizerTrainConfig

ROOT = Path(__file__).resolve().parents[1]  # the checkout: configs/, docs/, experiments/ are read from here

TINY_MODEL = ["model.base_channels=8", "model.channel_mult=[1,2]", "model.hidden_dim=16", "model.codebook_size=64",
              "model.code_dim=4"]


def tiny_tokenizer(**kw) -> Tokenizer:
    cfg = dict(base_channels=8, channel_mult=[1, 2], hidden_dim=16, codebook_size=64, code_dim=4)
    cfg.update(kw)
    return Tokenizer(TokenizerConfig(**cfg))


def tiny_train_config(run_dir, *extra: str) -> TokenizerTrainConfig:
    overrides = [f"run.dir={run_dir}", "run.progress=false", "run.log_every=1", "run.sample_every=0",
                 "train.steps=4", "train.warmup_steps=1", "data.batch_size=8", *TINY_MODEL, *extra]
    return load_config(TokenizerTrainConfig, ROOT / "configs/tokenizer/fmnist-robust.yaml", overrides)


def gray_class_folder(root: Path, counts: list[int], size: int = 16) -> Path:
    """`root/c<k>/<i>.png`: `counts[k]` random gray `size`x`size` images per class (numpy seed 0); returns root."""
    rng = np.random.default_rng(0)
    for c, n in enumerate(counts):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L").save(root / f"c{c}" / f"{i}.png")
    return root


def tiny16_tokenizer(bottleneck: str = "vq", seed: int = 0) -> Tokenizer:
    """A 16x16 gray tokenizer (K=32, 8x8 tokens) seeded with `seed`, for command-line tests on tiny images."""
    torch.manual_seed(seed)
    return Tokenizer(TokenizerConfig(image_size=16, channels=1, base_channels=8, channel_mult=[1, 2], hidden_dim=8,
                                     codebook_size=32, code_dim=4, bottleneck=bottleneck))


def _has_fmnist() -> bool:
    try:
        find_dir("test")
        return True
    except DataError:
        return False


needs_fmnist = pytest.mark.skipif(not _has_fmnist(), reason="Fashion-MNIST files not installed "
                                  "(apt-get install dataset-fashion-mnist)")


def random_ar(pos: str = "rope", random_order: bool = False, **kw) -> ARGenerator:
    """A float64 AR generator (K=48, 4x4 grid, 5 classes) with every weight drawn N(0, 0.3) under seed 0."""
    torch.manual_seed(0)
    cfg = ARConfig(vocab_size=48, grid=[4, 4], num_classes=5, dim=32, depth=2, heads=4, pos=pos,
                   random_order=random_order, **kw)
    m = ARGenerator(cfg).double().eval()
    for p in m.parameters():            # a random, non-trivial model (the head starts at zero)
        torch.nn.init.normal_(p, std=0.3)
    return m


def seeded(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with `seed`."""
    return torch.Generator().manual_seed(seed)


def tiny_ar(tok: Tokenizer) -> ARGenerator:
    """A one-layer AR generator over `tok`'s codes (8x8 grid), head drawn N(0, 0.5) under seed 0, in eval mode."""
    torch.manual_seed(0)
    g = ARGenerator(ARConfig(vocab_size=tok.codebook_size, grid=[8, 8], dim=32, depth=1, heads=2,
                             tokenizer_fingerprint=tok.fingerprint()))
    torch.nn.init.normal_(g.head.weight, std=0.5)  # a non-trivial distribution
    return g.eval()


def vit_standin(path: Path, image_size: int, patch: int, dim: int, depth: int, layer_scale: bool) -> Path:
    """A random-weight ViT saved with timm key names (DINO v1 files have no LayerScale keys)."""
    torch.manual_seed(0)
    net = FrozenViT(image_size, patch, dim, depth, 1, layer_scale=layer_scale)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    state = {k: v for k, v in net.state_dict().items() if layer_scale or ".ls" not in k}
    state["head.weight"] = torch.zeros(3, dim)          # extra keys are ignored
    save_tensors(state, path)
    return path


# Upstream state-dict layouts (key -> shape) for the adapters' tests.
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


TINY_LLAMAGEN = dict(ch=8, mult=(1, 1, 2, 2, 4), nres=2, z=16, K=64, d=8)


def random_state(shapes: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of `shapes` (norm weights near 1, `codebook_used` zero), seeded with `seed`."""
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
