"""`robustok make-shards IMAGE_FOLDER --out DIR [--shard-size N]`: an image folder (class subfolders, e.g.
ImageNet's train/) -> WebDataset tar shards (`.jpg`/`.png` + `.cls`) for the `wds:<pattern>` data spec.

JPEG and PNG files are stored byte for byte (other formats re-encoded as PNG); every image is decoded once to
check it. Shards are written atomically and a rerun skips finished ones (if made with the same settings and file
list; another non-empty --out is refused unless --overwrite). Prints the `wds:` spec to use.
"""

from __future__ import annotations

import argparse

from robustok.validation import bounded


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-shards",
        help="image folder -> WebDataset tar shards for the wds: data spec",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", help="image folder: class subfolders (labels by sorted name) or a flat folder")
    p.add_argument("--out", required=True, help="output directory for the shards")
    p.add_argument("--shard-size", type=bounded(int, ">=1"), default=1000, help="images per shard (default 1000)")
    p.add_argument("--prefix", default="shard", help="shard file prefix (default shard: shard-000000.tar)")
    p.add_argument("--no-shuffle", action="store_true", help="keep the folder order (default: seeded shuffle)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default 0)")
    p.add_argument(
        "--workers", type=bounded(int, ">=1"), default=1, help="processes writing shards in parallel (default 1)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write every shard anew into a non-empty --out not made with these settings (other files in it are kept)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustok.data.shards import make_shards

    s = make_shards(
        args.folder,
        args.out,
        args.shard_size,
        args.prefix,
        not args.no_shuffle,
        args.seed,
        args.workers,
        log=print,
        overwrite=args.overwrite,
    )
    print(
        f"{s.num_images} images, {s.num_classes} classes in {s.num_shards} shards ({s.written} written now); "
        f"data spec: wds:{s.pattern}"
    )
    return 0
