"""A tokenizer family where robustness and reconstruction can disagree, benchmarked with `benchmark-tokenizers`.

    python experiments/tokenizer_family.py --out runs/family [--budget full|half|quick] [--only a,b]

All members have K = 1024 (so their pFIDs are comparable) and are trained with `run.deterministic=true` (one
thread: "seed 1" names one result). Members: baseline and robust (the paper's perturbation) with training seeds
0, 1, 2 (the seed spread of latent perturbation's effect on gFID), stronger perturbation, neighbours around z,
smaller and larger code dimension, a narrower network, and half the training length. Each tokenizer is trained
once (a finished `tokenizer/` is reused; an interrupted one resumes), then every member gets the same generator
budget through `robustok.tokbench`, whose steps are cached too. Writes `<out>/results.json` and, with
`--record`, the per-tokenizer results and the two answers to `experiments/results/tokenizer_family-<budget>.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEEDS = (0, 1, 2)
MEMBERS: dict[str, tuple[str, list[str]]] = {
    **{f"baseline-s{s}": ("fmnist-baseline", [f"run.seed={s}"]) for s in SEEDS},
    **{f"robust-s{s}": ("fmnist-robust", [f"run.seed={s}"]) for s in SEEDS},
    "robust-strong": ("fmnist-robust", ["perturb.beta=0.3", "perturb.delta=50"]),
    "robust-latent": ("fmnist-robust", ["perturb.neighbours=latent"]),
    "baseline-dim4": ("fmnist-baseline", ["model.code_dim=4"]),
    "robust-dim16": ("fmnist-robust", ["model.code_dim=16"]),
    "baseline-narrow": ("fmnist-baseline", ["model.base_channels=16", "model.hidden_dim=32"]),
    "robust-short": ("fmnist-robust", ["@half"]),  # half the training steps (disc_start scaled too)
}
# tokenizer steps, generator steps, pretokenized images, evaluation images, gFID samples
BUDGETS = {"full": (2400, 1500, 60000, 2000, 2000), "half": (1200, 800, 30000, 1000, 1000), "quick": (8, 4, 64, 32, 32)}
QUICK = [
    "model.base_channels=8",
    "model.channel_mult=[1,2]",
    "model.hidden_dim=16",
    "data.batch_size=16",
    "perturb.delta=4",
]


def member_steps(budget: str, extra: list[str]) -> int:
    """The budget's tokenizer steps, or half of them (`@half`), or a set number (`@steps=N`)."""
    steps = BUDGETS[budget][0] // (2 if "@half" in extra else 1)
    return next((int(o.split("=", 1)[1]) for o in extra if o.startswith("@steps=")), steps)


def train_member(name: str, out: Path, budget: str, members: dict | None = None) -> str:
    from robustok.config import load_config
    from robustok.tokenizer.train import TokenizerTask, TokenizerTrainConfig
    from robustok.train.export import train_or_resume

    base, extra = (members or MEMBERS)[name]
    steps = member_steps(budget, extra)
    run_dir = out / "tokenizers" / name
    overrides = [
        f"run.dir={run_dir}",
        f"train.steps={steps}",
        f"loss.disc_start={steps // 2}",
        f"run.ckpt_every={max(steps // 4, 1)}",
        "run.sample_every=0",
        "run.deterministic=true",
        *(QUICK if budget == "quick" else []),
        *[o for o in extra if not o.startswith("@")],
    ]
    if budget == "quick" and "model.code_dim=16" in extra:
        overrides.remove("perturb.delta=4")
    cfg = load_config(TokenizerTrainConfig, ROOT / "configs" / "tokenizer" / f"{base}.yaml", overrides)
    return str(train_or_resume("tokenizer", lambda: TokenizerTask(cfg), cfg.run, cfg.train, cfg.data, full_config=cfg))


def seed_members(rows: list[dict], endpoint: str) -> tuple[list[float], list[float]]:
    """`endpoint` of the baseline and of the robust training-seed members."""

    def values(prefix: str) -> list[float]:
        return [r[endpoint] for r in rows if r["name"] in {f"{prefix}-s{s}" for s in SEEDS}]

    return values("baseline"), values("robust")


def pooled_seed_var(base: list[float], rob: list[float]) -> float:
    """The training-seed variance pooled over the two arms."""
    return float((np.var(base, ddof=1) + np.var(rob, ddof=1)) / 2)


def perturbation_effect(rows: list[dict], endpoint: str) -> dict:
    """robust - baseline over the training seeds, next to the seed spread and the noise floor."""
    base, rob = seed_members(rows, endpoint)
    if len(base) < 2 or len(rob) < 2:
        return {}
    sd = float(np.sqrt(pooled_seed_var(base, rob)))
    diff = float(np.mean(rob) - np.mean(base))
    return {
        "baseline": base,
        "robust": rob,
        "difference": diff,
        "pooled_seed_sd": sd,
        "noise_floor": float(np.mean([r[f"{endpoint}_noise"] for r in rows])),
        "beyond_seed_spread": bool(abs(diff) > 2 * sd * np.sqrt(2 / len(base))),
    }


def markdown(result: dict) -> str:
    """The docs tables (docs/studies.md, docs/measured.md) from a recorded result: per tokenizer, the
    perturbation effect, the predictor comparison."""
    f = lambda v, d=2: "–" if v is None or v != v else f"{v:.{d}f}"  # noqa: E731 (None or NaN)
    lines = [
        "| tokenizer | PSNR | rFID | pFID | usage | gFID (floor) | gFID CFG 1.5 (floor) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["tokenizers"]:
        lines.append(
            f"| {r['name']} | {f(r['psnr'])} | {f(r['rfid'])} | {f(r['pfid'])} | {r['codebook_usage']:.0%} | "
            f"{f(r['gfid_nocfg'])} ({f(r['gfid_nocfg_noise'])}) | {f(r['gfid_cfg'])} ({f(r['gfid_cfg_noise'])}) |"
        )
    lines += [
        "",
        "| endpoint | baseline (3 seeds) | robust (3 seeds) | robust − baseline | pooled seed sd | noise floor |",
        "|---|---|---|---:|---:|---:|",
    ]
    for key, e in result.get("perturbation", {}).items():
        if e:
            lines.append(
                f"| {key} | {', '.join(f(v) for v in e['baseline'])} | {', '.join(f(v) for v in e['robust'])} | "
                f"{e['difference']:+.2f} | {f(e['pooled_seed_sd'])} | {f(e['noise_floor'])} |"
            )
    lines += [
        "",
        "| endpoint | Spearman pFID / rFID | difference [95% CI] | Pearson pFID / rFID | difference [95% CI] | "
        "pairs ordered as gFID: pFID / rFID (where they disagree) |",
        "|---|---|---|---|---|---|",
    ]
    for k, group in result["by_codebook_size"].items():
        for key in ("gfid_nocfg", "gfid_cfg"):
            c = group[key]
            sp, pe, o = c["spearman"], c["pearson"], c["ordering"]
            lines.append(
                f"| {key} (K={k}, n={c['n']}) | {f(sp['a'])} / {f(sp['b'])} | {sp['difference']:+.2f} "
                f"[{f(sp['ci95'][0])}, {f(sp['ci95'][1])}] | {f(pe['a'])} / {f(pe['b'])} | "
                f"{pe['difference']:+.2f} [{f(pe['ci95'][0])}, {f(pe['ci95'][1])}] | "
                f"{f(o['a_accuracy'])} / {f(o['b_accuracy'])} ({o['disagreeing_pairs']} pairs: "
                f"{f(o['a_accuracy_on_disagreeing'])} / {f(o['b_accuracy_on_disagreeing'])}) |"
            )
    return "\n".join(lines)


def main() -> None:
    from robustok.tokbench import BenchmarkSpec, run_benchmark
    from robustok.tokbench.report import table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--markdown", metavar="JSON", help="only print the docs tables from a recorded result")
    p.add_argument("--out")
    p.add_argument("--budget", default="full", choices=sorted(BUDGETS))
    p.add_argument("--only", default=None, help="comma list of members (default: all)")
    p.add_argument("--features", default=None, help="default fmnist (random for --budget quick)")
    p.add_argument("--record", action="store_true", help="write experiments/results/tokenizer_family-<budget>.json")
    a = p.parse_args()
    if a.markdown:
        print(markdown(json.loads(Path(a.markdown).read_text())))
        return
    if not a.out:
        p.error("--out is required")
    out = Path(a.out)
    names = a.only.split(",") if a.only else list(MEMBERS)
    unknown = sorted(set(names) - set(MEMBERS))
    if unknown:
        p.error(f"unknown members {unknown}; choose from {list(MEMBERS)}")
    paths = [train_member(n, out, a.budget) for n in names]
    _, gen_steps, pretok, n_eval, n_gen = BUDGETS[a.budget]
    quick = a.budget == "quick"
    spec = BenchmarkSpec(
        gen_steps=gen_steps,
        pretok_images=pretok,
        eval_images=n_eval,
        gen_images=n_gen,
        features=a.features or ("random" if quick else "fmnist"),
        generator_overrides=["model.dim=32", "model.depth=1", "model.heads=2", "data.batch_size=16"] if quick else [],
    )
    result = run_benchmark(paths, spec, out / "bench", log=lambda m: print(m, file=sys.stderr, flush=True))
    result["perturbation"] = {key: perturbation_effect(result["tokenizers"], key) for key in ("gfid_cfg", "gfid_nocfg")}
    print(table(result))
    print(json.dumps(result["perturbation"], indent=1))
    if a.record:
        dest = ROOT / "experiments" / "results" / f"tokenizer_family-{a.budget}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        slim = {**result, "tokenizers": [{k: v for k, v in r.items() if k != "path"} for r in result["tokenizers"]]}
        dest.write_text(json.dumps(slim, indent=1, default=float))


if __name__ == "__main__":
    main()
