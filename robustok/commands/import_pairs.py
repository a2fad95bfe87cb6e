"""`robustok import-pairs --tokens GEN.npy --index INDEX.npy --heldout FREE.npy --tokenizer DIR --data SPEC --sigma S
--out PAIRS`: pairs from a generator robustok cannot load, made into a pairs folder for `robustok post-train`.

GEN.npy: one generated entry per pair, (N, h, w) or (N, h*w) token ids or (N, C, h, w) latents of DIR's tokenizer;
INDEX.npy: (N,) the index in SPEC of the real image each entry was made from (teacher forcing, SDEdit);
FREE.npy: held-out free samples of the same generator (the gFID proxy). Everything is validated (shape, dtype,
id range, latent channels, grid, fingerprint, count, index range) before anything is written. See
docs/posttrain.md, "Pairs from your own generator".
"""

from __future__ import annotations

import argparse

from robustok.validation import bounded


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-pairs",
        help="make a pairs folder from your own generator's tokens (.npy files)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tokens", required=True, help="generated token ids / latents, one per pair (.npy)")
    p.add_argument("--index", required=True, help="(N,) index of each pair's real image in --data (.npy)")
    p.add_argument("--heldout", required=True, help="held-out free samples of the same generator (.npy)")
    p.add_argument("--tokenizer", required=True, help="the tokenizer the tokens belong to (directory)")
    p.add_argument("--data", required=True, help="the real images --index points into (data spec)")
    p.add_argument(
        "--sigma",
        type=bounded(float, "[0,1]"),
        required=True,
        help="preservation ratio the pairs were made with (recorded; paper: 0.7)",
    )
    p.add_argument("--labels", default=None, help="(N,) class ids of the pairs (default: the real images' labels)")
    p.add_argument("--heldout-labels", default=None, help="class ids of the held-out samples (default: none)")
    p.add_argument(
        "--fingerprint",
        default="",
        help="fingerprint of the tokenizer the tokens were made with (checked against --tokenizer)",
    )
    p.add_argument("--generator", default="", help="a name for the generator, recorded in the manifest")
    p.add_argument("--root", default=None, help="where the embedded data set's files are")
    p.add_argument("--out", required=True, help="output pairs folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustok.data import build_dataset
    from robustok.data.spec import parse_data_spec
    from robustok.outputs import check_disjoint, check_out
    from robustok.posttrain.imported import import_pairs
    from robustok.tokenizer.loading import load_tokenizer
    from robustok.validation import check_writable

    data = parse_data_spec(args.data, what="--data")
    check_writable(args.out, "--out", "dir")
    check_out(args.out, args.overwrite)
    check_disjoint(
        args.out,
        {
            "--tokenizer": args.tokenizer,
            "--data": data.local_path,
            "--tokens": args.tokens,
            "--index": args.index,
            "--heldout": args.heldout,
            "--labels": args.labels,
            "--heldout-labels": args.heldout_labels,
        },
    )
    tok = load_tokenizer(args.tokenizer).eval()
    dataset = build_dataset(args.data, tok.config.image_size, tok.config.channels, train=False, root=args.root)
    m = import_pairs(
        tok,
        dataset,
        args.data,
        args.tokens,
        args.index,
        args.heldout,
        args.out,
        args.sigma,
        labels=args.labels,
        heldout_labels=args.heldout_labels,
        fingerprint=args.fingerprint,
        generator=args.generator,
        overwrite=args.overwrite,
    )
    what = f"token ids (K={m['codebook_size']})" if m["kind"] == "ids" else f"latents ({m['latent_channels']} channels)"
    print(
        f"wrote {m['count']} pairs of {what} on a {m['grid'][0]}x{m['grid'][1]} grid and {m['num_eval']} held-out "
        f"samples to {args.out} (sigma={args.sigma}, tokenizer {m['tokenizer_fingerprint']}); next: robustok "
        f"post-train CONFIG tokenizer={args.tokenizer} pairs={args.out} run.dir=..."
    )
    return 0
