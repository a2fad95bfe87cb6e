"""`robustok sample GENDIR --tokenizer TOKDIR --num-images N --cfg S --out DIR`: images from a trained generator.

Writes `DIR/<class>/<index>.png` and an ADM-style `DIR/samples.npz` (`arr_0` uint8 NHWC, `arr_1` labels).
Under `torchrun --nproc_per_node N` the ranks sample strided batches (batch b seeded by (seed, b): the same images
as one process) and rank 0 merges them into one `samples.npz`.
"""

from __future__ import annotations

import argparse

from robustok.commands._sampling_args import add_sampling_args, report_precision, sampling_options
from robustok.generator.published import add_preset_args
from robustok.validation import bounded


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="sample images from a generator (PNG folders + samples.npz)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("generator", help="generator directory, e.g. runs/gen/generator")
    p.add_argument("--tokenizer", required=True, help="the tokenizer the generator was trained with")
    p.add_argument("--num-images", type=bounded(int, ">=1"), default=10_000)
    p.add_argument("--out", required=True, help="output folder")
    add_sampling_args(p)
    add_preset_args(p)
    p.add_argument("--classes", default=None, help="comma-separated class ids (default: all, balanced)")
    p.add_argument("--batch-size", type=bounded(int, ">=1"), default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing non-empty --out folder (only once the new one is complete)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustok.distributed import setup
    from robustok.errors import ConfigError
    from robustok.generator import load_generator
    from robustok.generator.published import apply_preset, image_options
    from robustok.generator.sampling import write_samples
    from robustok.outputs import check_disjoint, check_out
    from robustok.tokenizer.loading import load_tokenizer
    from robustok.validation import check_writable

    check_writable(args.out, "--out", "dir")
    check_out(args.out, args.overwrite)
    check_disjoint(args.out, {"generator": args.generator, "--tokenizer": args.tokenizer})
    try:
        classes = [int(c) for c in args.classes.split(",")] if args.classes else None
    except ValueError:
        raise ConfigError(f"--classes must be comma-separated integers, got {args.classes!r}") from None
    info = setup()  # under torchrun: a process group; the ranks take strided batches
    device = args.device or str(info.device)
    gen = load_generator(args.generator, device)
    chosen = apply_preset(args, gen.kind)
    labels, resize = image_options(args, chosen)
    tok = load_tokenizer(args.tokenizer, map_location=device).eval()
    opts = sampling_options(args, gen)
    if info.is_main:
        report_precision(opts.precision, device)
    path = write_samples(
        gen,
        tok,
        args.num_images,
        args.out,
        opts,
        args.batch_size,
        args.seed,
        progress=not args.no_progress,
        classes=classes,
        overwrite=args.overwrite,
        labels=labels,
        resize=resize,
    )
    if info.is_main:
        print(f"wrote {args.num_images} images to {args.out} and {path}")
    return 0
