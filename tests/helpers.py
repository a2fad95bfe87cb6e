"""Small builders shared by tests (tiny models and configs that train in seconds)."""
from __future__ import annotations

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
