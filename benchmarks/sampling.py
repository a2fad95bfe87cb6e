"""AR sampling speed: images/s with no cache, the dynamic KV cache and the static decoder, CFG on and off.

    python benchmarks/sampling.py                         # tiny preset, 8x8 = 64 tokens, K=1024, CPU
    python benchmarks/sampling.py --preset rar-b --grid 16 --vocab 4096 --batch-sizes 64,256 --device cuda

Token generation only (no decoding); a random-initialised model of the given size, which costs the same as a
trained one. The static decoder (`sample(..., static_cache=True)`: static KV cache, CUDA graphs on a GPU) is
timed after its first call, which builds it (on a GPU: one eager pass and the graph capture); that one-off
time is printed in its own column. Each row runs in every precision of `--precisions` (bf16 = bf16 autocast,
`--precision bf16` of `robustok sample`; default on a CPU: fp32 and bf16 side by side when the CPU has bf16
matrix instructions, amx_bf16/avx512_bf16, else fp32; on CUDA fp32 and bf16), after the fp32 and bf16 matmul
peaks measured in the same run. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch

from robustok.generator.ar import ARConfig, ARGenerator
from robustok.generator.decode import release_static_decoder
from robustok.generator.presets import AR_PRESETS
from robustok.train.precision import autocast, cpu_bf16_instructions


def matmul_peak(device: str, dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best of 5 timings of `reps` n x n matmuls (FLOP/s)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(5):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def bench(
    model: ARGenerator, batch: int, cfg: float, repeats: int, device: str, precision: str = "fp32", **kw
) -> tuple[float, float]:
    """(images per second of `model.sample` in `precision`, best of `repeats`; seconds of the first, warm-up
    call)."""
    labels = torch.arange(batch, device=device) % max(1, model.config.num_classes)
    best, first = float("inf"), float("nan")
    for r in range(repeats + 1):
        g = torch.Generator(device=device).manual_seed(r)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast(precision, device):
            model.sample(labels, cfg=cfg, generator=g, **kw)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if r > 0:  # run 0 is the warm-up
            best = min(best, time.perf_counter() - t0)
        else:
            first = time.perf_counter() - t0
    return batch / best, first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", choices=sorted(AR_PRESETS))
    p.add_argument("--grid", type=int, default=8, help="token grid side (L = grid^2)")
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch-sizes", default="1,16,64")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--cache-only", action="store_true", help="skip the (slow) no-cache column")
    p.add_argument("--precisions", default=None, help="comma list of fp32, bf16 (default: see the docstring)")
    a = p.parse_args()
    units = cpu_bf16_instructions() if a.device == "cpu" else None
    precisions = (
        [q.strip() for q in a.precisions.split(",") if q.strip()]
        if a.precisions
        else ["fp32", "bf16"]
        if a.device != "cpu" or units
        else ["fp32"]
    )
    if a.threads:
        torch.set_num_threads(a.threads)
    dim, depth, heads, ratio = AR_PRESETS[a.preset]
    torch.manual_seed(0)
    model = ARGenerator(
        ARConfig(
            vocab_size=a.vocab,
            grid=[a.grid, a.grid],
            num_classes=a.classes,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_ratio=ratio,
        )
    )
    model = model.to(a.device, getattr(torch, a.dtype)).eval()
    L = a.grid * a.grid
    print(
        f"AR sampling, preset {a.preset} ({model.num_params() / 1e6:.2f}M params), {L} tokens, K={a.vocab}, "
        f"device {a.device}, dtype {a.dtype}, threads {torch.get_num_threads()}, bf16 matrix instructions: "
        f"{units or ('n/a' if a.device != 'cpu' else 'none')}"
    )
    f32, b16 = matmul_peak(a.device, torch.float32), matmul_peak(a.device, torch.bfloat16)
    print(f"matmul peak: {f32 / 1e9:.1f} GFLOP/s fp32, {b16 / 1e9:.1f} GFLOP/s bf16 ({b16 / f32:.2f}x)")
    print()
    print(
        "| batch | CFG | precision | no cache (img/s) | KV cache (img/s) | KV / no cache | static decoder (img/s) "
        "| static / KV cache | static first call (s) |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for batch in (int(b) for b in a.batch_sizes.split(",")):
        for cfg in (1.0, 2.0):
            for prec in precisions:
                slow = (
                    float("nan")
                    if a.cache_only
                    else bench(model, batch, cfg, a.repeats, a.device, prec, use_cache=False)[0]
                )
                fast = bench(model, batch, cfg, a.repeats, a.device, prec)[0]
                static, first = bench(model, batch, cfg, a.repeats, a.device, prec, static_cache=True)
                release_static_decoder(model)  # free its cache before the next setting
                ratio = "-" if a.cache_only else f"{fast / slow:.1f}x"
                print(
                    f"| {batch} | {'on (2.0)' if cfg != 1 else 'off'} | {prec} | {slow:.1f} | {fast:.1f} | {ratio} "
                    f"| {static:.1f} | {static / fast:.1f}x | {first:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
