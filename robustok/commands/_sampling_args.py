"""The sampling flags shared by `sample` and `post-train-data`, and the `SamplingOptions` they make."""
from __future__ import annotations

import argparse
from typing import Any

from robustok.validation import bounded


def add_sampling_args(p: argparse.ArgumentParser, steps_help: str = "diffusion: ODE steps") -> None:
    """--cfg, --cfg-schedule, --cfg-power, --temperature, --top-k, --top-p, --static-cache, --steps, --sampler,
    --mask-steps, --choice-temperature, --precision."""
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
                   help="AR: static KV cache and CUDA-graph decoding steps (same tokens, much faster on a GPU)")
    p.add_argument("--steps", type=bounded(int, ">=1"), default=50, help=steps_help)
    p.add_argument("--sampler", default="heun", choices=["euler", "heun"], help="diffusion: ODE solver")
    p.add_argument("--mask-steps", type=bounded(int, ">=1"), default=None,
                   help="masked: parallel decoding steps (default: the generator's, 10)")
    p.add_argument("--choice-temperature", type=bounded(float, ">=0"), default=None,
                   help="masked: Gumbel scale of the token confidence, annealed to 0 (default: the generator's, 4.5)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                   help="fp32 (default), bf16 autocast, or auto: bf16 on CUDA and on CPUs with bf16 matrix "
                        "instructions once measured (robustok.train.precision); unavailable bf16 -> fp32")


def sampling_options(args: argparse.Namespace) -> Any:
    """The `SamplingOptions` of the flags added by `add_sampling_args`."""
    from robustok.generator.sampling import SamplingOptions

    return SamplingOptions(cfg=args.cfg, cfg_schedule=args.cfg_schedule, cfg_power=args.cfg_power,
                           temperature=args.temperature, top_k=args.top_k or None,
                           top_p=args.top_p if args.top_p < 1 else None, static_cache=args.static_cache,
                           steps=args.steps, sampler=args.sampler, mask_steps=args.mask_steps,
                           choice_temperature=args.choice_temperature, precision=args.precision)


def report_precision(args: argparse.Namespace, device: Any) -> None:
    """Print the sampling precision `--precision` gives on `device` (and why) to stderr, unless it is the
    default fp32 (whose output stays as it was)."""
    import sys

    from robustok.train.precision import normalize, resolve_precision

    if normalize(args.precision) != "fp32":
        name, why = resolve_precision(args.precision, device)
        print(f"sampling precision: {name} ({why})", file=sys.stderr)
