"""The masked-token generator (MaskGIT style) next to the AR generator of the tokenizer-family study, then its
post-training against the sigma = 1 control.

    python experiments/masked_generator.py \\
        --tokenizer /root/robustok-runs/family-half/tokenizers/baseline-s0/tokenizer \\
        --tokens /root/robustok-runs/family-half/bench/tokens/baseline-s0 \\
        --ar-results experiments/results/tokenizer_family-half-seeds.json \\
        --out /root/robustok-runs/masked --result experiments/results/masked_generator.json

1. gFID: the benchmark's own functions (`robustok.tokbench._train_generator` and `_gfid`) with the benchmark's
   budget (the `spec` of `--ar-results`: generator steps, seed, images, CFG scale, features), but
   `configs/generator/fmnist-masked.yaml` (model.kind=masked, preset tiny like the AR's) instead of the AR config.
   The token store is the benchmark's (linked, read only), so both generators see the same tokens.
2. Post-training: `robustok post-train-data` with the masked generator at `--sigma` (each real token kept with
   probability sigma, the rest filled in by masked decoding), then `robustok post-train configs/posttrain/fmnist.yaml
   --control`: the decoder post-trained on those pairs and the sigma = 1 control (real tokens), same steps, same
   held-out generated tokens; gFID proxy of both and of the untouched decoder.

3. `--sweep`: gFID of one sample set for a few other sampling settings (CFG scale/schedule, decoding steps,
   choice temperature), as a sensitivity check (picked on the reference set itself, so not a tuned result).

Every stage is cached under `--out`, and the result JSON is rewritten after each stage (gFID first).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path


def gfid_stage(args, spec_dict: dict, out: Path) -> dict:
    """Train the masked generator with the benchmark's budget and measure gFID as the benchmark does."""
    from robustok.demo.stages import config_file
    from robustok.metrics.features import get_feature_net
    from robustok.metrics.fid import source_stats
    from robustok.tokbench import BenchmarkSpec, Entry, _gfid, _train_generator

    keys = ("train_data", "gen_steps", "pretok_images", "gen_images", "cfg", "features")
    spec = BenchmarkSpec(
        **{k: spec_dict[k] for k in keys},
        generator_overrides=list(args.override),
        generator_config=str(config_file("generator/fmnist-masked.yaml")),
    )
    name = Path(args.tokens).name
    link = out / "tokens" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(Path(args.tokens).resolve(), target_is_directory=True)  # the benchmark's store, read only
    entry = Entry(name, args.tokenizer, 0)
    seed = spec_dict["gen_seeds"][0]
    t0 = time.time()
    gen_path = _train_generator(entry, spec, out, seed)
    t1 = time.time()
    features = get_feature_net(spec.features)
    reference = source_stats(spec.train_data, features, num_images=spec.gen_images)
    g = _gfid(entry, gen_path, spec, features, reference)
    return {
        "spec": asdict(spec),
        "generator": gen_path,
        "seed": seed,
        **g,
        "wall_s": {"train": round(t1 - t0, 1), "gfid": round(time.time() - t1, 1)},
    }


def posttrain_stage(args, gen_path: str, cfg_scale: float, out: Path) -> dict:
    """Pairs at sigma from the masked generator, post-training + the sigma = 1 control (default recipe)."""
    from robustok.cli import main
    from robustok.config import load_config
    from robustok.posttrain.train import PostTrainConfig, post_train

    pairs = out / f"pairs-sigma{args.sigma}"
    t0 = time.time()
    if not (pairs / "manifest.json").is_file():
        rc = main(
            [
                "post-train-data",
                gen_path,
                "--tokenizer",
                args.tokenizer,
                "--sigma",
                str(args.sigma),
                "--num-pairs",
                str(args.num_pairs),
                "--num-eval",
                str(args.num_eval),
                "--cfg",
                str(cfg_scale),
                "--out",
                str(pairs),
                "--seed",
                "0",
                "--no-progress",
                "--overwrite",
            ]
        )
        if rc:
            raise SystemExit(f"post-train-data failed ({rc})")
    t1 = time.time()
    run_dir = out / f"post-sigma{args.sigma}"
    done = run_dir / "posttrain.json"
    if done.is_file():
        summary = json.loads(done.read_text())
    else:
        cfg = load_config(
            PostTrainConfig,
            "configs/posttrain/fmnist.yaml",
            [f"tokenizer={args.tokenizer}", f"pairs={pairs}", f"run.dir={run_dir}", "run.seed=0", "run.progress=false"],
        )
        summary = post_train(cfg, with_control=True)
    keep = (
        "features",
        "sigma",
        "steps",
        "epochs",
        "gfid_proxy_before",
        "gfid_proxy_after",
        "gfid_proxy_best",
        "gfid_proxy_control",
        "gfid_proxy_control_best",
        "curve",
        "control_curve",
    )
    return {
        "pairs": str(pairs),
        "num_pairs": args.num_pairs,
        "num_eval": args.num_eval,
        "pairs_cfg": cfg_scale,
        "recipe": "configs/posttrain/fmnist.yaml",
        **{k: summary.get(k) for k in keep},
        "delta_post_minus_control": (
            summary["gfid_proxy_after"] - summary["gfid_proxy_control"]
            if summary.get("gfid_proxy_control") is not None
            else None
        ),
        "wall_s": {"pairs": round(t1 - t0, 1), "posttrain": round(time.time() - t1, 1)},
    }


SWEEP = [  # (cfg, cfg_schedule, mask_steps, choice_temperature): sampling settings around the defaults
    (1.5, "constant", 10, 4.5),
    (3.0, "linear", 10, 4.5),
    (1.5, "constant", 10, 1.0),
    (1.5, "constant", 16, 4.5),
    (2.5, "constant", 10, 4.5),
]


def sweep_stage(args, gen_path: str, spec: dict) -> list[dict]:
    """gFID (one sample set, seed 0, the benchmark's reference) for a few sampling settings of the masked
    generator. Chosen after the fact on the reference set itself: a sensitivity check, not a tuned result."""
    import torch

    from robustok.adapters import load_tokenizer
    from robustok.demo.stages import decoded_fid
    from robustok.generator import load_generator
    from robustok.generator.masked import MaskedSampling
    from robustok.generator.sampling import sample_codes
    from robustok.metrics.features import get_feature_net
    from robustok.metrics.fid import source_stats

    gen, tok = load_generator(gen_path).eval(), load_tokenizer(args.tokenizer).eval()
    features = get_feature_net(spec["features"])
    reference = source_stats(spec["train_data"], features, num_images=spec["gen_images"])
    n, rows = spec["gen_images"], []
    labels = torch.arange(n) % gen.config.num_classes
    for cfg, schedule, steps, tau in SWEEP:
        opts = MaskedSampling(cfg=cfg, cfg_schedule=schedule, mask_steps=steps, choice_temperature=tau)
        rng = torch.Generator().manual_seed(0)
        ids = torch.cat([sample_codes(gen, labels[lo : lo + 250], opts, rng) for lo in range(0, n, 250)])
        rows.append(
            {
                "cfg": cfg,
                "cfg_schedule": schedule,
                "mask_steps": steps,
                "choice_temperature": tau,
                "gfid_seed0": decoded_fid(tok, ids, features, reference),
            }
        )
        print(f"  sweep {rows[-1]}")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--tokens", required=True, help="the benchmark's token store of this tokenizer")
    p.add_argument("--ar-results", required=True, help="the benchmark's results.json (spec + the AR's gFID)")
    p.add_argument("--out", required=True)
    p.add_argument("--result", default="experiments/results/masked_generator.json")
    p.add_argument("--sigma", type=float, default=0.5)
    p.add_argument("--num-pairs", type=int, default=4000)
    p.add_argument("--num-eval", type=int, default=1000)
    p.add_argument("--override", action="append", default=[], help="generator config override (repeatable)")
    p.add_argument("--skip-posttrain", action="store_true")
    p.add_argument("--sweep", action="store_true", help="also a few sampling settings (one sample set each)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench = json.loads(Path(args.ar_results).read_text())
    name = Path(args.tokens).name
    ar = next(r for r in bench["tokenizers"] if r["name"] == name)
    result = {
        "tokenizer": args.tokenizer,
        "tokens": args.tokens,
        "ar": {k: ar[k] for k in ("gfid_nocfg", "gfid_cfg", "gfid_nocfg_noise", "gfid_cfg_noise")},
        "ar_source": args.ar_results,
    }
    cache = out / "gfid.json"
    if cache.is_file():
        result["masked"] = json.loads(cache.read_text())
    else:
        result["masked"] = gfid_stage(args, bench["spec"], out)
        cache.write_text(json.dumps(result["masked"], indent=2))
    Path(args.result).write_text(json.dumps(result, indent=2) + "\n")
    m = result["masked"]
    print(
        f"masked: gFID {m['gfid_nocfg']:.2f} without CFG, {m['gfid_cfg']:.2f} with CFG {m['spec']['cfg']}; "
        f"AR: {ar['gfid_nocfg']:.2f} / {ar['gfid_cfg']:.2f}"
    )
    if not args.skip_posttrain:
        result["posttrain"] = posttrain_stage(args, m["generator"], m["spec"]["cfg"], out)
        Path(args.result).write_text(json.dumps(result, indent=2) + "\n")
        pt = result["posttrain"]
        print(
            f"post-training (sigma={args.sigma}): untouched {pt['gfid_proxy_before']:.2f}, post-trained "
            f"{pt['gfid_proxy_after']:.2f}, control {pt['gfid_proxy_control']:.2f}"
        )
    if args.sweep:
        cache = out / "sweep.json"
        if not cache.is_file():
            cache.write_text(json.dumps(sweep_stage(args, m["generator"], bench["spec"]), indent=2))
        result["sampling_sweep"] = json.loads(cache.read_text())
        Path(args.result).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
