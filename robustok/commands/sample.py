"""`robustok sample GENDIR --tokenizer TOKDIR --num-images N --cfg S --out DIR`: images from a trained generator.

Writes `DIR/<class>/<index>.png` and an ADM-style `DIR/samples.npz` (`arr_0` uint8 NHWC, `arr_1` labels).
Under `torchrun --nproc_per_node N` the ranks sample strided batches (batch b seeded by (seed, b): the same images
as one process) and rank 0 merges them into one `samples.npz`.
"""
from __future__ import annotations

import argparse

from robustok.validation import bounded


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample images from a generator (PNG folders + samples.npz)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("generator", help="generator directory, e.g. runs/gen/generator")
    p.add_argument("--tokenizer", required=True, help="the tokenizer the generator was trained with")
    p.add_argument("--num-images", type=bounded(int, ">=1"), default=10_000)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--cfg", type=float, default=1.0,
                   help="classifier-free guidance scale (1 = off, default 1)")
    p.add_argument("--cfg-schedule", default="constant", choices=["constant", "linear", "power"],
                   help="AR: how the scale grows over the token steps (power = RAR's guidance_scale_pow)")
    p.add_argument("--cfg-power", type=bounded(float, ">=0"), default=1.0, help="AR: exponent of the power schedule")
    p.add_argument("--temperature", type=bounded(float, ">=0"), default=1.0,
                   help="AR: softmax temperature (0 = greedy)")
    p.add_argument("--top-k", type=bounded(int, ">=0"), default=0, help="AR: keep the k most likely tokens (0 = all)")
    p.add_argument("--top-p", type=bounded(float, "(0,1]"), default=1.0, help="AR: nucleus mass (1 = off)")
    p.add_argument("--static-cache", action="store_true",
                   help="AR: static KV cache and CUDA-graph decoding steps (same images, much faster on a GPU)")
    p.add_argument("--steps", type=bounded(int, ">=1"), default=50, help="diffusion: ODE steps")
    p.add_argument("--sampler", default="heun", choices=["euler", "heun"], help="diffusion: ODE solver")
    p.add_argument("--mask-steps", type=bounded(int, ">=1"), default=None,    # masked generator (issue 11 part 6)
                   help="masked: parallel decoding steps (default: the generator's, 10)")
    p.add_argument("--choice-temperature", type=bounded(float, ">=0"), default=None,
                   help="masked: Gumbel scale of the token confidence, annealed to 0 (default: 4.5)")
    p.add_argument("--classes", default=None, help="comma-separated class ids (default: all, balanced)")
    p.add_argument("--batch-size", type=bounded(int, ">=1"), default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty --out folder (only once the new one is complete)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustok.errors import ConfigError
    from robustok.generator import load_generator
    from robustok.generator.sampling import SamplingOptions, write_samples
    from robustok.adapters import load_tokenizer
    from robustok.train.dist import setup

    from robustok.outputs import check_out
    from robustok.validation import check_writable

    if args.temperature < 0 or not 0 < args.top_p <= 1 or args.top_k < 0 or args.batch_size < 1:
        raise ConfigError("need --temperature >= 0, 0 < --top-p <= 1, --top-k >= 0, --batch-size >= 1")
    check_writable(args.out, "--out", "dir")
    check_out(args.out, args.overwrite)
    try:
        classes = [int(c) for c in args.classes.split(",")] if args.classes else None
    except ValueError:
        raise ConfigError(f"--classes must be comma-separated integers, got {args.classes!r}") from None
    info = setup()  # under torchrun: a process group; the ranks take strided batches
    device = args.device or str(info.device)
    gen = load_generator(args.generator, device)
    tok = load_tokenizer(args.tokenizer, map_location=device).eval()
    opts = SamplingOptions(cfg=args.cfg, cfg_schedule=args.cfg_schedule, cfg_power=args.cfg_power,
                           temperature=args.temperature, top_k=args.top_k or None,
                           top_p=args.top_p if args.top_p < 1 else None, static_cache=args.static_cache,
                           steps=args.steps, sampler=args.sampler, mask_steps=args.mask_steps,
                           choice_temperature=args.choice_temperature)
    path = write_samples(gen, tok, args.num_images, args.out, opts, args.batch_size, args.seed,
                         progress=not args.no_progress, classes=classes, overwrite=args.overwrite)
    if info.is_main:
        print(f"wrote {args.num_images} images to {args.out} and {path}")
    return 0
