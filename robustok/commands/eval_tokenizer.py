"""`robustok eval-tokenizer DIR --data SPEC --metrics psnr,ssim,rfid,pfid,usage --json OUT`.

rFID: reconstructions vs the same input images. pFID (RobusTok): mean FID over the (alpha, delta) grid of
reconstructions decoded from perturbed token ids vs the inputs; see docs/metrics.md for every choice.
"""

from __future__ import annotations

import argparse
import json
import sys

from robustok.commands._input_args import add_workers_arg
from robustok.validation import bounded


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-tokenizer",
        help="PSNR, SSIM, LPIPS, rFID, pFID and codebook usage of a tokenizer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("tokenizer", help="tokenizer directory (config.json + model.safetensors)")
    p.add_argument("--data", default="fashion-mnist:test", help="evaluation images (default fashion-mnist:test)")
    p.add_argument(
        "--metrics", default="psnr,ssim,rfid,pfid,usage", help="comma list of psnr, ssim, lpips, rfid, pfid, usage"
    )
    p.add_argument(
        "--num-images",
        type=bounded(int, ">=2"),
        default=None,
        help="the first N images (default 10000, or all if fewer)",
    )
    p.add_argument("--features", default="fmnist", help="FID features: inception | fmnist | random")
    p.add_argument("--inception-weights", default=None)
    p.add_argument("--lpips-vgg", default=None, help="torchvision VGG16 weights file (for lpips)")
    p.add_argument("--lpips-heads", default=None, help="lpips package vgg.pth linear heads (for lpips)")
    p.add_argument("--pfid-alphas", default=None, help="comma list (default 0.9,0.8,0.7,0.6,0.5)")
    p.add_argument("--pfid-deltas", default=None, help="comma list (default: scaled with codebook size)")
    p.add_argument(
        "--pfid-neighbours",
        default="code",
        choices=["code", "latent"],
        help="perturb to codes nearest e_k (code, the paper) or nearest z (latent, authors' training)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=bounded(int, ">=1"), default=100)
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument("--json", default=None, help="write the results here")
    add_workers_arg(p)
    p.set_defaults(func=run)


def _floats(text: str | None, what: str, cast):
    from robustok.errors import ConfigError

    if text is None:
        return None
    try:
        return tuple(cast(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what}: expected a comma list of numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from robustok.data.spec import parse_data_spec
    from robustok.distributed import rank_world, setup
    from robustok.errors import ConfigError
    from robustok.evaluation import evaluate_tokenizer
    from robustok.metrics.features import describe, get_feature_net
    from robustok.metrics.pfid import DEFAULT_ALPHAS, PFIDConfig
    from robustok.metrics.tokenizer_eval import parse_metrics
    from robustok.outputs import check_disjoint
    from robustok.tokenizer.loading import load_tokenizer
    from robustok.validation import check_writable, note_fewer

    metrics = parse_metrics(args.metrics)
    check_writable(args.json, "--json")
    data = parse_data_spec(args.data, what="--data")
    if args.json:
        check_disjoint(args.json, {"tokenizer": args.tokenizer, "--data": data.local_path}, "--json")
    if args.num_images is not None and args.num_images < 2:
        raise ConfigError(f"--num-images must be at least 2, got {args.num_images}")
    info = setup()  # under torchrun: a process group, each rank evaluates a strided shard
    device = args.device or str(info.device)
    tok = load_tokenizer(args.tokenizer, map_location=device).eval()

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    net = None
    if "rfid" in metrics or "pfid" in metrics:
        net = get_feature_net(args.features, device, args.inception_weights, args.data_root, log=log)
        log(describe(net))
    lp = None
    if "lpips" in metrics:
        from robustok.metrics.lpips import LPIPS

        lp = LPIPS(args.lpips_vgg, args.lpips_heads).to(device)
    try:
        pcfg = PFIDConfig(
            alphas=_floats(args.pfid_alphas, "--pfid-alphas", float) or DEFAULT_ALPHAS,
            deltas=_floats(args.pfid_deltas, "--pfid-deltas", int),
            neighbours=args.pfid_neighbours,
            seed=args.seed,
        )
        if "pfid" in metrics and tok.is_discrete:
            pcfg.cells(tok.codebook_size)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    num_images = 10_000 if args.num_images is None else args.num_images
    res = evaluate_tokenizer(
        tok,
        args.data,
        metrics,
        net,
        num_images=num_images,
        batch_size=args.batch_size,
        pfid=pcfg,
        lpips=lp,
        data_root=args.data_root,
        device=device,
        workers=args.workers,
    )
    rank = rank_world()[0]
    res["tokenizer"] = str(args.tokenizer)
    res["data"] = args.data
    if rank == 0:
        note_fewer(args.num_images, res["num_images"], args.data)
        print_table(res)
        if args.json:
            from robustok.hub import atomic_write_bytes

            atomic_write_bytes(args.json, (json.dumps(res, indent=2) + "\n").encode())
    return 0


def print_table(res: dict) -> None:
    feat = res.get("features", "")
    rows = [("images", f"{res['num_images']}")]
    for key, label, fmt in (
        ("psnr", "PSNR (dB)", "{:.3f}"),
        ("ssim", "SSIM", "{:.4f}"),
        ("lpips", "LPIPS", "{:.4f}"),
        ("rfid", f"rFID-{feat}", "{:.4f}"),
        ("pfid", f"pFID-{feat}", "{:.4f}"),
        ("codebook_usage", "codebook usage", "{:.4f}"),
        ("perplexity", "perplexity", "{:.1f}"),
    ):
        if key in res:
            rows.append((label, fmt.format(res[key])))
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    if "pfid_grid" in res:
        print(f"pFID grid ({feat} features, neighbours={res['pfid_neighbours']}, seed={res['pfid_seed']}):")
        print("  alpha  delta  FID")
        for cell in res["pfid_grid"]:
            print(f"  {cell['alpha']:<5}  {cell['delta']:<5}  {cell['fid']:.4f}")
