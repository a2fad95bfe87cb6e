"""`robustok pretokenize TOKDIR --data SPEC --out DIR [--views N] [--format npy|wds]`: encode a data set once into a
token store. Under `torchrun --nproc_per_node N` the ranks encode strided batches and rank 0 writes one store."""

from __future__ import annotations

import argparse

from robustok.commands._input_args import add_workers_arg
from robustok.validation import bounded


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretokenize", help="encode a data set with a tokenizer into a sharded token store", description=__doc__
    )
    p.add_argument("tokenizer", help="tokenizer directory, e.g. runs/tok/tokenizer")
    p.add_argument("--data", required=True, help="data spec: fashion-mnist:train | folder | wds:<pattern>")
    p.add_argument("--out", required=True, help="output token store directory")
    p.add_argument(
        "--views",
        type=bounded(int, ">=1"),
        default=1,
        help="views per image: 1 = as is, 2 = + h-flip, >2 = + random resized crops (default 1)",
    )
    p.add_argument("--num-images", type=bounded(int, ">=1"), default=None, help="only the first N images")
    p.add_argument("--batch-size", type=bounded(int, ">=1"), default=256)
    p.add_argument("--shard-size", type=bounded(int, ">=1"), default=100_000, help="entries per shard")
    p.add_argument(
        "--format",
        default="npy",
        choices=["npy", "wds"],
        help="npy: memory-mapped .npy shards (default); wds: WebDataset tar shards for streaming",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random-crop views")
    p.add_argument("--root", default=None, help="where the embedded data set's files are")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    add_workers_arg(p)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing non-empty --out folder (only once the new one is complete)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustok.data import build_dataset, workers_for
    from robustok.data.spec import parse_data_spec
    from robustok.distributed import setup
    from robustok.errors import DataError
    from robustok.outputs import check_disjoint, check_out
    from robustok.tokenizer.loading import load_tokenizer
    from robustok.tokens.store import write_token_store
    from robustok.validation import check_writable, note_fewer

    if args.views < 1:
        raise DataError(f"--views must be >= 1, got {args.views}")
    data = parse_data_spec(args.data, what="--data")
    check_writable(args.out, "--out", "dir")
    check_out(args.out, args.overwrite)
    check_disjoint(args.out, {"tokenizer": args.tokenizer, "--data": data.local_path})
    info = setup()  # under torchrun: a process group; the ranks encode strided batches, rank 0 writes the store
    device = args.device or str(info.device)
    tok = load_tokenizer(args.tokenizer, map_location=device).eval()
    c = tok.config
    ds = build_dataset(args.data, c.image_size, c.channels, train=args.views > 2, root=args.root, seed=args.seed)
    m = write_token_store(
        tok,
        ds,
        args.out,
        views=args.views,
        seed=args.seed,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        limit=args.num_images,
        source=args.data,
        progress=not args.no_progress,
        storage=args.format,
        overwrite=args.overwrite,
        workers=workers_for(args.data, args.workers),
    )
    if not info.is_main:
        return 0
    if args.num_images is not None:
        note_fewer(args.num_images * args.views, m["count"], f"{args.data} ({args.views} view(s) each)")
    what = f"ids (K={m['codebook_size']})" if m["kind"] == "ids" else f"latents ({m['latent_channels']} channels)"
    print(
        f"wrote {m['count']} entries of {what} on a {m['grid'][0]}x{m['grid'][1]} grid to {args.out} "
        f"({len(m['shards'])} {args.format} shard(s), tokenizer {m['tokenizer_fingerprint']})"
    )
    return 0
