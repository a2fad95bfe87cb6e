"""`robustok benchmark-tokenizers TOK TOK [TOK ...] --out DIR`: does pFID predict generation better than rFID?

The paper's Tables 7/8 as a tool. Each tokenizer gets the same budget: PSNR, rFID, pFID (15-cell grid) and codebook
usage on `--eval-data`; the same generator preset trained `--gen-steps` steps per seed on its pretokenized
`--train-data`; gFID without and with CFG, each from two sample sets (their difference: the noise floor), against
`--train-data`. Then, per codebook size K (pFID is comparable only at one K), Spearman and Pearson correlations of
rFID and of pFID with gFID, a bootstrap 95% interval of their difference, and how often each metric orders a pair
of tokenizers as gFID does (also on the pairs where the two disagree). Every step is cached in DIR: rerun the
same command to continue an interrupted benchmark. Writes DIR/results.json and DIR/scatter.png.
"""

from __future__ import annotations

import argparse
import json
import sys

from robustok.commands._input_args import add_workers_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark-tokenizers",
        help="rFID, pFID and gFID of several tokenizers, and which metric predicts gFID",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("tokenizers", nargs="+", help="tokenizer directories (ours or converted adapters)")
    p.add_argument("--out", required=True, help="benchmark directory (cache, results.json, scatter.png)")
    p.add_argument("--train-data", default="fashion-mnist:train", help="generator training images and gFID reference")
    p.add_argument("--eval-data", default="fashion-mnist:test", help="images for PSNR/rFID/pFID/usage")
    p.add_argument("--generator-config", default=None, help="generator YAML (default configs/generator/fmnist-ar.yaml)")
    p.add_argument(
        "--gen-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override of the generator config (repeatable), the same for every tokenizer",
    )
    p.add_argument("--gen-steps", type=int, default=1500, help="generator training steps (default 1500)")
    p.add_argument("--gen-seeds", default="0", help="comma list: one generator per seed and tokenizer (default 0)")
    p.add_argument("--pretok-images", type=int, default=60000, help="training images pretokenized (default 60000)")
    p.add_argument("--eval-images", type=int, default=2000, help="images for the tokenizer metrics (default 2000)")
    p.add_argument("--gen-images", type=int, default=2000, help="samples per gFID sample set (default 2000)")
    p.add_argument("--cfg", type=float, default=1.5, help="CFG scale of the guided sample sets (default 1.5)")
    p.add_argument("--features", default="fmnist", help="FID features: fmnist | inception | random")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals")
    p.add_argument(
        "--group-by-k",
        action="store_true",
        help="allow tokenizers of different codebook sizes; correlations are computed within each K",
    )
    p.add_argument("--fresh", action="store_true", help="ignore cached steps")
    p.add_argument("--json", default=None, help="also write results.json here")
    add_workers_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustok.errors import ConfigError
    from robustok.tokbench import BenchmarkSpec, run_benchmark
    from robustok.tokbench.report import table

    try:
        seeds = [int(s) for s in args.gen_seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--gen-seeds: expected a comma list of integers, got {args.gen_seeds!r}") from None
    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    spec = BenchmarkSpec(
        train_data=args.train_data,
        eval_data=args.eval_data,
        generator_config=args.generator_config,
        generator_overrides=list(args.gen_override),
        gen_steps=args.gen_steps,
        gen_seeds=seeds,
        pretok_images=args.pretok_images,
        eval_images=args.eval_images,
        gen_images=args.gen_images,
        cfg=args.cfg,
        features=args.features,
        bootstrap=args.bootstrap,
    )
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    result = run_benchmark(
        args.tokenizers, spec, args.out, group_by_k=args.group_by_k, fresh=args.fresh, log=log, workers=args.workers
    )
    print(table(result))
    if args.json:
        from robustok.hub import atomic_write_bytes

        atomic_write_bytes(args.json, json.dumps(result, indent=2, default=float).encode())
    return 0
