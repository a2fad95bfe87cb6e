"""`robustok convert KIND FILE --out DIR`: an off-the-shelf tokenizer's or generator's original weight file -> a
robustok directory.

Tokenizers: llamagen-vq16 (vq_ds16_c2i.pt), maskgit-vqgan (maskgit-vqgan-imagenet-f16-256.bin), robustok-release
(main-train.pt / post-train.pt), sd-vae (diffusers AutoencoderKL diffusion_pytorch_model.safetensors). The
directory then works with eval-tokenizer, pretokenize, post-train-data and post-train.

Generators (need --tokenizer, the converted tokenizer they were trained with): llamagen-gpt (LlamaGen c2i_*.pt,
with llamagen-vq16; convert that at --image-size 384 for the 384 models), rar (RAR rar_b.bin ... rar_xxl.bin,
with maskgit-vqgan), robustok-rar (the RobusTok release's rar_b.bin / rar_l.bin, with robustok-release). The
directory then works with sample, post-train-data and diagnose. Loading is safe (safetensors or
torch.load(weights_only=True)).
"""

from __future__ import annotations

import argparse

from robustok.validation import bounded


def register(sub: argparse._SubParsersAction) -> None:
    from robustok.adapters import ADAPTERS
    from robustok.adapters.generators import GENERATOR_ADAPTERS

    p = sub.add_parser(
        "convert",
        help="load an off-the-shelf tokenizer file into a robustok tokenizer directory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=sorted(ADAPTERS) + sorted(GENERATOR_ADAPTERS))
    p.add_argument("file", help="the original weight file")
    p.add_argument(
        "--tokenizer",
        default=None,
        help="generators: the converted tokenizer directory the generator belongs to (required)",
    )
    p.add_argument("--out", required=True, help="output directory (config.json + model.safetensors)")
    p.add_argument("--weights", default=None, help="entry of a training checkpoint to use: ema | model")
    p.add_argument(
        "--image-size", type=bounded(int, ">=8"), default=None, help="image size the tokenizer will be used at"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the adapter's config (repeatable), e.g. --set norm_groups=32",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing non-empty --out folder (only once the new one is complete)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustok.adapters import load_external
    from robustok.adapters.generators import GENERATOR_ADAPTERS
    from robustok.errors import ConfigError
    from robustok.outputs import check_disjoint, check_out, staged_output
    from robustok.validation import check_writable

    check_writable(args.out, "--out", "dir")
    check_out(args.out, args.overwrite)
    check_disjoint(args.out, {"checkpoint": args.file, "--tokenizer": args.tokenizer})

    overrides: dict = {"image_size": args.image_size} if args.image_size else {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not of the form key=value")
        overrides[key] = int(value) if value.lstrip("-").isdigit() else value
    if args.kind in GENERATOR_ADAPTERS:
        model, summary = _generator(args, overrides)
    elif args.tokenizer:
        raise ConfigError(f"convert {args.kind}: --tokenizer is for generator kinds ({sorted(GENERATOR_ADAPTERS)})")
    else:
        model = load_external(args.kind, args.file, weights=args.weights, **overrides)
        kind = f"{model.codebook_size} codes" if model.is_discrete else "continuous latents"
        summary = f"{type(model).__name__}, {kind}, {model.grid_size}x{model.grid_size} grid"
    with staged_output(args.out, args.overwrite) as staged:  # written under a temporary name, renamed when complete
        model.save_pretrained(staged.build)
        staged.commit()
    print(f"{args.file} -> {args.out} ({summary})")
    return 0


def _generator(args: argparse.Namespace, overrides: dict) -> tuple:
    """The converted generator of `args.file` for the tokenizer `args.tokenizer`, and a one-line summary."""
    from robustok.adapters.generators import load_external_generator
    from robustok.errors import ConfigError
    from robustok.tokenizer.loading import load_tokenizer

    if not args.tokenizer:
        raise ConfigError(
            f"convert {args.kind}: --tokenizer DIR is required (the converted tokenizer the generator was trained with)"
        )
    if "image_size" in overrides:
        raise ConfigError(
            f"convert {args.kind}: the grid comes from --tokenizer; convert the tokenizer at --image-size instead"
        )
    gen = load_external_generator(
        args.kind, args.file, load_tokenizer(args.tokenizer), weights=args.weights, **overrides
    )
    c = gen.config
    return gen, (
        f"{type(gen).__name__}, {gen.num_params():,} parameters, {c.vocab_size} codes, "
        f"{c.grid[0]}x{c.grid[1]} grid, {c.num_classes} classes"
    )
