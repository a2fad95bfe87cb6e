"""Issue 10 E2: the authors' post-training recipe at length, trained on token ids and on the authors' round trip.

    python experiments/posttrain_authors.py --out runs/e2 [--tokenizer TOK --generator GEN] [--arms ids,roundtrip]

One tokenizer and one trained generator (by default the committed `experiments/models/baseline-s0/`: the dose
study's tokenizer and its 2000-step AR generator, gFID-fmnist 11 at the authors' sampler regime).
Pairs (sigma = 0.9) and 1000 held-out generated tokens are sampled at CFG 5 with the
power schedule 1.15 (as the authors'); the two arms differ only in what the decoder is trained on: the generated
ids, or encode(uint8(decode(ids))) (the authors' round trip). Both arms are judged on the same held-out tokens
(checked). Recipe: `experiments/posttrain_recipes.py`'s `authors` (40 epochs over the pairs, MSE + offline
perceptual term + hinge GAN 0.5 with a fresh discriminator from step 0, adaptive weight, DiffAug, LeCam 1e-3,
main training's final lr, an EMA that starts at the untouched decoder and is evaluated through it), with two
adaptations to this scale, both fixed before the run:
- the EMA decay is set so that at 40 epochs the EMA holds the same share of the untouched decoder as the
  authors' 0.9999 after their 40 epochs (200k pairs at batch 1024: 7800 steps, 0.9999^7800 = 0.46);
- 192 pairs at batch 32 (6 steps an epoch, 240 steps for 40 epochs; one warm-up epoch as the authors'), so
  that both arms' three seeds with their controls fit in 40 minutes on two cores (one process per arm).
Every run has its sigma = 1 control with the same recipe, seed and steps (`post-train --control`).

Endpoints, fixed before the run (docs/studies.md):
- per arm and seed: Delta = gFID-proxy(post-trained) - gFID-proxy(control) of the EMA decoders after 40 epochs
  on the arm's held-out generated tokens (FID-fmnist, 1000 images); success as issue 10's criterion: Delta <= -0.5
  on every seed;
- reported beside it, not selected on: the raw (online) decoders, the points at 10, 20 and 30 epochs of the same
  schedule (not separate shorter runs: the lr has not decayed there), and post-trained - untouched (the paper's).
`--budget long` (token ids only, fixed before its run): does the same recipe, run on, widen the gap? 80 epochs
with E2's per-step EMA decay (so the EMA keeps 0.46^2 = 0.21 of the untouched decoder at the end, as the authors'
fixed 0.9999 would after 80 epochs) and the learning rate's cosine stretched over the 80 epochs; endpoint: Delta of
the EMA decoders after 80 epochs, <= -0.5 on every seed to count; the points every 10 epochs reported beside it.
Recorded in `experiments/results/posttrain-authors-long.json`. `--budget longer`: the same at 160 epochs (EMA keeps
0.46^4 = 0.04), run after `long` ended short of -0.5; the same endpoint at 160 epochs, FID-inception checked only if it
passes; `experiments/results/posttrain-authors-longer.json`.
Every step goes through the CLI and is skipped when its output exists, so an interrupted study continues.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
from posttrain_dose import aux_network, inception_check, pairs_once, robustok  # noqa: E402
from posttrain_recipes import RECIPES  # noqa: E402  (the recipe is defined once, there)
from study_models import GENERATOR, TOKENIZER  # noqa: E402

ARMS = ("ids", "roundtrip")
SEEDS = (0, 1, 2)
SIGMA = 0.9
GUIDANCE = ["--cfg", "5", "--cfg-schedule", "power", "--cfg-power", "1.15"]
AUTHORS_EMA_KEEP = 0.9999**7800  # the untouched decoder's share in the authors' EMA after 40 epochs (0.46)
FULL = {"num_pairs": 192, "num_eval": 1000, "batch": 32, "epochs": 40, "eval_epochs": 10}
BUDGETS = {
    "full": FULL,  # long, longer: E2 run on with its decay per step (the authors' share reached at 40 epochs)
    "long": {**FULL, "epochs": 80, "ema_epochs": 40},
    "longer": {**FULL, "epochs": 160, "eval_epochs": 20, "ema_epochs": 40},
    "quick": {"num_pairs": 32, "num_eval": 32, "batch": 16, "epochs": 2, "eval_epochs": 1},
}  # wiring only
RESULTS = {
    "full": ROOT / "experiments" / "results" / "posttrain-authors.json",
    "long": ROOT / "experiments" / "results" / "posttrain-authors-long.json",
    "longer": ROOT / "experiments" / "results" / "posttrain-authors-longer.json",
}


def scaled_recipe(budget: dict, aux: Path) -> list[str]:
    """The `authors` recipe with this scale's batch, warm-up, evaluation points and EMA decay."""
    steps_per_epoch = budget["num_pairs"] // budget["batch"]
    ema_steps = budget.get("ema_epochs", budget["epochs"]) * steps_per_epoch
    decay = AUTHORS_EMA_KEEP ** (1 / ema_steps)  # the authors' share of the untouched decoder after ema_steps
    return [
        *(o.format(aux=aux) for o in RECIPES["authors"]),
        f"epochs={budget['epochs']}",
        f"data.batch_size={budget['batch']}",
        f"train.warmup_steps={steps_per_epoch}",
        f"train.ema_decay={decay:.6f}",
        f"eval_every={budget['eval_epochs'] * steps_per_epoch}",
    ]


def run_arm(arm: str, tok: str, gen: str, out: Path, budget: dict, seeds=SEEDS, amp: str | None = None) -> dict:
    pairs = pairs_once(out / arm / "pairs", gen, tok, sigma=SIGMA, num_pairs=budget["num_pairs"],
                       num_eval=budget["num_eval"], seed=0, sampling=GUIDANCE, pair_input=arm)  # fmt: skip
    aux = aux_network(out)
    runs = []
    for seed in seeds:
        run = out / arm / f"post-seed{seed}"
        if not (run / "posttrain.json").is_file():
            robustok(
                "post-train",
                "configs/posttrain/fmnist.yaml",
                f"tokenizer={tok}",
                f"pairs={pairs}",
                f"run.dir={run}",
                f"run.seed={seed}",
                *scaled_recipe(budget, aux),
                "eval_features=fmnist",
                "eval_reference=fashion-mnist:test",
                f"eval_num_reference={budget['num_eval']}",
                *([f"train.amp={amp}"] if amp else []),
                "--control",
            )
        runs.append(json.loads((run / "posttrain.json").read_text()))
        print(
            f"{arm} seed {seed}: post - control (EMA) "
            f"{runs[-1]['gfid_proxy_after'] - runs[-1]['gfid_proxy_control']:+.2f}",
            flush=True,
        )
    return summarize(arm, runs)


def summarize(arm: str, runs: list[dict]) -> dict:
    """Per seed: the endpoint (EMA, final), the raw decoders and the curve points; success per issue 10."""
    before = runs[0]["gfid_proxy_before"]
    post = [r["gfid_proxy_after"] for r in runs]
    control = [r["gfid_proxy_control"] for r in runs]
    delta = [p - c for p, c in zip(post, control)]
    curve = []
    for i, point in enumerate(runs[0]["curve"]):
        row = {"epoch": round(point["epoch"], 3), "step": point["step"]}
        for key, label in (("gfid_proxy", "ema"), ("gfid_proxy_raw", "raw")):
            p = [r["curve"][i][key] for r in runs]
            c = [r["control_curve"][i][key] for r in runs]
            row[label] = {"post": p, "control": c, "delta_vs_control": [a - b for a, b in zip(p, c)]}
        curve.append(row)
    return {
        "arm": arm,
        "pair_input": runs[0]["pair_input"],
        "steps": runs[0]["steps"],
        "epochs": runs[0]["epochs"],
        "untouched": before,
        "post": post,
        "control": control,
        "delta_vs_control": delta,
        "delta_vs_untouched": [p - before for p in post],
        "delta_mean": float(np.mean(delta)),
        "delta_sd": float(np.std(delta, ddof=1)) if len(delta) > 1 else None,
        "post_raw": [r["gfid_proxy_after_raw"] for r in runs],
        "control_raw": [r["gfid_proxy_control_raw"] for r in runs],
        "beats_control_every_seed": bool(all(d <= -0.5 for d in delta)),
        "curve": curve,
    }


def same_held_out(out: Path, arms: list[str]) -> bool:
    """Whether every arm's held-out generated tokens are the same (the arms are judged on one set)."""
    from robustok.tokens.pairs import PairStore

    held = [np.asarray(PairStore(out / a / "pairs").eval_generated) for a in arms]
    return all(np.array_equal(held[0], h) for h in held[1:])


def markdown(result: dict) -> str:
    """The docs/studies.md tables from a recorded result: the endpoint per arm, then the curves."""
    f = lambda xs: ", ".join(f"{x:+.2f}" for x in xs)  # noqa: E731
    lines = [
        "| decoder input | steps (epochs) | untouched | post-trained (EMA) | control σ = 1 (EMA) | "
        "post − control per seed | mean ± sd | post − untouched (paper's) | raw weights: post − control |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in result["arms"]:
        raw = [p - c for p, c in zip(r["post_raw"], r["control_raw"])]
        sd = "" if r["delta_sd"] is None else f" ± {r['delta_sd']:.2f}"
        lines.append(
            f"| {r['arm']} | {r['steps']} ({r['epochs']:g}) | {r['untouched']:.2f} | "
            f"{np.mean(r['post']):.2f} | {np.mean(r['control']):.2f} | {f(r['delta_vs_control'])} | "
            f"{r['delta_mean']:+.2f}{sd} | {np.mean(r['delta_vs_untouched']):+.2f} | {f(raw)} |"
        )
    lines += [
        "",
        "| decoder input | epoch | EMA: post − control per seed | EMA: post − untouched | "
        "raw: post − control per seed | raw: post − untouched |",
        "|---|---:|---|---:|---|---:|",
    ]
    for r in result["arms"]:
        for c in r["curve"]:
            e, w = c["ema"], c["raw"]
            lines.append(
                f"| {r['arm']} | {c['epoch']:g} | {f(e['delta_vs_control'])} | "
                f"{np.mean(e['post']) - r['untouched']:+.2f} | {f(w['delta_vs_control'])} | "
                f"{np.mean(w['post']) - r['untouched']:+.2f} |"
            )
    if result.get("inception"):
        lines += [
            "",
            "| decoder input | FID-inception: untouched | post-trained (EMA) | control σ = 1 (EMA) | "
            "post − control per seed | same sign as FID-fmnist |",
            "|---|---:|---:|---:|---|---|",
        ]
        fmnist = {r["arm"]: r["delta_vs_control"] for r in result["arms"]}
        for arm, r in result["inception"].items():
            same = sum((a < 0) == (b < 0) for a, b in zip(r["delta_vs_control"], fmnist.get(arm, [])))
            lines.append(
                f"| {arm} | {r['untouched']:.2f} | {np.mean(r['post']):.2f} | {np.mean(r['control']):.2f} | "
                f"{f(r['delta_vs_control'])} | {same} of {len(r['delta_vs_control'])} seeds |"
            )
    return "\n".join(lines)


def plot(result: dict, png: Path) -> None:
    """Post - control (per seed, EMA and raw decoders) against epochs, one panel per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = result["arms"]
    fig, axes = plt.subplots(1, len(arms), figsize=(3.4 * len(arms), 3), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], arms):
        for k, (label, marker) in enumerate((("ema", "o"), ("raw", "x"))):
            epochs = [c["epoch"] for c in r["curve"]]
            deltas = [c[label]["delta_vs_control"] for c in r["curve"]]
            for e, ds in zip(epochs, deltas):
                ax.scatter(
                    [e + (k - 0.5) * 0.8] * len(ds),
                    ds,
                    c=f"C{k}",
                    marker=marker,
                    s=16,
                    label=label if e == epochs[0] else None,
                )
            ax.plot(epochs, [np.mean(d) for d in deltas], c=f"C{k}", lw=1)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.axhline(-0.5, color="0.5", lw=0.8, ls=":")  # the success threshold on every seed
        ax.set_title(f"decoder input: {r['arm']}", fontsize=9)
        ax.set_xlabel("epochs over the pairs")
    axes[0][0].set_ylabel("post-trained − control (gFID proxy)")
    axes[0][0].legend(fontsize=7, frameon=False)
    fig.savefig(png, dpi=110, bbox_inches="tight")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--tokenizer",
        default=str(TOKENIZER),
        help="a trained tokenizer directory (default: the committed models of experiments/study_models.py)",
    )
    p.add_argument("--generator", default=str(GENERATOR), help="a trained generator of its tokens")
    p.add_argument("--out")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--budget", choices=sorted(BUDGETS), default="full")
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="post-training seeds (default: 0,1,2)")
    p.add_argument(
        "--amp", choices=("fp32", "bf16"), help="train.amp of the runs (default: the shipped auto; E2 ran in fp32)"
    )
    p.add_argument(
        "--record",
        action="store_true",
        help="write experiments/results/posttrain-authors[-long|-longer].json (budgets full, long, longer)",
    )
    p.add_argument("--markdown", metavar="JSON", help="print the docs tables of a recorded result and stop")
    p.add_argument("--plot", nargs=2, metavar=("JSON", "PNG"), help="draw the curves of a recorded result and stop")
    p.add_argument(
        "--inception-check",
        action="store_true",
        help="FID-inception of every finished arm's "
        "endpoint (with --out; adds 'inception' to the recorded result with --record)",
    )
    args = p.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return
    if args.plot:
        plot(json.loads(Path(args.plot[0]).read_text()), Path(args.plot[1]))
        return
    if not args.out:
        p.error("--out is required")
    out = Path(args.out).resolve()
    arms = [a for a in args.arms.split(",") if a]
    if unknown := set(arms) - set(ARMS):
        p.error(f"--arms: unknown {sorted(unknown)}; choose from {list(ARMS)}")
    seeds = [int(x) for x in args.seeds.split(",") if x]
    if args.inception_check:
        check = inception_check(out, arms, seeds)
        if args.record and args.budget in RESULTS:
            record = RESULTS[args.budget]
            result = json.loads(record.read_text())
            result["inception"] = {**result.get("inception", {}), **check}
            record.write_text(json.dumps(result, indent=1))
        return
    for what, path in (("--tokenizer", args.tokenizer), ("--generator", args.generator)):
        if not (Path(path) / "config.json").is_file():
            p.error(
                f"{what} {path}: no trained model there (build the committed ones with "
                "`python experiments/study_models.py --out runs/study-models --install`)"
            )
    budget = BUDGETS[args.budget]
    tok, gen = str(Path(args.tokenizer).resolve()), str(Path(args.generator).resolve())
    rows = [run_arm(arm, tok, gen, out, budget, seeds, args.amp) for arm in arms]
    result = {
        "sigma": SIGMA,
        "guidance": " ".join(GUIDANCE),
        "budget": args.budget,
        **budget,
        "recipe": scaled_recipe(budget, Path("<aux>")),
        "seeds": seeds,
        "tokenizer": args.tokenizer,
        "generator": args.generator,
        "same_held_out": same_held_out(out, arms),
        "arms": rows,
    }
    (out / "results.json").write_text(json.dumps(result, indent=1))
    if args.record and args.budget in RESULTS:
        record = RESULTS[args.budget]
        previous = json.loads(record.read_text()) if record.is_file() else {"arms": []}
        done = {r["arm"] for r in rows}  # an arm run on its own adds to (or replaces its row in) the record
        result["arms"] = [r for r in previous["arms"] if r["arm"] not in done] + rows
        result["same_held_out"] = same_held_out(out, [r["arm"] for r in result["arms"]])
        record.write_text(json.dumps(result, indent=1))
    print(markdown(result))


if __name__ == "__main__":
    main()
