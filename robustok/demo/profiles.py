"""Demo profiles: the budgets of each stage.

`default` fits about 30 minutes on 2 CPU cores (tokenizers near, not at, their plateau); `full` is the
longer run (about 1 h 15 min) closer to convergence; `quick` is a smoke run whose numbers mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DemoProfile:
    name: str
    tok_steps: int = 2400  # main training steps per tokenizer (configs/tokenizer/fmnist-*.yaml)
    tok_checkpoints: list[int] = field(default_factory=lambda: [800, 1600, 2400])  # points for the correlations
    tok_overrides: list[str] = field(default_factory=list)
    gen_steps: int = 1500  # AR generator steps per tokenizer point
    gen_overrides: list[str] = field(default_factory=list)
    pretok_images: int = 60000  # training images pretokenized per point
    eval_images: int = 2000  # images for PSNR/SSIM/rFID/pFID (fashion-mnist:test)
    gen_images: int = 2000  # samples per gFID (and reference images)
    features: str = "fmnist"
    cfg: float = 1.5  # CFG scale for sampling and pairs
    sigma: float = 0.9  # preservation ratio of post-training pairs
    num_pairs: int = 8000
    post_steps: int = 300
    post_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    post_overrides: list[str] = field(default_factory=list)


QUICK_MODEL = [
    "model.base_channels=8",
    "model.hidden_dim=16",
    "model.codebook_size=64",
    "model.code_dim=4",
    "data.batch_size=16",
    "loss.disc_start=10",
    "perturb.delta=4",
]

PROFILES = {
    "full": DemoProfile("full"),
    "default": DemoProfile(
        "default",
        tok_steps=1200,
        tok_checkpoints=[400, 800, 1200],
        tok_overrides=["loss.disc_start=600"],
        gen_steps=350,
        pretok_images=15000,
        eval_images=1000,
        gen_images=1000,
        num_pairs=4000,
        post_steps=150,
        post_seeds=[0, 1, 2],
    ),
    "quick": DemoProfile(
        "quick",
        tok_steps=24,
        tok_checkpoints=[8, 16, 24],
        tok_overrides=QUICK_MODEL,
        gen_steps=20,
        gen_overrides=["data.batch_size=16", "model.dim=32", "model.depth=1", "model.heads=2"],
        pretok_images=256,
        eval_images=64,
        gen_images=64,
        features="random",
        num_pairs=48,
        post_steps=6,
        post_seeds=[0],
        post_overrides=["data.batch_size=16"],
    ),
}
