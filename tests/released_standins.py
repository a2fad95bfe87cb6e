"""Tiny random stand-ins for released generator files and their tokenizers, in the upstream key names and layouts.

    python tests/released_standins.py OUT_DIR

writes, under OUT_DIR, files named as the releases name them (random values, tiny sizes):
- `llamagen/vq_ds16_c2i.pt` (LlamaGen VQ-16, K = 64, 64-px images: a 4x4 grid; convert with
  `--set norm_groups=4`) and `llamagen/c2i_B_256.pt`
  (LlamaGen GPT c2i: `{"model", "steps", "args"}`, width 32, 2 layers; convert with `--set heads=2`);
- `rar/maskgit-vqgan-imagenet-f16-256.bin` (MaskGIT VQGAN, K = 32, 64 px; convert with `--set norm_groups=4`)
  and `rar/rar_b.bin` (RAR: a bare state dict, width 32, 2 layers, 2 heads);
- `robustok/main-train.pt` (RobusTok release tokenizer, K = 64, 32 px: 4x4 grid; convert with `--set heads=2`)
  and `robustok/rar_b.bin` (RAR over its 64 codes).
- `images/` (NUM_CLASSES class folders of 64-px random RGB PNGs: the real images of post-train-data / diagnose).
All generators are class-conditional over `NUM_CLASSES` classes. The shapes follow the upstream modules:
LlamaGen `autoregressive/models/gpt.py`, 1d-tokenizer `modeling/rar.py` (see robustok.generator.llamagen_gpt/rar).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `tests.` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import TINY_LLAMAGEN as VQ_TINY  # noqa: E402
from tests.helpers import llamagen_shapes, maskgit_shapes, random_state  # noqa: E402
from tests.helpers import tiny_state as robustok_tokenizer_state  # noqa: E402

NUM_CLASSES = 10


def llamagen_gpt_shapes(
    D: int = 32, depth: int = 2, F: int = 48, K: int = 64, C: int = NUM_CLASSES
) -> dict[str, tuple]:
    """Key -> shape of a LlamaGen GPT c2i state dict (no biases; class table with the null row)."""
    S = {
        "tok_embeddings.weight": (K, D),
        "cls_embedding.embedding_table.weight": (C + 1, D),
        "norm.weight": (D,),
        "output.weight": (K, D),
    }
    for i in range(depth):
        p = f"layers.{i}."
        S.update(
            {
                p + "attention.wqkv.weight": (3 * D, D),
                p + "attention.wo.weight": (D, D),
                p + "feed_forward.w1.weight": (F, D),
                p + "feed_forward.w3.weight": (F, D),
                p + "feed_forward.w2.weight": (D, F),
                p + "attention_norm.weight": (D,),
                p + "ffn_norm.weight": (D,),
            }
        )
    return S


def rar_shapes(
    D: int = 32, depth: int = 2, heads: int = 2, mlp: int = 64, K: int = 32, C: int = NUM_CLASSES, L: int = 16
) -> dict[str, tuple]:
    """Key -> shape of a RAR state dict (modeling/rar.py: tables of L + 1024 / L + 100 rows)."""
    dh = D // heads
    S = {
        "cls_token": (1, 1, D),
        "embeddings.weight": (K + 1 + C + 1, D),
        "pos_embed": (1, L + 1024, D),
        "target_aware_pos_embed": (1, L + 1024, D),
        "timesteps_embeddings": (1, L + 100, D),
        "adaln_before_head.adaLN_modulation.1.weight": (2 * D, D),
        "adaln_before_head.adaLN_modulation.1.bias": (2 * D,),
        "lm_head.weight": (K, D),
        "lm_head.bias": (K,),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        S.update(
            {
                p + "norm1.weight": (D,),
                p + "norm1.bias": (D,),
                p + "norm2.weight": (D,),
                p + "norm2.bias": (D,),
                p + "attn.qkv.weight": (3 * D, D),
                p + "attn.qkv.bias": (3 * D,),
                p + "attn.q_norm.weight": (dh,),
                p + "attn.q_norm.bias": (dh,),
                p + "attn.k_norm.weight": (dh,),
                p + "attn.k_norm.bias": (dh,),
                p + "attn.proj.weight": (D, D),
                p + "attn.proj.bias": (D,),
                p + "mlp.fc1.weight": (mlp, D),
                p + "mlp.fc1.bias": (mlp,),
                p + "mlp.fc2.weight": (D, mlp),
                p + "mlp.fc2.bias": (D,),
                p + "adaLN_modulation.1.weight": (6 * D, D),
                p + "adaLN_modulation.1.bias": (6 * D,),
            }
        )
    return S


def llamagen_gpt_state(seed: int = 0, **sizes) -> dict[str, torch.Tensor]:
    return random_state(llamagen_gpt_shapes(**sizes), seed)


def rar_state(seed: int = 0, **sizes) -> dict[str, torch.Tensor]:
    """Random RAR weights (norm gains near 1); tables and embeddings larger (0.3) so positions and classes matter."""
    shapes = rar_shapes(**sizes)
    tables = {k: shapes.pop(k) for k in ("cls_token", "pos_embed", "target_aware_pos_embed", "timesteps_embeddings")}
    s = random_state(shapes, seed)
    g = torch.Generator().manual_seed(seed + 1000)
    s.update({k: 0.3 * torch.randn(shape, generator=g) for k, shape in tables.items()})
    s["embeddings.weight"] = s["embeddings.weight"] * 3
    return s


def write_standins(out: str | Path) -> dict[str, Path]:
    """Write every stand-in file under `out`; returns name -> path."""
    out = Path(out)
    files = {
        "llamagen-vq": out / "llamagen" / "vq_ds16_c2i.pt",
        "llamagen-gpt": out / "llamagen" / "c2i_B_256.pt",
        "maskgit": out / "rar" / "maskgit-vqgan-imagenet-f16-256.bin",
        "rar": out / "rar" / "rar_b.bin",
        "robustok": out / "robustok" / "main-train.pt",
        "robustok-rar": out / "robustok" / "rar_b.bin",
    }
    for f in files.values():
        f.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model": random_state(llamagen_shapes(**VQ_TINY)),
            "steps": 10,
            "args": argparse.Namespace(vq_model="VQ-16", image_size=64),
        },
        files["llamagen-vq"],
    )
    torch.save(
        {
            "model": llamagen_gpt_state(0, K=VQ_TINY["K"]),
            "steps": 10,
            "args": argparse.Namespace(gpt_model="GPT-B", image_size=256),
        },
        files["llamagen-gpt"],
    )
    torch.save(random_state(maskgit_shapes(ch=8, z=16, K=32)), files["maskgit"])
    torch.save(rar_state(1, K=32, L=16), files["rar"])
    torch.save(
        {
            "model": robustok_tokenizer_state(0),
            "ema": robustok_tokenizer_state(1),
            "steps": 5,
            "args": argparse.Namespace(ema=True),
        },
        files["robustok"],
    )
    torch.save(rar_state(2, K=64, L=16), files["robustok-rar"])
    files["images"] = image_folder(out / "images", 64)
    return files


def image_folder(root: Path, size: int, per_class: int = 2) -> Path:
    """NUM_CLASSES class folders `c00`.. of `per_class` random RGB PNGs."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(NUM_CLASSES):
        d = root / f"c{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


# the `robustok convert` commands for the stand-ins (tokenizer first), as a user runs them on the real files
CONVERT = {
    "llamagen": [
        [
            "convert",
            "llamagen-vq16",
            "{d}/llamagen/vq_ds16_c2i.pt",
            "--image-size",
            "64",
            "--set",
            "norm_groups=4",
            "--out",
            "{o}/llamagen-vq16",
        ],
        [
            "convert",
            "llamagen-gpt",
            "{d}/llamagen/c2i_B_256.pt",
            "--tokenizer",
            "{o}/llamagen-vq16",
            "--set",
            "heads=2",
            "--out",
            "{o}/llamagen-gpt-b",
        ],
    ],
    "rar": [
        [
            "convert",
            "maskgit-vqgan",
            "{d}/rar/maskgit-vqgan-imagenet-f16-256.bin",
            "--image-size",
            "64",
            "--set",
            "norm_groups=4",
            "--out",
            "{o}/maskgit-vqgan",
        ],
        ["convert", "rar", "{d}/rar/rar_b.bin", "--tokenizer", "{o}/maskgit-vqgan", "--out", "{o}/rar-b"],
    ],
    "robustok": [
        ["convert", "robustok-release", "{d}/robustok/main-train.pt", "--set", "heads=2", "--out", "{o}/robustok-tok"],
        [
            "convert",
            "robustok-rar",
            "{d}/robustok/rar_b.bin",
            "--tokenizer",
            "{o}/robustok-tok",
            "--out",
            "{o}/robustok-rar-b",
        ],
    ],
}


if __name__ == "__main__":
    for name, path in write_standins(sys.argv[1] if len(sys.argv) > 1 else "standins").items():
        print(f"{name}: {path}")
