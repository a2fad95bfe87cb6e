"""Cost of sampling the released generators as published (docs/reproduce.md): FLOPs per image counted with
torch.utils.flop_counter on the full-size architectures (meta tensors: nothing is allocated or run), the GPU-hours
of a 50,000-image FID run they imply at an assumed throughput, and (on a GPU) the measured images/s of a
random-weight model of a preset's size through the static CUDA-graph decoder.

    python benchmarks/released_generators.py [--tflops 989] [--mfu 0.3] [--json out.json]
    python benchmarks/released_generators.py --speed rar-l --batch 64 --dtype bfloat16     # needs a GPU

Counted per image: the generator's L decoding steps (the teacher-forced forward of L tokens, the same matmuls as
cached decoding up to the causal half of attention), twice with classifier-free guidance, and the tokenizer's
decoder at the preset's image size. Elementwise work is not counted; AR decoding at moderate batch sizes is
bound by memory traffic as much as by FLOPs, so the hours are a floor at the given utilisation.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from robustok.generator.llamagen_gpt import LlamaGenGPT, LlamaGenGPTConfig
from robustok.generator.published import PRESETS, PublishedSampling
from robustok.generator.rar import RARConfig, RARGenerator

NUM_FID = 50_000
FFN = {768: 2048, 1024: 2816, 1280: 3584, 1536: 4096, 3200: 8704}  # LlamaGen SwiGLU widths
RAR_MLP = {768: 3072, 1024: 4096, 1280: 5120, 1408: 6144}  # RAR intermediate_size (README_RAR.md)


def generator_for(p: PublishedSampling) -> torch.nn.Module:
    """A random-weight model of the preset's released architecture (on the current default device)."""
    D, depth, heads = p.dims
    if p.kind == "llamagen-gpt":
        g = p.image_size // 16
        return LlamaGenGPT(
            LlamaGenGPTConfig(
                grid=[g, g], num_classes=1000, vocab_size=16384, dim=D, depth=depth, heads=heads, ffn_dim=FFN[D]
            )
        )
    K = 4096 if p.tokenizer == "robustok-release" else 1024
    return RARGenerator(
        RARConfig(grid=[16, 16], num_classes=1000, vocab_size=K, dim=D, depth=depth, heads=heads, mlp_dim=RAR_MLP[D])
    )


def tokenizer_for(p: PublishedSampling) -> torch.nn.Module:
    from robustok.adapters import ADAPTERS

    cls = ADAPTERS[p.tokenizer]
    return cls(cls.config_class(image_size=p.image_size))


def count(fn) -> float:
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def flops_per_image(p: PublishedSampling) -> dict[str, float]:
    with torch.device("meta"):
        gen, tok = generator_for(p), tokenizer_for(p)
        h, w = gen.config.grid
        rows = 1 if p.cfg == 1.0 and p.cfg_schedule == "constant" else 2
        tokens, labels = torch.zeros(rows, h, w, dtype=torch.long), torch.zeros(rows, dtype=torch.long)
        z = torch.zeros(1, tok.codebook.shape[1], h, w)
        params = float(sum(t.numel() for t in gen.parameters()))
        return {
            "params": params,
            "generator": count(lambda: gen(tokens, labels)),
            "decoder": count(lambda: tok.decode_codes(z)),
        }


@torch.no_grad()
def speed(name: str, batch: int, dtype: str, repeats: int) -> None:
    """Images/s of `sample(..., static_cache=True)` with the preset's settings, random weights, on the GPU."""
    p = PRESETS[name]
    torch.manual_seed(0)
    with torch.device("cuda"):
        gen = generator_for(p).eval().to(getattr(torch, dtype))
    labels = torch.arange(batch, device="cuda") % 1000
    kw = dict(
        cfg=p.cfg, cfg_schedule=p.cfg_schedule, cfg_power=p.cfg_power, temperature=p.temperature, static_cache=True
    )
    best = float("inf")
    for r in range(repeats + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        gen.sample(labels, generator=torch.Generator(device="cuda").manual_seed(r), **kw)
        torch.cuda.synchronize()
        if r:
            best = min(best, time.perf_counter() - t0)
    print(
        f"| {name} | {sum(t.numel() for t in gen.parameters()) / 1e6:.0f}M | {dtype} | {batch} | "
        f"{batch / best:.1f} images/s (tokens only, static decoder, CFG {p.cfg}) |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tflops", type=float, default=989.0, help="dense bf16 peak per GPU (H100 SXM: 989)")
    ap.add_argument("--mfu", type=float, default=0.3, help="achieved fraction of the peak")
    ap.add_argument("--json", default=None)
    ap.add_argument("--speed", default=None, choices=sorted(PRESETS), help="measure this preset's size on a GPU")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.speed:
        speed(args.speed, args.batch, args.dtype, args.repeats)
        return
    rate = args.tflops * 1e12 * args.mfu
    rows = {}
    print(f"assumed: {args.tflops:.0f} TFLOP/s peak x {args.mfu:.0%} = {rate / 1e12:.0f} TFLOP/s per GPU")
    print(f"| preset | params | GFLOP/image (generator + decoder) | GPU-hours for {NUM_FID:,} images |")
    print("|---|---|---|---|")
    for name, p in PRESETS.items():
        f = flops_per_image(p)
        total = f["generator"] + f["decoder"]
        rows[name] = {**f, "gpu_hours": total * NUM_FID / rate / 3600}
        print(
            f"| {name} | {f['params'] / 1e6:.0f}M | {f['generator'] / 1e9:.0f} + {f['decoder'] / 1e9:.0f} | "
            f"{rows[name]['gpu_hours']:.2f} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"tflops": args.tflops, "mfu": args.mfu, "presets": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
