"""`robustok generator-ce GENERATOR --tokens STORE [--num N] [--json OUT]`: a generator's cross-entropy on real tokens.

The mean of the generator's own training loss (no label dropout) over the first N entries of a token store from
`robustok pretokenize`: next-token cross-entropy for AR generators, masked-token for masked ones, in nats per token,
with the perplexity. ln K (a uniform guess over the K codes) is printed for comparison: randomly initialised weights
give about ln K; users of trained ImageNet AR generators at K = 16384 (ln K = 9.70) report about 6-7 nats. The
quickest check that a converted generator is right. Generators of continuous latents have no such cross-entropy
and are refused.
"""

from __future__ import annotations

import argparse
import json

from robustok.validation import bounded


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generator-ce",
        help="a generator's next-token cross-entropy on real tokens (vs ln K)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("generator", help="generator directory (runs/gen/generator, a converted one, or hf://org/repo)")
    p.add_argument("--tokens", required=True, help="token store of real images (`robustok pretokenize`)")
    p.add_argument("--num", type=bounded(int, ">=1"), default=None, help="only the first N entries (default all)")
    p.add_argument("--batch-size", type=bounded(int, ">=1"), default=64)
    p.add_argument("--seed", type=int, default=0, help="seed of random parts of the loss (masked generators)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument("--json", default=None, help="also write the result here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from robustok.errors import ConfigError
    from robustok.generator import load_generator
    from robustok.generator.crossentropy import store_cross_entropy
    from robustok.tokens.store import TokenDataset
    from robustok.validation import check_writable

    check_writable(args.json, "--json")
    store = TokenDataset(args.tokens)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    gen = load_generator(args.generator, device).eval()
    if gen.token_kind != "ids":
        raise ConfigError(
            f"{args.generator}: a {type(gen).__name__} models {gen.tokens.description}; generator-ce "
            "scores generators of token ids (AR, masked)"
        )
    r = store_cross_entropy(gen, store, args.num, args.batch_size, args.seed, progress=not args.no_progress)
    r.update(generator=str(args.generator), tokens=str(args.tokens))
    print(
        f"{r['objective']} cross-entropy of {args.generator} on {r['entries']} entries of {args.tokens} "
        f"({r['tokens_per_entry']} tokens each): {r['cross_entropy']:.4f} nats/token, perplexity "
        f"{r['perplexity']:.1f}"
    )
    print(
        f"for comparison: ln K = {r['ln_k']:.4f} (K = {r['vocab_size']}: a uniform guess, what random weights "
        "give); trained ImageNet AR generators at K = 16384 (ln K = 9.70): about 6-7 nats, as users report"
    )
    if args.json:
        from robustok.hub import atomic_write_bytes

        atomic_write_bytes(args.json, (json.dumps(r, indent=2) + "\n").encode())
    return 0
