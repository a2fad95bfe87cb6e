"""Issue 21 part 4 (design, fixed before any run): does the authors' recipe beat its sigma = 1 control by more
when it sees more distinct generated pairs? 192 -> 1000 -> 4000 -> 16000 pairs.

    python experiments/posttrain_pairs.py            # print the design and the recorded predictions

Status: design only. The runner is not written yet, and no run of this study exists. The design, endpoint and
detectable effect below are committed before any run; `robustok diagnose`'s prediction for each condition is in
`experiments/predictions/issue21.json` (`experiments/record_predictions.py`), also committed before any run.

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

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIR_COUNTS = (192, 1000, 4000, 16000)
SEEDS = (0, 1, 2)
STEPS, BATCH, WARMUP, EMA_DECAY, EVAL_EVERY = 480, 32, 6, 0.996755, 120
PAIRS_SEED, SIGMA, NUM_EVAL = 1, 0.9, 1000
GUIDANCE = ("--cfg", "5", "--cfg-schedule", "power", "--cfg-power", "1.15")
RECIPE = "configs/posttrain/fmnist-authors.yaml"
PREDICTIONS = ROOT / "experiments" / "predictions" / "issue21.json"


def main() -> None:
    print(__doc__)
    if PREDICTIONS.is_file():
        for p in json.loads(PREDICTIONS.read_text())["conditions"]:
            print(f"- {p['condition']}: {p['verdict']}")


if __name__ == "__main__":
    main()
