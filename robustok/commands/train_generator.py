"""`robustok train-generator CONFIG [key=value ...] [--resume]`: train an AR or diffusion generator on a token store."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-generator", help="train a class-conditional generator on pretokenized data", description=__doc__
    )
    p.add_argument("config", help="YAML config, e.g. configs/generator/fmnist-ar.yaml")
    p.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. data.tokens=runs/tok/tokens run.dir=runs/gen"
    )
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in run.dir")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustok.generator.task import GeneratorTask, load_generator_config
    from robustok.outputs import check_disjoint
    from robustok.train.loop import train
    from robustok.validation import check_writable

    cfg = load_generator_config(args.config, args.overrides)
    check_writable(cfg.run.dir, "run.dir", "dir")
    check_disjoint(
        cfg.run.dir, {"data.tokens": cfg.data.tokens or None, "data.tokenizer": cfg.data.tokenizer}, "run.dir"
    )
    task = GeneratorTask(cfg)
    n = sum(p.numel() for p in task.model.parameters())
    print(
        f"{type(task.model).__name__} ({cfg.model.preset}, {n / 1e6:.2f}M parameters) on {len(task.dataset)} "
        f"entries of {cfg.data.tokens}"
    )
    out = train(task, cfg.run, cfg.train, cfg.data, full_config=cfg, resume=args.resume)
    print(f"generator saved to {out}")
    return 0
