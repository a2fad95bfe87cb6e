"""Post-training commands: `post-train-data` (paired data from a generator) and `post-train` (decoder fine-tune)."""

from __future__ import annotations

import argparse

from robustok.commands._input_args import add_workers_arg
from robustok.commands._sampling_args import add_sampling_args, report_precision, sampling_options
from robustok.generator.published import add_preset_args
from robustok.validation import bounded


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "post-train-data",
        help="generate (generated tokens, real image) pairs with a generator",
        description="Teacher-forced sampling (AR) or SDEdit (diffusion) with preservation ratio "
        "sigma; stores generated token ids / latents with the real image's index, plus "
        "held-out free samples for the gFID proxy.",
    )
    p.add_argument("generator", help="generator directory, e.g. runs/gen/generator")
    p.add_argument("--tokenizer", required=True, help="the main-trained tokenizer the generator was trained on")
    p.add_argument("--data", default="fashion-mnist:train", help="real images (data spec)")
    p.add_argument(
        "--sigma", type=bounded(float, "[0,1]"), required=True, help="preservation ratio in [0, 1] (paper: 0.7)"
    )
    p.add_argument("--num-pairs", type=bounded(int, ">=1"), default=20000)
    p.add_argument(
        "--num-eval", type=bounded(int, ">=0"), default=1000, help="held-out free samples for the gFID proxy"
    )
    p.add_argument("--out", required=True, help="output folder (refused if it exists and is not empty)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    add_sampling_args(p)
    add_preset_args(p, images=False)
    p.add_argument("--batch-size", type=bounded(int, ">=1"), default=100)
    p.add_argument(
        "--pair-input",
        default="ids",
        choices=["ids", "roundtrip"],
        help="what the decoder is trained on: the generated ids (default) or, as the authors, "
        "encode(decode(ids)) after rounding the decoded image to uint8 (roundtrip)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    add_workers_arg(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_data)

    q = sub.add_parser(
        "post-train",
        help="fine-tune a tokenizer's decoder on generated pairs (encoder frozen)",
        description="Decoder post-training. CONFIG plus key=value overrides, e.g. "
        "tokenizer=runs/tok/tokenizer pairs=runs/pairs run.dir=runs/post. Writes "
        "<run.dir>/tokenizer/ and <run.dir>/posttrain.json.",
    )
    q.add_argument("config", help="YAML config, e.g. configs/posttrain/fmnist.yaml")
    q.add_argument("overrides", nargs="*", help="key=value overrides")
    q.add_argument(
        "--control",
        action="store_true",
        help="also run the sigma=1 control (same fine-tuning on real tokens) in <run.dir>/control",
    )
    q.add_argument("--resume", action="store_true")
    q.set_defaults(func=run_train)


def run_data(args: argparse.Namespace) -> int:
    from robustok.data import build_dataset, workers_for
    from robustok.data.spec import parse_data_spec
    from robustok.distributed import setup
    from robustok.generator import load_generator
    from robustok.generator.published import apply_preset
    from robustok.outputs import check_disjoint, check_out
    from robustok.posttrain.pairs import PairsSpec, make_pairs
    from robustok.tokenizer.loading import load_tokenizer
    from robustok.validation import check_writable

    data = parse_data_spec(args.data, what="--data")
    check_writable(args.out, "--out", "dir")
    check_out(args.out, args.overwrite)  # before the (slow) loading and generation
    check_disjoint(args.out, {"generator": args.generator, "--tokenizer": args.tokenizer, "--data": data.local_path})
    info = setup()  # under torchrun: a process group; the ranks generate strided batches, rank 0 writes the store
    device = args.device or str(info.device)
    gen = load_generator(args.generator, device).eval()
    apply_preset(args, gen.kind)
    tok = load_tokenizer(args.tokenizer).to(device).eval()
    spec = PairsSpec(
        sigma=args.sigma,
        num_pairs=args.num_pairs,
        num_eval=args.num_eval,
        data=args.data,
        resolution=tok.config.image_size,
        channels=tok.config.channels,
        seed=args.seed,
        batch_size=args.batch_size,
        pair_input=args.pair_input,
    )
    opts = sampling_options(args, gen)
    if info.is_main:
        report_precision(opts.precision, device)
    dataset = build_dataset(args.data, spec.resolution, spec.channels, train=False)
    out = make_pairs(
        gen,
        tok,
        dataset,
        spec,
        args.out,
        opts,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        workers=workers_for(args.data, args.workers),
    )
    if info.is_main:
        print(f"wrote {args.num_pairs} pairs (sigma={args.sigma}) and {args.num_eval} held-out samples to {out}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from robustok.config import load_config
    from robustok.outputs import check_disjoint
    from robustok.posttrain.train import PostTrainConfig, post_train
    from robustok.validation import check_writable

    cfg = load_config(PostTrainConfig, args.config, args.overrides)
    check_writable(cfg.run.dir, "run.dir", "dir")
    check_disjoint(cfg.run.dir, {"tokenizer": cfg.tokenizer or None, "pairs": cfg.pairs or None}, "run.dir")
    s = post_train(cfg, resume=args.resume, with_control=args.control)
    f = s["features"]

    def num(v) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    print(f"\n{'decoder':28s} gFID-proxy-{f}")
    print(f"{'untouched':28s} {num(s['gfid_proxy_before'])}")
    print(
        f"{'post-trained (sigma=' + str(s['sigma']) + ')':28s} {num(s['gfid_proxy_after'])}  "
        f"(best {num(s['gfid_proxy_best'])})"
    )
    if "gfid_proxy_control" in s:
        print(f"{'control (sigma=1)':28s} {num(s['gfid_proxy_control'])}  (best {num(s['gfid_proxy_control_best'])})")
    print(f"post-trained tokenizer: {s['tokenizer']}; summary: {cfg.run.dir}/posttrain.json")
    return 0
