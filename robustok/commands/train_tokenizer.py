"""`robustok train-tokenizer CONFIG [key=value ...] [--resume]`: stage 1, main training with latent perturbation."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-tokenizer",
        help="main-train an image tokenizer (optionally with latent perturbation)",
        description=__doc__,
    )
    p.add_argument("config", help="YAML config, e.g. configs/tokenizer/fmnist-robust.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=2000 run.dir=runs/tok")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in run.dir")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustok.config import load_config
    from robustok.data.spec import data_path
    from robustok.outputs import check_disjoint
    from robustok.tokenizer.train import TokenizerTask, TokenizerTrainConfig
    from robustok.train.loop import train
    from robustok.validation import check_writable

    cfg = load_config(TokenizerTrainConfig, args.config, args.overrides)
    check_writable(cfg.run.dir, "run.dir", "dir")
    check_disjoint(
        cfg.run.dir, {"data.train": data_path(cfg.data.train), "data.val": data_path(cfg.data.val)}, "run.dir"
    )
    task = TokenizerTask(cfg)
    out = train(task, cfg.run, cfg.train, cfg.data, full_config=cfg, resume=args.resume)
    print(f"tokenizer saved to {out}")
    return 0
