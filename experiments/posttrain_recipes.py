"""Post-training recipes vs their sigma = 1 controls, on the tokenizers, generators and pairs of a finished demo.

    python experiments/posttrain_recipes.py runs/demo-full --out runs/recipes [--recipes demo,low-lr,paper]

For each tokenizer (baseline, robust), recipe and seed: post-train on the demo's pairs (with the demo profile's
post-training settings: steps, overrides, FID features, number of reference images) and run the control with
the same recipe and seed (`post_train(..., with_control=True)`), then print Delta = gFID-proxy(post) -
gFID-proxy(control) per seed, its mean and sd, and both against the untouched decoder. Finished runs are read
back from `<out>/<name>-<recipe>-seed<k>/posttrain.json`, so an interrupted study continues.

The `authors` recipe uses the authors' settings (docs/posttrain.md): 40 epochs over the pairs, hinge GAN 0.5
(adaptive) with a fresh discriminator from step 0, DiffAug, LeCam 1e-3, EMA 0.9999 from the untouched decoder and
evaluated through it, and an offline perceptual term (`loss.perceptual=aux`; its network is trained into
`<out>/aux-perceptual.safetensors` on first use, standing in for LPIPS). It is long (40 epochs of the demo's pairs)
and has not been run. The authors' decoder is trained on re-encoded pairs: give `--pairs` a folder of
`<name>/` pairs made with `robustok post-train-data --pair-input roundtrip` (the demo's own pairs hold ids).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robustok.demo.profiles import DemoProfile
from robustok.demo.stages import mean_sd, point_name, post_train_config
from robustok.posttrain.train import post_train

RECIPES = {
    "demo": [],  # the demo's own post-training
    "low-lr": ["train.lr=2.0e-4", "train.min_lr=2.0e-5"],  # main training's final lr
    "paper": [
        "train.lr=2.0e-4",
        "train.min_lr=2.0e-5",
        "loss.disc_weight=0.1",
        "loss.disc_start=0",
        "loss.disc_lr=2.0e-4",
    ],  # + main training's GAN, reused D
    "authors": [
        "epochs=40",
        "train.lr=2.0e-4",
        "train.min_lr=2.0e-5",  # Table 4b; main training's final lr
        "loss.l1_weight=0.0",  # MSE only (+ perceptual + GAN)
        "loss.disc_weight=0.5",
        "loss.disc_start=0",
        "loss.disc_lr=2.0e-4",
        "loss.adaptive_weight=true",
        "reuse_discriminator=false",
        "loss.diffaug=color,translation,cutout",
        "loss.lecam_weight=0.001",
        "train.ema_decay=0.9999",
        "eval_ema=true",
        "ema_warmup=false",
        "loss.perceptual=aux",
        "loss.perceptual_weight=1.0",
        "loss.aux_perceptual_weights={aux}",
    ],
}


def run_one(demo: Path, out: Path, name: str, recipe: str, seed: int, profile: DemoProfile, pairs: Path) -> dict:
    run_dir = out / f"{name}-{recipe}-seed{seed}"
    done = run_dir / "posttrain.json"
    if done.is_file():
        return json.loads(done.read_text())
    tok = demo / "tokenizers" / point_name(name, max(profile.tok_checkpoints))  # the final main-training point
    aux = out / "aux-perceptual.safetensors"
    overrides = [o.format(aux=aux) for o in RECIPES[recipe]]
    if any("{aux}" in o for o in RECIPES[recipe]) and not aux.is_file():
        from robustok.losses.aux_perceptual import train_aux_perceptual

        train_aux_perceptual(aux)
    cfg = post_train_config(tok, pairs / name, run_dir, seed, profile, overrides)
    return post_train(cfg, with_control=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("demo", help="a finished demo folder (tokenizers/, pairs/)")
    p.add_argument("--out", required=True)
    p.add_argument("--recipes", default="demo,low-lr,paper")
    p.add_argument("--names", default="baseline,robust")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--pairs", default=None, help="folder of <name>/ pairs folders (default: the demo's pairs/)")
    a = p.parse_args()
    demo, out = Path(a.demo), Path(a.out)
    profile = DemoProfile(**json.loads((demo / "results.json").read_text())["profile_config"])
    rows = []
    for name in a.names.split(","):
        for recipe in a.recipes.split(","):
            runs = [
                run_one(demo, out, name, recipe, int(s), profile, Path(a.pairs or demo / "pairs"))
                for s in a.seeds.split(",")
            ]
            delta = [r["gfid_proxy_after"] - r["gfid_proxy_control"] for r in runs]
            row = {
                "tokenizer": name,
                "recipe": recipe,
                "before": runs[0]["gfid_proxy_before"],
                "post": mean_sd([r["gfid_proxy_after"] for r in runs])[0],
                "control": mean_sd([r["gfid_proxy_control"] for r in runs])[0],
                "delta": delta,
            }
            row["delta_mean"], row["delta_sd"] = mean_sd(delta)
            rows.append(row)
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    print(
        "| tokenizer | recipe | gFID before | after post-training | after control | post - control per seed | "
        "mean ± sd |"
    )
    print("|---|---|---:|---:|---:|---|---:|")
    for r in rows:
        sd = f" ± {r['delta_sd']:.2f}" if r["delta_sd"] is not None else ""
        print(
            f"| {r['tokenizer']} | {r['recipe']} | {r['before']:.2f} | {r['post']:.2f} | {r['control']:.2f} | "
            f"{', '.join(f'{d:+.2f}' for d in r['delta'])} | {r['delta_mean']:+.2f}{sd} |"
        )


if __name__ == "__main__":
    main()
