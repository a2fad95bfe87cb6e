"""`robustok convert KIND FILE --out DIR`: an off-the-shelf tokenizer's original weight file -> a robustok directory.

KIND: llamagen-vq16 (vq_ds16_c2i.pt), maskgit-vqgan (maskgit-vqgan-imagenet-f16-256.bin), robustok-release
(main-train.pt / post-train.pt), sd-vae (diffusers AutoencoderKL diffusion_pytorch_model.safetensors). The
directory then works with eval-tokenizer, pretokenize, post-train-data and post-train. Loading is safe
(safetensors or torch.load(weights_only=True)).
"""
from __future__ import annotations

import argparse

from robustok.validation import bounded


def register(sub: argparse._SubParsersAction) -> None:
    from robustok.adapters import ADAPTERS

    p = sub.add_parser("convert", help="load an off-the-shelf tokenizer file into a robustok tokenizer directory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=sorted(ADAPTERS))
    p.add_argument("file", help="the original weight file")
    p.add_argument("--out", required=True, help="output directory (config.json + model.safetensors)")
    p.add_argument("--weights", default=None, help="entry of a training checkpoint to use: ema | model")
    p.add_argument("--image-size", type=bounded(int, ">=8"), default=None,
                   help="image size the tokenizer will be used at")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the adapter's config (repeatable), e.g. --set norm_groups=32")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty --out folder (only once the new one is complete)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustok.adapters import load_external

    from robustok.errors import ConfigError
    from robustok.outputs import check_disjoint, check_out, staged_output
    from robustok.validation import check_writable

    check_writable(args.out, "--out", "dir")
    check_out(args.out, args.overwrite)
    check_disjoint(args.out, {"checkpoint": args.file})

    overrides: dict = {"image_size": args.image_size} if args.image_size else {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not of the form key=value")
        overrides[key] = int(value) if value.lstrip("-").isdigit() else value
    tok = load_external(args.kind, args.file, weights=args.weights, **overrides)
    with staged_output(args.out, args.overwrite) as staged:  # written under a temporary name, renamed when complete
        tok.save_pretrained(staged.build)
        staged.commit()
    kind = f"{tok.codebook_size} codes" if tok.is_discrete else "continuous latents"
    print(f"{args.file} -> {args.out} ({type(tok).__name__}, {kind}, {tok.grid_size}x{tok.grid_size} grid)")
    return 0
