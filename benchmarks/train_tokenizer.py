"""Tokenizer training throughput: images/s, FLOPs/image and the fraction of this machine's matmul peak.

    python benchmarks/train_tokenizer.py [--steps 10] [--device cpu|cuda]

Rows: the Fashion-MNIST demo config (conv, 32 px) with and without latent perturbation, and a ViT-B/16 tokenizer
at 256 px, small batch. FLOPs are counted with torch.utils.flop_counter on one forward+backward of the
training step (matmuls/convs only); the peak is a large fp32 (or bf16 on CUDA) matmul measured in the same run.
On CUDA every row runs under bf16 autocast except the one marked fp32.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from robustok.config import load_config
from robustok.tokenizer.train import TokenizerTask, TokenizerTrainConfig


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


def bench(name: str, overrides: list[str], steps: int, device: torch.device, peak: float, bf16: bool = True) -> dict:
    cfg = load_config(TokenizerTrainConfig, "configs/tokenizer/fmnist-robust.yaml", overrides)
    task = TokenizerTask(cfg, dataset=[])
    model = task.model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b, c, s = cfg.data.batch_size, cfg.model.channels, cfg.model.image_size
    x = torch.rand(b, c, s, s, device=device) * 2 - 1
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")

    def one_step(step: int) -> None:
        with amp:
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
    return {"config": name, "params_M": params, "batch": b, "images_per_s": ips, "GFLOP_per_image": flops / 1e9,
            "peak_fraction": ips * flops / peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-vit", action="store_true", help="only the small demo configs")
    args = ap.parse_args()
    device = torch.device(args.device)
    peak = matmul_peak(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    rows = [bench("fmnist conv, perturbation on", [], args.steps, device, peak),
            bench("fmnist conv, perturbation off", ["perturb.enabled=false"], args.steps, device, peak)]
    if not args.skip_vit:
        vit = ["model.backbone=vit", "model.image_size=256", "data.resolution=256", "model.channels=3",
               "data.channels=3", "model.patch_size=16", "model.vit_width=768", "model.vit_depth=12",
               "model.vit_heads=12", "model.hidden_dim=768", "model.code_dim=64", "model.codebook_size=4096",
               "perturb.delta=100", f"data.batch_size={32 if device.type == 'cuda' else 2}"]
        rows.append(bench("ViT-B/16 256px, K=4096", vit, max(2, args.steps // 5), device, peak))
        if device.type == "cuda":                  # what bf16 autocast buys (fp32 row: TF32 matmuls off)
            rows.append(bench("ViT-B/16 256px, K=4096, fp32", vit, max(2, args.steps // 5), device, peak, False))
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads"
    print(f"device: {dev}; measured matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'config':34s} {'params':>8s} {'batch':>6s} {'img/s':>9s} {'GFLOP/img':>10s} {'of peak':>8s}")
    for r in rows:
        print(f"{r['config']:34s} {r['params_M']:7.2f}M {r['batch']:6d} {r['images_per_s']:9.1f} "
              f"{r['GFLOP_per_image']:10.3f} {r['peak_fraction']:8.1%}")


if __name__ == "__main__":
    main()
