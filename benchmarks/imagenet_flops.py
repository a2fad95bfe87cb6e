"""FLOPs of every stage of the ImageNet recipe, counted with torch.utils.flop_counter on the real configs
(random weights, a tiny batch, CPU), and the GPU-hours they imply at an assumed throughput.

    python benchmarks/imagenet_flops.py [--batch 2] [--tflops 989] [--mfu 0.4] [--json out.json]

Counted: matmuls, convolutions and attention (forward and backward, including the adaptive GAN weight's two
extra gradient passes); elementwise work is not counted. `--tflops` is the accelerator's dense bf16 peak
(H100 SXM 989, A100 312), `--mfu` the fraction of it a run achieves. Nothing is timed.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from robustok.config import load_config
from robustok.generator.ar import ARConfig, ARGenerator
from robustok.losses.dino_disc import DinoDiscriminator
from robustok.losses.discriminators import Discriminator
from robustok.losses.frozen_vit import FrozenViT
from robustok.losses.objective import reconstruction_objective
from robustok.losses.semantic import DinoSemanticLoss
from robustok.metrics.lpips import CONV_CHANNELS, CONV_INDICES, LPIPS, TAP_CHANNELS
from robustok.tokenizer.model import Tokenizer
from robustok.tokenizer.train import TokenizerTask, TokenizerTrainConfig

IMAGENET_TRAIN = 1_281_167


def count(fn) -> float:
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def random_lpips() -> LPIPS:
    vgg = {}
    for i, cin, cout in zip(CONV_INDICES, (3,) + CONV_CHANNELS[:-1], CONV_CHANNELS):
        vgg[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3) * 0.01
        vgg[f"features.{i}.bias"] = torch.zeros(cout)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(TAP_CHANNELS)}
    return LPIPS(vgg_state=vgg, head_state=heads)


def tokenizer_task(cfg: TokenizerTrainConfig) -> TokenizerTask:
    """The real task with random weights in place of the pretrained files (their shapes: ViT-S/16, ViT-B)."""
    lc = cfg.loss
    cfg.model.dinov2_checkpoint = None
    lc.perceptual, lc.semantic, lc.disc_weight = "none", "none", 0.0
    task = TokenizerTask(cfg, model=Tokenizer(cfg.model), dataset=[])
    task.perceptual = random_lpips()
    task.disc = Discriminator(
        DinoDiscriminator(
            FrozenViT(lc.dino_disc_image_size, 16, 384, 12, 6), lc.dino_disc_taps, lc.dino_disc_virtual_bs
        ),
        lc.diffaug,
    )
    task.semantic = DinoSemanticLoss(
        FrozenViT(cfg.model.image_size, 16, 768, 12, 12, layer_scale=True), lc.semantic_weight
    )
    lc.perceptual, lc.disc_weight = "lpips", 0.5
    return task


def main_training_flops(cfg: TokenizerTrainConfig, b: int) -> dict[str, float]:
    task = tokenizer_task(cfg)
    x = torch.rand(b, 3, cfg.model.image_size, cfg.model.image_size) * 2 - 1
    out = {}
    for name, step in (("before_disc", 0), ("with_disc", cfg.loss.disc_start)):

        def run():
            res = task.step(task.model, [x], step, task.model)
            res["loss"].backward()
            if "disc_loss" in res:
                res["disc_loss"].backward()

        out[name] = count(run) / b
    with torch.no_grad():
        out["encode"] = count(lambda: task.model.encode(x)) / b
        ids = task.model.encode(x)
        out["decode"] = count(lambda: task.model.decode(ids)) / b

    def post():  # post-training: decode generated tokens (decoder side trainable), same objective, no semantic
        z = task.model.lookup(ids)
        recon = task.model.decode_codes(z).float()
        loss, d_loss, _ = reconstruction_objective(
            recon, x, cfg.loss, task.perceptual, task.disc, task.model.last_layer, 10**9
        )
        loss.backward()
        d_loss.backward()

    out["post_train"] = count(post) / b
    return out


def generator_flops(preset: tuple[int, int, int], b: int) -> dict[str, float]:
    dim, depth, heads = preset
    gen = ARGenerator(
        ARConfig(
            vocab_size=4096,
            grid=[16, 16],
            num_classes=1000,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_ratio=4.0,
            qk_norm=True,
            pos="learned",
            dropout=0.0,
            random_order=True,
            adaln=True,
        )
    )
    from robustok.generator.ar import ar_loss

    tokens = torch.randint(0, 4096, (b, 256))
    labels = torch.randint(0, 1000, (b,))
    train = count(lambda: ar_loss(gen, gen, tokens, labels, 0.1, 0.5).backward()) / b
    with torch.no_grad():
        sample = count(lambda: gen.sample(labels[:1], cfg=6.0, cfg_schedule="power", cfg_power=1.15))
    return {
        "train_sequence": train,
        "sample_with_cfg": sample,
        "params": float(sum(p.numel() for p in gen.parameters())),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--tflops", type=float, default=989.0, help="dense bf16 peak per GPU (H100 SXM: 989)")
    ap.add_argument("--mfu", type=float, default=0.4, help="achieved fraction of the peak")
    ap.add_argument("--skip-generators", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = load_config(TokenizerTrainConfig, "configs/tokenizer/imagenet-robustok.yaml")
    tok = main_training_flops(cfg, args.batch)
    steps, batch, d0 = cfg.train.steps, cfg.data.batch_size, cfg.loss.disc_start
    stages = {
        "main training (200 epochs)": batch * (d0 * tok["before_disc"] + (steps - d0) * tok["with_disc"]),
        "rFID + pFID eval (50k val: 1 + 15 decodes)": 50_000 * (tok["encode"] + 16 * tok["decode"]),
        "pretokenize (10 crops of ImageNet train)": 10 * IMAGENET_TRAIN * tok["encode"],
        "post-training (40 epochs of 200k pairs)": 7800 * 1024 * tok["post_train"],
    }
    per = {"tokenizer": tok}
    if not args.skip_generators:
        for name, preset in (("RAR-B", (768, 24, 16)), ("RAR-L", (1024, 24, 16))):
            g = generator_flops(preset, args.batch)
            per[name] = g
            stages[f"{name} training (250k steps x 2048)"] = 250_000 * 2048 * g["train_sequence"]
            if name == "RAR-B":
                stages["post-train data (200k pairs, RAR-B, CFG)"] = 200_000 * (
                    g["sample_with_cfg"] + tok["encode"] + tok["decode"]
                )
            stages[f"{name} gFID samples (50k, CFG)"] = 50_000 * (g["sample_with_cfg"] + tok["decode"])
    rate = args.tflops * 1e12 * args.mfu
    print(
        "per image / sequence (GFLOPs): "
        + ", ".join(f"{k}={v / 1e9:.1f}" for part in per.values() for k, v in part.items() if k != "params")
    )
    print(f"assumed: {args.tflops:.0f} TFLOP/s peak x {args.mfu:.0%} utilisation = {rate / 1e12:.0f} TFLOP/s per GPU")
    print(f"{'stage':52s} {'PFLOPs':>12s} {'GPU-hours':>10s}")
    for name, flops in stages.items():
        print(f"{name:52s} {flops / 1e15:12.0f} {flops / rate / 3600:10.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "per_item_flops": per,
                    "stage_flops": stages,
                    "tflops": args.tflops,
                    "mfu": args.mfu,
                    "gpu_hours": {k: v / rate / 3600 for k, v in stages.items()},
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
