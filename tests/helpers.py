"""Small builders shared by tests (tiny models and configs that train in seconds)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from robustok.config import load_config
from robustok.tokenizer.model import Tokenizer, TokenizerConfig
from robustok.tokenizer.train import TokenizerTrainConfig

TINY_MODEL = ["model.base_channels=8", "model.channel_mult=[1,2]", "model.hidden_dim=16", "model.codebook_size=64",
              "model.code_dim=4"]


def tiny_tokenizer(**kw) -> Tokenizer:
    cfg = dict(base_channels=8, channel_mult=[1, 2], hidden_dim=16, codebook_size=64, code_dim=4)
    cfg.update(kw)
    return Tokenizer(TokenizerConfig(**cfg))


def tiny_train_config(run_dir, *extra: str) -> TokenizerTrainConfig:
    overrides = [f"run.dir={run_dir}", "run.progress=false", "run.log_every=1", "run.sample_every=0",
                 "train.steps=4", "train.warmup_steps=1", "data.batch_size=8", *TINY_MODEL, *extra]
    return load_config(TokenizerTrainConfig, "configs/tokenizer/fmnist-robust.yaml", overrides)


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
