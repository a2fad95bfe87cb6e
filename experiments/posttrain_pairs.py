"""Issue 21 part 4 (design, fixed before any run): does the authors' recipe beat its sigma = 1 control by more
when it sees more distinct generated pairs? 192 -> 1000 -> 4000 -> 16000 pairs.

    python experiments/posttrain_pairs.py --design                  # the design and the recorded predictions
    python experiments/posttrain_pairs.py --out runs/pairs --prepare # pairs (4 stores) + the perceptual network
    OMP_NUM_THREADS=1 python experiments/posttrain_pairs.py --out runs/pairs --seeds 0 --record   # runs, resumable
    python experiments/posttrain_pairs.py --summarize [--inception-check --out runs/pairs]        # table + scores

The design, endpoint and detectable effect below were committed before any run (commit 4a61ae9 and before);
`robustok diagnose`'s prediction for each condition is in `experiments/predictions/issue21.json`
(`experiments/record_predictions.py`), also committed before any run. The runner was written after them and
changes none of them. Each finished (pair count, seed) is recorded as its own small JSON in
`experiments/results/posttrain-pairs/` (so several processes, one per seed, never write one file), and
`--summarize` builds `experiments/results/posttrain-pairs.json` (endpoints, dose-response, realised MDE and the
scored predictions) from those files.

Precision (not named by the design; fixed here, before any result was seen): the primary runs train in fp32
(`train.amp=fp32`), as E2 did, because E2's seed sd sized the detectable effects and E2's runs are the evidence
behind the predictions. `train.amp=auto` (bf16 on this CPU) became the shipped default after E2; the same 12 runs
in bf16 (`--amp bf16`, files `*-bf16.json`) are reported beside, not judged on.

Design
- Models: the committed `experiments/models/baseline-s0` tokenizer (rFID-fmnist 3.67) and its 2000-step AR
  generator (gFID-fmnist 11.11 at CFG 5, power schedule 1.15: `posttrain-dose.json`, arm gen2000-cfg5), as E2.
- Pairs: `robustok post-train-data --sigma 0.9 --cfg 5 --cfg-schedule power --cfg-power 1.15 --pair-input ids
  --seed 1 --num-eval 1000`, once per pair count. The real images are a prefix of one permutation and pair batch b
  is seeded by (seed, b), so the 192 pairs are the first 192 of the 1000, and so on (nested sets); the held-out
  tokens are seeded apart from the pairs, so every arm has the same 1000 held-out tokens (to be checked before
  training, as `posttrain_authors.same_held_out` does).
- Judging set: those held-out tokens, sampled with seed 1. E2 (seed 0) chose the length (80 epochs of 192 pairs);
  seed 1's tokens were never looked at, so the set that judges did not choose the length.
- Recipe: `configs/posttrain/fmnist-authors.yaml` on token ids with FIXED STEPS, not fixed epochs: 480 steps at
  batch 32 for every pair count (E2's 80-epoch run: 80 epochs of 192 pairs; 15.4 epochs of 1000, 3.8 of 4000,
  0.96 of 16000), warm-up 6 steps, cosine lr 2e-4 -> 2e-5 over the 480 steps, EMA decay 0.996755 per step (E2's;
  keeps 0.21 of the untouched decoder after 480 steps), evaluated every 120 steps (reported, not selected on).
  Why fixed steps: the question is whether more distinct generated tokens, at the same compute, teach the decoder
  more than the control learns from as many real-token steps; fixed epochs would give the 16000-pair arm 83x the
  steps of the 192-pair arm (about 25 h of one thread per seed pair) and confound pairs with compute.
- Control: `--control` (sigma = 1: the same real images' tokens, same recipe, seed and steps), per seed.
- Seeds: 0, 1, 2 for every pair count (4 arms x 3 seeds x 2 runs = 24 runs of 480 steps; about 2.5 h on one
  thread at E2's pace of about 0.75 s a step, resumable, per-seed JSON as each finishes).

Endpoints
- Primary, per arm and seed: Delta = gFID-proxy(post-trained EMA) - gFID-proxy(control EMA) after 480 steps on
  the seed-1 held-out tokens (FID-fmnist, 1000 images against fashion-mnist:test, 1000 images).
- Dose-response (the question): Delta(16000) - Delta(192), two-sample t test over seeds (alpha 0.05, two-sided),
  and the Spearman correlation of the mean Delta with log(pairs) over the 4 arms.
- Issue 10's criterion, per arm: Delta <= -0.5 on every seed, and the same sign on every seed with FID-inception
  (checked only for arms that pass in FID-fmnist).
- Reported beside, not selected on: the raw decoders, the 120/240/360-step points, post - untouched.

Detectable effect (80% power, alpha 0.05; `python experiments/noise_budget.py`, "The planned pairs study", from
E2's seed sd of Delta 0.044 and the held-out-set sd 0.018 measured by E2's rerun): one arm's Delta, 3 seeds
judged on one set: 0.18 FID-fmnist; the difference between two arms' Delta, 3 seeds each: 0.14. So an arm at
E2's 80-epoch effect (-0.36) is detectable, issue 10's -0.5 is, and a change of Delta by 0.14 or more between 192
and 16000 pairs is. Smaller changes (the paper's Table 4a: 0.2M -> 1M pairs moved gFID by 0.01) are not. The sd
of Delta with more pairs is unknown; if it grows, these bounds grow with it (the script will print the realised
MDE from the realised sd beside the result).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import study  # noqa: E402
from noise_budget import mde_t  # noqa: E402
from posttrain_authors import same_held_out, summarize  # noqa: E402  (E2's per-arm summary, reused as is)
from posttrain_dose import aux_network, inception_check, pairs_once, robustok  # noqa: E402
from study_models import GENERATOR, TOKENIZER  # noqa: E402

PAIR_COUNTS = (192, 1000, 4000, 16000)
SEEDS = (0, 1, 2)
STEPS, BATCH, WARMUP, EMA_DECAY, EVAL_EVERY = 480, 32, 6, 0.996755, 120
PAIRS_SEED, SIGMA, NUM_EVAL = 1, 0.9, 1000
GUIDANCE = ("--cfg", "5", "--cfg-schedule", "power", "--cfg-power", "1.15")
RECIPE = "configs/posttrain/fmnist-authors.yaml"
PREDICTIONS = ROOT / "experiments" / "predictions" / "issue21.json"
PER_RUN = ROOT / "experiments" / "results" / "posttrain-pairs"
AMP_SUFFIX = {"fp32": "", "bf16": "-bf16"}  # fp32: the primary runs; bf16: the shipped CPU default, beside
RESULT = ROOT / "experiments" / "results" / "posttrain-pairs.json"


def arm(n: int) -> str:
    return f"pairs{n}"


def recipe(aux: Path, amp: str) -> list[str]:
    """The fixed-step recipe of the design: the authors' config with the length, EMA and evaluation set here."""
    return [
        f"train.amp={amp}",
        "epochs=0",
        "ema_keep=0",
        f"train.steps={STEPS}",
        f"data.batch_size={BATCH}",
        f"train.warmup_steps={WARMUP}",
        f"train.ema_decay={EMA_DECAY}",
        f"eval_every={EVAL_EVERY}",
        f"loss.aux_perceptual_weights={aux}",
        "eval_features=fmnist",
        "eval_reference=fashion-mnist:test",
        f"eval_num_reference={NUM_EVAL}",
    ]


def prepare(out: Path, tok: str, gen: str, counts) -> Path:
    """The pair stores (one per count, same seed, so nested; the same held-out tokens, checked) and the
    offline perceptual network."""
    for n in counts:
        pairs_once(out / arm(n) / "pairs", gen, tok, sigma=SIGMA, num_pairs=n, num_eval=NUM_EVAL, seed=PAIRS_SEED,
                   sampling=list(GUIDANCE))  # fmt: skip
    if not same_held_out(out, [arm(n) for n in counts]):
        raise SystemExit(f"{out}: the pair stores' held-out tokens differ; the arms would be judged on other sets")
    aux = aux_network(out)
    return aux


KEEP = ("gfid_proxy_before", "gfid_proxy_after", "gfid_proxy_after_raw", "gfid_proxy_control",
        "gfid_proxy_control_raw", "curve", "control_curve", "steps", "epochs", "pair_input", "sigma")  # fmt: skip


def post_train_run(tok: str, pairs: Path, run_dir: Path, seed: int, aux: Path, amp: str) -> dict:
    """Post-train with the study's recipe and its sigma = 1 control (skipped when finished); the compact record."""
    if not (run_dir / "posttrain.json").is_file():
        robustok("post-train", RECIPE, f"tokenizer={tok}", f"pairs={pairs}", f"run.dir={run_dir}",
                 f"run.seed={seed}", *recipe(aux, amp), "--control")  # fmt: skip
    summary = json.loads((run_dir / "posttrain.json").read_text())
    return {k: summary[k] for k in KEEP}


def run(out: Path, tok: str, n: int, seed: int, aux: Path, amp: str, record: bool) -> dict:
    """One (pair count, seed): post-train and its sigma = 1 control; recorded as a small JSON when `record`."""
    run_dir = out / arm(n) / f"post-seed{seed}{AMP_SUFFIX[amp]}"
    row = {"pairs": n, "seed": seed, "amp": amp, **post_train_run(tok, out / arm(n) / "pairs", run_dir, seed, aux, amp)}
    delta = row["gfid_proxy_after"] - row["gfid_proxy_control"]
    print(f"{n} pairs, seed {seed}, {amp}: post - control (EMA) {delta:+.3f}", flush=True)
    if record:
        PER_RUN.mkdir(parents=True, exist_ok=True)
        (PER_RUN / f"{arm(n)}-seed{seed}{AMP_SUFFIX[amp]}.json").write_text(json.dumps(row, indent=1))
    return row


def t_test(a: list[float], b: list[float]) -> dict:
    """Welch's two-sample t statistic and a two-sided 95% interval of mean(a) - mean(b) (pooled df, small n)."""
    a_, b_ = np.asarray(a), np.asarray(b)
    diff = float(a_.mean() - b_.mean())
    se = float(np.sqrt(a_.var(ddof=1) / len(a_) + b_.var(ddof=1) / len(b_)))
    half = study.t975(len(a_) + len(b_) - 2) * se
    return {"difference": diff, "se": se, "ci95": [diff - half, diff + half], "significant": abs(diff) > half}


def score(arms: list[dict]) -> list[dict]:
    """Each recorded prediction of this study against its arm's observed mean post - control."""
    scored = []
    for p in json.loads(PREDICTIONS.read_text())["conditions"]:
        if not p["condition"].startswith("posttrain_pairs:"):
            continue
        n = int(p["condition"].split()[1])
        row = next((r for r in arms if r["num_pairs"] == n), None)
        if row is None:
            continue
        mean = row["delta_mean"]
        sign_right = {"post >= control": mean >= 0, "post < control": mean < 0}.get(p["predicted_sign"])
        inside = {k: bool(p[k][0] <= mean <= p[k][1]) for k in ("interval_all_recipes", "interval_this_recipe")}
        scored.append(
            {
                "pairs": n,
                "predicted_sign": p["predicted_sign"],
                "observed_mean": mean,
                "sign_right": sign_right,
                **{f"inside_{k}": v for k, v in inside.items()},
            }
        )
    return scored


def build(inception: dict | None = None) -> dict:
    """The study's result from the per-run files: the fp32 arms, dose-response, realised MDE and scores, with
    the bf16 runs' arms and dose-response beside them."""
    result = analyse("fp32")
    if inception:
        result["inception"] = inception
    result["predictions"] = score(result["arms"])
    bf16 = analyse("bf16")
    if bf16["arms"]:
        result["bf16_beside"] = {k: v for k, v in bf16.items() if k != "design"}
    return result


def analyse(amp: str) -> dict:
    """Per arm, the dose-response and the realised MDE of the runs recorded in one precision."""
    from scipy.stats import spearmanr

    runs = [json.loads(f.read_text()) for f in sorted(PER_RUN.glob("*.json"))]
    runs = [r for r in runs if r.get("amp", "fp32") == amp]
    arms = []
    for n in PAIR_COUNTS:
        mine = sorted((r for r in runs if r["pairs"] == n), key=lambda r: r["seed"])
        if mine:
            arms.append({"num_pairs": n, "seeds": [r["seed"] for r in mine], **summarize(arm(n), mine)})
    result: dict = {
        "design": {
            "pair_counts": PAIR_COUNTS,
            "steps": STEPS,
            "batch": BATCH,
            "ema_decay": EMA_DECAY,
            "sigma": SIGMA,
            "pairs_seed": PAIRS_SEED,
            "num_eval": NUM_EVAL,
            "guidance": " ".join(GUIDANCE),
            "recipe": RECIPE,
            "amp": amp,
        },
        "arms": arms,
    }
    full = [a for a in arms if len(a["seeds"]) >= 2]
    if len(full) >= 2:
        lo, hi = full[0], full[-1]
        result["dose_response"] = {
            "largest_minus_smallest": {
                "pairs": [lo["num_pairs"], hi["num_pairs"]],
                **t_test(hi["delta_vs_control"], lo["delta_vs_control"]),
            },
            "spearman_mean_delta_vs_log_pairs": float(
                spearmanr([np.log(a["num_pairs"]) for a in full], [a["delta_mean"] for a in full]).statistic
            ),
        }
        sd = float(np.sqrt(np.mean([a["delta_sd"] ** 2 for a in full])))  # pooled seed sd of Delta
        k = len(full[0]["seeds"])
        result["realised_mde"] = {  # 80% power, alpha 0.05 two-sided, t tests as the design's (noise_budget.mde_t)
            "seed_sd_of_delta": sd,
            "one_arm": mde_t(sd / np.sqrt(k), k - 1),
            "difference_of_two_arms": mde_t(sd * np.sqrt(2 / k), 2 * k - 2),
        }
    for a in arms:
        a["passes_issue10"] = a["beats_control_every_seed"]
    return result


def markdown(result: dict) -> str:
    """The docs table: per pair count, Delta per seed, mean +- sd, post - untouched, raw decoders; then scores."""
    f = lambda xs: ", ".join(f"{x:+.2f}" for x in xs)  # noqa: E731
    lines = [
        "| distinct pairs | epochs over them | untouched | post − control per seed (EMA) | mean ± sd | "
        "post − untouched | raw: post − control |",
        "|---:|---:|---:|---|---:|---:|---|",
    ]
    for a in result["arms"]:
        raw = [p - c for p, c in zip(a["post_raw"], a["control_raw"])]
        sd = "" if a["delta_sd"] is None else f" ± {a['delta_sd']:.2f}"
        lines.append(
            f"| {a['num_pairs']} | {a['epochs']:.2f} | {a['untouched']:.2f} | {f(a['delta_vs_control'])} | "
            f"{a['delta_mean']:+.2f}{sd} | {np.mean(a['delta_vs_untouched']):+.2f} | {f(raw)} |"
        )
    if d := result.get("dose_response"):
        t = d["largest_minus_smallest"]
        lines += [
            "",
            f"Dose-response: Delta({t['pairs'][1]}) − Delta({t['pairs'][0]}) = {t['difference']:+.3f} "
            f"(95% CI {t['ci95'][0]:+.3f} to {t['ci95'][1]:+.3f}; "
            f"{'significant' if t['significant'] else 'not significant'}); Spearman of mean Delta with "
            f"log(pairs) {d['spearman_mean_delta_vs_log_pairs']:+.2f}.",
        ]
    if m := result.get("realised_mde"):
        lines += [
            f"Realised MDE (80% power): one arm {m['one_arm']:.2f}, two arms' difference "
            f"{m['difference_of_two_arms']:.2f} (seed sd of Delta {m['seed_sd_of_delta']:.3f})."
        ]
    if b := result.get("bf16_beside"):
        lines += ["", "Beside, the shipped bf16 default (not judged on): " + "; ".join(
            f"{a['num_pairs']} pairs {f(a['delta_vs_control'])}" for a in b["arms"]) + "."]  # fmt: skip
    if result.get("inception"):
        lines += ["", "| distinct pairs | FID-inception: post − control per seed |", "|---:|---|"]
        lines += [f"| {k} | {f(v['delta_vs_control'])} |" for k, v in result["inception"].items()]
    if result.get("predictions"):
        lines += [
            "",
            "| distinct pairs | predicted sign | observed mean | sign right | inside interval (all "
            "recipes / this recipe) |",
            "|---:|---|---:|---|---|",
        ]
        for p in result["predictions"]:
            lines.append(
                f"| {p['pairs']} | {p['predicted_sign']} | {p['observed_mean']:+.3f} | {p['sign_right']} | "
                f"{p['inside_interval_all_recipes']} / {p['inside_interval_this_recipe']} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--design", action="store_true", help="print the design and the recorded predictions")
    p.add_argument("--out", help="the study's working folder (pairs, runs)")
    p.add_argument("--tokenizer", default=str(TOKENIZER))
    p.add_argument("--generator", default=str(GENERATOR))
    p.add_argument("--pairs", default=",".join(map(str, PAIR_COUNTS)), help="pair counts to run")
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--amp", choices=sorted(AMP_SUFFIX), default="fp32", help="fp32: the primary runs; bf16: beside")
    p.add_argument("--prepare", action="store_true", help="only write the pair stores and the perceptual network")
    p.add_argument("--record", action="store_true", help="write each finished run to experiments/results/")
    p.add_argument("--summarize", action="store_true", help="build experiments/results/posttrain-pairs.json")
    p.add_argument(
        "--inception-check",
        action="store_true",
        help="with --summarize and --out: FID-inception of the arms that pass in FID-fmnist",
    )
    p.add_argument("--markdown", metavar="JSON", help="print the docs tables of a recorded result and stop")
    args = p.parse_args()
    if args.design:
        print(__doc__)
        for c in json.loads(PREDICTIONS.read_text())["conditions"]:
            print(f"- {c['condition']}: {c['verdict']}")
        return
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return
    if args.summarize:
        previous = json.loads(RESULT.read_text()).get("inception") if RESULT.is_file() else None
        result = build(previous)
        if args.inception_check:
            if not args.out:
                p.error("--inception-check needs --out (the study's folder with the trained decoders)")
            passing = [arm(a["num_pairs"]) for a in result["arms"] if a["passes_issue10"]]
            result["inception"] = inception_check(Path(args.out).resolve(), passing) if passing else {}
        RESULT.write_text(json.dumps(result, indent=1))
        print(markdown(result))
        return
    if not args.out:
        p.error("--out is required")
    out = Path(args.out).resolve()
    tok, gen = str(Path(args.tokenizer).resolve()), str(Path(args.generator).resolve())
    counts = study.chosen(p, "--pairs", args.pairs, PAIR_COUNTS)
    aux = prepare(out, tok, gen, PAIR_COUNTS)  # all four stores, whatever --pairs: the held-out check needs them
    if args.prepare:
        return
    for seed in (int(x) for x in args.seeds.split(",") if x):
        for n in counts:
            run(out, tok, n, seed, aux, args.amp, args.record)


if __name__ == "__main__":
    main()
