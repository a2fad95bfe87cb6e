"""Tokenizer training throughput: images/s, FLOPs/image and the fraction of this machine's matmul peak.

    python benchmarks/train_tokenizer.py [--steps 10] [--device cpu|cuda] [--precisions fp32,bf16]

Rows: the Fashion-MNIST demo config (conv, 32 px) with and without latent perturbation, and a ViT-B/16 tokenizer
at 256 px, small batch, each in every precision of `--precisions` (bf16 = bf16 autocast, `train.amp=bf16`).
Default: on CUDA bf16 (plus the ViT in fp32); on a CPU fp32 and bf16 side by side when the CPU has bf16 matrix
instructions (amx_bf16/avx512_bf16), else fp32 only. FLOPs are counted with torch.utils.flop_counter on one
forward+backward of the training step (matmuls/convs only); the peaks are large fp32 and bf16 matmuls measured in
the same run, and each row's fraction is of the peak of its own precision.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from robustok.config import load_config
from robustok.tokenizer.train import TokenizerTask, TokenizerTrainConfig
from robustok.train.precision import autocast, cpu_bf16_instructions


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 5, trials: int = 5) -> float:
    """Best of `trials` timings of `reps` n x n matmuls (FLOP/s)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(trials):
        _sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(name: str, overrides: list[str], steps: int, device: torch.device, peaks: dict, precision: str) -> dict:
    cfg = load_config(TokenizerTrainConfig, "configs/tokenizer/fmnist-robust.yaml", overrides)
    task = TokenizerTask(cfg, dataset=[])
    model = task.model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b, c, s = cfg.data.batch_size, cfg.model.channels, cfg.model.image_size
    x = torch.rand(b, c, s, s, device=device) * 2 - 1

    def one_step(step: int) -> None:
        with autocast(precision, device):
            loss = task.step(model, (x, None), step, model)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        one_step(0)
    flops = counter.get_total_flops() / b
    for i in range(2):
        one_step(i)
    _sync(device)
    t = time.perf_counter()
    for i in range(steps):
        one_step(i)
    _sync(device)
    ips = b * steps / (time.perf_counter() - t)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {
        "config": name,
        "precision": precision,
        "params_M": params,
        "batch": b,
        "images_per_s": ips,
        "GFLOP_per_image": flops / 1e9,
        "peak_fraction": ips * flops / peaks[precision],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precisions", default=None, help="comma list of fp32, bf16 (default: see the docstring)")
    ap.add_argument("--skip-vit", action="store_true", help="only the small demo configs")
    args = ap.parse_args()
    device = torch.device(args.device)
    cpu_units = cpu_bf16_instructions() if device.type == "cpu" else None
    if args.precisions:
        precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    else:
        precisions = ["bf16"] if device.type == "cuda" else ["fp32", "bf16"] if cpu_units else ["fp32"]
    peaks = {"fp32": matmul_peak(device, torch.float32), "bf16": matmul_peak(device, torch.bfloat16)}
    vit = [
        "model.backbone=vit",
        "model.image_size=256",
        "data.resolution=256",
        "model.channels=3",
        "data.channels=3",
        "model.patch_size=16",
        "model.vit_width=768",
        "model.vit_depth=12",
        "model.vit_heads=12",
        "model.hidden_dim=768",
        "model.code_dim=64",
        "model.codebook_size=4096",
        "perturb.delta=100",
        f"data.batch_size={32 if device.type == 'cuda' else 2}",
    ]
    rows = []
    for prec in precisions:
        rows += [
            bench("fmnist conv, perturbation on", [], args.steps, device, peaks, prec),
            bench("fmnist conv, perturbation off", ["perturb.enabled=false"], args.steps, device, peaks, prec),
        ]
        if not args.skip_vit:
            rows.append(bench("ViT-B/16 256px, K=4096", vit, max(2, args.steps // 5), device, peaks, prec))
    if device.type == "cuda" and not args.skip_vit and "fp32" not in precisions:  # what bf16 autocast buys
        rows.append(bench("ViT-B/16 256px, K=4096", vit, max(2, args.steps // 5), device, peaks, "fp32"))
    if device.type == "cuda":
        dev = torch.cuda.get_device_name(device)
    else:
        dev = f"CPU x{torch.get_num_threads()} threads, bf16 matrix instructions: {cpu_units or 'none'}"
    print(
        f"device: {dev}; measured matmul peak {peaks['fp32'] / 1e9:.1f} GFLOP/s fp32, "
        f"{peaks['bf16'] / 1e9:.1f} GFLOP/s bf16 ({peaks['bf16'] / peaks['fp32']:.2f}x)"
    )
    print(f"{'config':34s} {'prec':>5s} {'params':>8s} {'batch':>6s} {'img/s':>9s} {'GFLOP/img':>10s} {'of peak':>8s}")
    for r in rows:
        print(
            f"{r['config']:34s} {r['precision']:>5s} {r['params_M']:7.2f}M {r['batch']:6d} {r['images_per_s']:9.1f} "
            f"{r['GFLOP_per_image']:10.3f} {r['peak_fraction']:8.1%}"
        )
    base = {r["config"]: r["images_per_s"] for r in rows if r["precision"] == "fp32"}
    for r in rows:
        if r["precision"] == "bf16" and r["config"] in base:
            print(f"bf16 / fp32, {r['config']}: {r['images_per_s'] / base[r['config']]:.2f}x")


if __name__ == "__main__":
    main()
