"""`robustok diagnose GENERATOR --tokenizer TOK`: will post-training pay for this tokenizer and generator?

Measures how far the generator's tokens are from real ones, per CFG scale, next to the real-vs-real floor (two
halves of the real images): share of tokens and of horizontal/vertical token bigrams never seen in real data,
mean per-position Jensen-Shannon divergence of the token histograms, share of tokens an encode(decode(ids)) round
trip through uint8 images changes (relative latent change for continuous tokenizers), sharpness (variance of the
Laplacian), mean intensity and contrast of the decoded images, and (with --features) gFID of the samples and rFID
of the tokenizer on the same real images. Ends with a plain-language estimate from the gFID/rFID ratio and the
post-training runs measured so far (see docs/studies.md).
"""

from __future__ import annotations

import argparse
import json
import sys

from robustok.commands._input_args import add_workers_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagnose",
        help="how far generated tokens are from real ones; will post-training pay?",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("generator", help="generator directory (runs/gen/generator)")
    p.add_argument("--tokenizer", required=True, help="the tokenizer the generator was trained on")
    p.add_argument("--data", default="fashion-mnist:train", help="real images (default fashion-mnist:train)")
    p.add_argument("--num-samples", type=int, default=1000, help="generated samples per CFG scale (real: twice)")
    p.add_argument("--cfg", default="1.5", help="comma list of CFG scales (e.g. 1.5,4,6)")
    p.add_argument("--cfg-schedule", default="constant", help="constant | linear | power (AR)")
    p.add_argument("--cfg-power", type=float, default=1.0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--features", default="fmnist", help="FID features: fmnist | inception | random | none")
    p.add_argument("--inception-weights", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results here")
    add_workers_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustok.data import eval_batches
    from robustok.errors import ConfigError
    from robustok.generator import load_generator
    from robustok.generator.guidance import check_guidance
    from robustok.generator.options import DrawOptions
    from robustok.metrics.features import get_feature_net
    from robustok.posttrain.diagnostics import describe_rows, diagnose
    from robustok.tokenizer.loading import load_tokenizer

    if args.num_samples < 2:
        raise ConfigError(f"--num-samples must be >= 2, got {args.num_samples}")
    try:
        cfgs = [float(c) for c in args.cfg.split(",") if c.strip()]
    except ValueError:
        raise ConfigError(f"--cfg: expected a comma list of numbers, got {args.cfg!r}") from None
    if not cfgs:
        raise ConfigError("--cfg: give at least one CFG scale")
    for c in cfgs:
        check_guidance(c, args.cfg_schedule, args.cfg_power)
    if args.temperature <= 0:
        raise ConfigError(f"--temperature must be > 0, got {args.temperature}")
    gen, tok = load_generator(args.generator).eval(), load_tokenizer(args.tokenizer)
    features = (
        None
        if args.features == "none"
        else get_feature_net(
            args.features, inception_path=args.inception_weights, log=lambda m: print(m, file=sys.stderr)
        )
    )
    batches = eval_batches(
        args.data, 250, 2 * args.num_samples, tok.config.image_size, tok.config.channels, num_workers=args.workers
    )
    opts = gen.sampling(
        DrawOptions(cfg_schedule=args.cfg_schedule, cfg_power=args.cfg_power, temperature=args.temperature)
    )  # refused if set for a kind without them
    result = diagnose(gen, tok, batches, args.num_samples, cfgs, opts, features, args.seed, data_name=args.data)
    result.update(generator=args.generator, tokenizer=args.tokenizer, data=args.data, features=args.features)
    print("\n".join(describe_rows(result)))
    for row in result["generated"]:
        if "estimate" in row:
            print(f"cfg {row['cfg']:g}: post-training is {row['estimate']['verdict']}")
    if args.json:
        from robustok.hub import atomic_write_bytes

        atomic_write_bytes(args.json, json.dumps(result, indent=2, default=float).encode())
    return 0
