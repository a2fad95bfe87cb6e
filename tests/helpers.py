"""What several test files share: the checkout root, tiny models and configs that train in seconds, stand-in
weights in upstream layouts, and the Fashion-MNIST skip mark. Test modules import from here, never from each other."""

from __future__ import annotations

import shutil
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

TINY_MODEL = [
    "model.base_channels=8",
    "model.channel_mult=[1,2]",
    "model.hidden_dim=16",
    "model.codebook_size=64",
    "model.code_dim=4",
]


def tiny_tokenizer(**kw) -> Tokenizer:
    cfg = dict(base_channels=8, channel_mult=[1, 2], hidden_dim=16, codebook_size=64, code_dim=4)
    cfg.update(kw)
    return Tokenizer(TokenizerConfig(**cfg))


def tiny_train_config(run_dir, *extra: str) -> TokenizerTrainConfig:
    overrides = [
        f"run.dir={run_dir}",
        "run.progress=false",
        "run.log_every=1",
        "run.sample_every=0",
        "train.steps=4",
        "train.warmup_steps=1",
        "data.batch_size=8",
        *TINY_MODEL,
        *extra,
    ]
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
    return Tokenizer(
        TokenizerConfig(
            image_size=16,
            channels=1,
            base_channels=8,
            channel_mult=[1, 2],
            hidden_dim=8,
            codebook_size=32,
            code_dim=4,
            bottleneck=bottleneck,
        )
    )


def _has_fmnist() -> bool:
    try:
        find_dir("test")
        return True
    except DataError:
        return False


needs_fmnist = pytest.mark.skipif(
    not _has_fmnist(), reason="Fashion-MNIST files not installed (apt-get install dataset-fashion-mnist)"
)


def random_ar(pos: str = "rope", random_order: bool = False, **kw) -> ARGenerator:
    """A float64 AR generator (K=48, 4x4 grid, 5 classes) with every weight drawn N(0, 0.3) under seed 0."""
    torch.manual_seed(0)
    cfg = ARConfig(
        vocab_size=48, grid=[4, 4], num_classes=5, dim=32, depth=2, heads=4, pos=pos, random_order=random_order, **kw
    )
    m = ARGenerator(cfg).double().eval()
    for p in m.parameters():  # a random, non-trivial model (the head starts at zero)
        torch.nn.init.normal_(p, std=0.3)
    return m


def seeded(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with `seed`."""
    return torch.Generator().manual_seed(seed)


def tiny_ar(tok: Tokenizer) -> ARGenerator:
    """A one-layer AR generator over `tok`'s codes (8x8 grid), head drawn N(0, 0.5) under seed 0, in eval mode."""
    torch.manual_seed(0)
    g = ARGenerator(
        ARConfig(
            vocab_size=tok.codebook_size, grid=[8, 8], dim=32, depth=1, heads=2, tokenizer_fingerprint=tok.fingerprint()
        )
    )
    torch.nn.init.normal_(g.head.weight, std=0.5)  # a non-trivial distribution
    return g.eval()


def vit_standin(path: Path, image_size: int, patch: int, dim: int, depth: int, layer_scale: bool) -> Path:
    """A random-weight ViT saved with timm key names (DINO v1 files have no LayerScale keys)."""
    torch.manual_seed(0)
    net = FrozenViT(image_size, patch, dim, depth, 1, layer_scale=layer_scale)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    state = {k: v for k, v in net.state_dict().items() if layer_scale or ".ls" not in k}
    state["head.weight"] = torch.zeros(3, dim)  # extra keys are ignored
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
            conv(f"{p}.nin_shortcut", co, co, 1, False)  # maps the block output (out -> out)

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


# --- the RobusTok release's tokenizer (tests/test_adapters_robustok.py, tests/released_standins.py) ---
def vit_shapes(p: str, W: int, depth: int, n: int, patch: int | None) -> dict[str, tuple]:
    """timm VisionTransformer (DINOv2 flavour: LayerScale, qkv bias, no head) key -> shape."""
    S = {f"{p}.cls_token": (1, 1, W), f"{p}.pos_embed": (1, n + 1, W), f"{p}.norm.weight": (W,), f"{p}.norm.bias": (W,)}
    if patch:
        S[f"{p}.patch_embed.proj.weight"], S[f"{p}.patch_embed.proj.bias"] = (W, 3, patch, patch), (W,)
    for i in range(depth):
        b = f"{p}.blocks.{i}"
        S.update(
            {
                f"{b}.norm1.weight": (W,),
                f"{b}.norm1.bias": (W,),
                f"{b}.attn.qkv.weight": (3 * W, W),
                f"{b}.attn.qkv.bias": (3 * W,),
                f"{b}.attn.proj.weight": (W, W),
                f"{b}.attn.proj.bias": (W,),
                f"{b}.ls1.gamma": (W,),
                f"{b}.norm2.weight": (W,),
                f"{b}.norm2.bias": (W,),
                f"{b}.mlp.fc1.weight": (4 * W, W),
                f"{b}.mlp.fc1.bias": (4 * W,),
                f"{b}.mlp.fc2.weight": (W, 4 * W),
                f"{b}.mlp.fc2.bias": (W,),
                f"{b}.ls2.gamma": (W,),
            }
        )
    return S


def robustok_shapes(W=768, depth=12, image=256, patch=16, K=4096, d=64, teacher=True) -> dict[str, tuple]:
    """Key -> shape of the release VQModel state dict (xqgan_model.py + dino_enc/dinov2.py, main-train.yaml)."""
    n = (image // patch) ** 2
    S = {
        "encoder.latent_tokens": (1, n, W),
        "encoder.lvl_embed.weight": (2, W),
        "encoder.lvl1LC": (1, 2 * n + 1),
        "decoder.mask_token": (1, 1, W),
        "decoder.lvl_embed.weight": (2, W),
        "decoder.lvl1LC": (1, 2 * n + 2),
        "decoder.to_pixel.model.weight": (patch * patch * 3, W),
        "decoder.to_pixel.model.bias": (patch * patch * 3,),
        "quant_conv.weight": (d, W, 1, 1),
        "quant_conv.bias": (d,),
        "post_quant_conv.weight": (W, d, 1, 1),
        "post_quant_conv.bias": (W,),
        "quantize.embedding.weight": (K, d),
        "quantize.ema_vocab_hit_SV": (K,),
    }
    S.update(vit_shapes("encoder.model", W, depth, n, patch))
    S.update(vit_shapes("decoder.model", W, depth, n, None))  # patch embedding deleted in the decoder
    if teacher:
        S.update(vit_shapes("semantic_model", W, depth, n, patch))
    return S


def levels(zeros: int, ones: int) -> torch.Tensor:
    return torch.cat([torch.zeros(zeros, dtype=torch.long), torch.ones(ones, dtype=torch.long)])[None]


def tiny_state(seed=0):
    s = random_state(robustok_shapes(W=32, depth=2, image=32, patch=8, K=64, d=8), seed)
    s["encoder.lvl1LC"], s["decoder.lvl1LC"] = levels(17, 16), levels(17, 17)
    s["quantize.ema_vocab_hit_SV"] = torch.rand(64)
    return s


REV = "0123456789abcdef0123456789abcdef01234567"  # the snapshot revision of the Hub caches tests build


def cached_repo(cache: Path, repo_id: str, files: dict[str, Path], rev: str = REV) -> Path:
    """Put `files` (path in repo -> local file) into `cache` as huggingface_hub lays out a downloaded snapshot."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    for name, src in files.items():
        dst = root / "snapshots" / rev / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(rev)
    return root / "snapshots" / rev
