"""`robustok fid A B` and `robustok fid-stats SPEC --out ref.npz`: FID between image sets, with named features.

A and B: folders of images, ADM-style sample `.npz` files (`arr_0`, uint8 NHWC), statistics `.npz` files
(`mu`, `sigma`; ADM's VIRTUAL_*.npz work) or data specs (`fashion-mnist:test`, `wds:<pattern>`).
Under `torchrun --nproc_per_node N` every rank extracts features of a strided share of each set; the statistics
are gathered once (the same numbers as one process, up to rounding) and rank 0 reports.
"""

from __future__ import annotations

import argparse
import json
import sys

from robustok.commands._input_args import add_workers_arg
from robustok.validation import bounded


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", default="fmnist", help="feature network: inception | fmnist | random (default fmnist)")
    p.add_argument("--inception-weights", default=None, help="local FID Inception file (see docs/metrics.md)")
    p.add_argument(
        "--num-images", type=bounded(int, ">=2"), default=None, help="use the first N images of each set (default all)"
    )
    p.add_argument("--batch-size", type=bounded(int, ">=1"), default=100)
    p.add_argument("--resolution", type=bounded(int, ">=8"), default=32, help="image size for data specs (default 32)")
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST files")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    add_workers_arg(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fid",
        help="FID between two image sets / sample files / statistics files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", help="first set: folder, samples .npz, stats .npz or data spec")
    p.add_argument("b", help="second set (usually the reference)")
    p.add_argument("--json", default=None, help="write {fid, features, num_images: [nA, nB]} here")
    p.add_argument(
        "--metrics",
        default="fid",
        help="fid[,is,pr,acc]: IS (10 splits) of A, precision/recall (k=3) "
        "of A against B, class accuracy of A (a samples .npz with labels) "
        "under the feature network's classifier",
    )
    _common(p)
    p.set_defaults(func=run_fid)
    s = sub.add_parser(
        "fid-stats",
        help="cache reference statistics (mu, sigma) of an image set as .npz",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("spec", help="folder, samples .npz or data spec")
    s.add_argument("--out", required=True, help="output .npz (keys mu, sigma, num_images, features, image_size)")
    _common(s)
    s.set_defaults(func=run_stats)


def _net(args):
    """The feature network on this rank's device. Under torchrun (a process group is set up here) rank 0 builds
    it first, so that a network trained and cached on first use (fmnist) is written once."""
    from robustok.distributed import setup
    from robustok.distributed_outputs import rank0_first
    from robustok.metrics.features import get_feature_net

    info = setup()
    device = args.device or str(info.device)
    with rank0_first():
        return get_feature_net(
            args.features, device, args.inception_weights, args.data_root, log=lambda m: print(m, file=sys.stderr)
        )


def run_fid(args: argparse.Namespace) -> int:
    from robustok.data.spec import data_path, parse_data_spec
    from robustok.distributed import rank_world
    from robustok.errors import ConfigError
    from robustok.evaluation import SAMPLE_METRICS, evaluate_samples
    from robustok.metrics.features import describe
    from robustok.metrics.sources import read_sample_labels
    from robustok.outputs import check_disjoint
    from robustok.validation import check_writable, note_fewer

    check_writable(args.json, "--json")
    for spec in (args.a, args.b):
        parse_data_spec(spec, allow_npz=True)
    if args.json:
        check_disjoint(args.json, {"A": data_path(args.a), "B": data_path(args.b)}, "--json")
    wanted = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if not wanted or any(m not in SAMPLE_METRICS for m in wanted):
        raise ConfigError(f"--metrics: choose from fid, is, pr, acc; got {args.metrics!r}")
    if "acc" in wanted:  # fail before building the feature network
        if not args.a.endswith(".npz"):
            raise ConfigError(f"--metrics acc: {args.a} must be a samples .npz with labels (arr_1)")
        read_sample_labels(args.a)
        if args.features == "inception":
            raise ConfigError(
                "--metrics acc needs a classifier over the generator's classes (e.g. --features "
                "fmnist); the FID Inception's 1008 outputs do not follow ImageNet's class ids"
            )
    net = _net(args)
    if rank_world()[0] == 0:  # under torchrun every rank extracts a strided share; rank 0 reports
        print(describe(net), file=sys.stderr)
    out = evaluate_samples(
        args.a,
        args.b,
        wanted,
        net,
        num_images=args.num_images,
        batch_size=args.batch_size,
        resolution=args.resolution,
        data_root=args.data_root,
        workers=args.workers,
    )
    if not out:
        return 0
    for spec, n in zip((args.a, args.b), out["num_images"]):
        note_fewer(args.num_images, n, spec)
    label = f"FID-{net.name}"
    print(f"{label}: {out['fid']:.4f}  (A: {out['num_images'][0]} images, B: {out['num_images'][1]} images)")
    if "is" in wanted:
        print(f"IS-{net.name}: {out['is']:.3f} ± {out['is_std']:.3f}")
    if "pr" in wanted:
        print(f"precision-{net.name}: {out['precision']:.4f}  recall-{net.name}: {out['recall']:.4f}")
    if "acc" in wanted:
        print(f"class accuracy ({net.name} classifier): {out['class_accuracy']:.4f}")
    if args.json:
        from robustok.hub import atomic_write_bytes

        atomic_write_bytes(args.json, (json.dumps(out, indent=2) + "\n").encode())
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from robustok.data.spec import data_path, parse_data_spec
    from robustok.distributed import rank_world
    from robustok.errors import DataError
    from robustok.metrics.features import describe
    from robustok.metrics.fid import save_stats, source_stats
    from robustok.metrics.sources import is_stats_file
    from robustok.outputs import check_disjoint
    from robustok.validation import check_writable, note_fewer

    check_writable(args.out, "--out")
    parse_data_spec(args.spec, allow_npz=True)
    check_disjoint(args.out, {"spec": data_path(args.spec)})
    if is_stats_file(args.spec):
        raise DataError(f"{args.spec}: already a statistics file")
    net = _net(args)
    main = rank_world()[0] == 0  # under torchrun every rank extracts a strided share; rank 0 writes the file
    if main:
        print(describe(net), file=sys.stderr)
    s = source_stats(
        args.spec, net, args.batch_size, args.num_images, args.data_root, args.resolution, workers=args.workers
    )
    if not main:
        return 0
    note_fewer(args.num_images, s.stats.n, args.spec)
    save_stats(args.out, s, net.name)
    size = f" ({s.image_size[0]}x{s.image_size[1]})" if s.image_size is not None else ""  # None: from a stats file
    print(f"wrote {args.out}: {net.name} statistics of {s.stats.n} images{size}")
    return 0
