"""Issue 21 part 1: how much of the family's gFID seed spread is the generator's training seed?

    python experiments/generator_seeds.py --out runs/gen-seeds --seeds 0,2,4 --record   # one process per list
    python experiments/generator_seeds.py --summarize                                 # table + the split

Design (fixed and committed before any run)
- Tokenizer: the committed `experiments/models/baseline-s0/tokenizer` (the family's `baseline-s0`, half budget).
- Generators: the family's half budget through the shipped benchmark code (`robustok.tokbench.benchmark_tokenizer`:
  `configs/generator/fmnist-ar.yaml`, 800 steps, tokens of the first 30,000 fashion-mnist:train images), training
  seeds 0-5, in fp32 (`train.amp=fp32`) as the family was run (before bf16 became the CPU default). Seed 0 repeats
  the family's own generator of this tokenizer (gFID 42.71 with CFG 1.5, 59.77 without, there): the check that
  this measurement and the family's are of one kind.
- gFID per generator: the benchmark's two sample sets of 1000 images (sets seeded 0 and 1), with CFG 1.5 and
  without, FID-fmnist against 1000 fashion-mnist:train images.

What is estimated (no hypothesis test: a variance component)
- sample-set variance at n = 1000: mean over generators of (set0 - set1)^2 / 2;
- generator-seed variance: the variance across seeds of the two-set means, less half the sample-set variance,
  with a 95% chi-square interval (df = seeds - 1) of the across-seed variance;
- its share f of the family's tokenizer + generator seed variance (`noise-budget.json`, per endpoint), which the
  noise budget had to assume (0, 0.5 or 1). With 6 seeds the interval of a variance spans about 0.4x-6x its
  estimate, so the share is known to within that factor, no better: enough to tell "mostly generator" from
  "mostly tokenizer" only if it is near one end.

How the result is used: `experiments/noise_budget.py` reads `experiments/results/generator-seeds.json` and sizes
the perturbation design (g generator seeds per tokenizer) with the measured share instead of the scenarios.
Each seed is recorded as it finishes (`experiments/results/generator-seeds/seed<k>.json`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import study  # noqa: E402
from study_models import TOKENIZER  # noqa: E402

SEEDS = tuple(range(6))
ENDPOINTS = ("gfid_cfg", "gfid_nocfg")
FAMILY_SEED0 = {
    "gfid_cfg": 42.71095108963743,
    "gfid_nocfg": 59.76513406974743,
}  # tokenizer_family-half-seeds.json, baseline-s0 (one generator)
PER_SEED = ROOT / "experiments" / "results" / "generator-seeds"
RESULT = ROOT / "experiments" / "results" / "generator-seeds.json"


def spec():
    """The family's half budget (experiments/tokenizer_family.py) in fp32."""
    from robustok.tokbench import BenchmarkSpec

    return BenchmarkSpec(
        gen_steps=800, pretok_images=30000, eval_images=1000, gen_images=1000, generator_overrides=["train.amp=fp32"]
    )


def run(out: Path, seeds: list[int], record: bool) -> None:
    """Train and score one generator per seed through the benchmark's cached steps."""
    from dataclasses import replace

    from robustok.metrics.features import get_feature_net
    from robustok.metrics.fid import source_stats
    from robustok.tokbench import Entry, benchmark_tokenizer

    s = spec()
    features = get_feature_net(s.features)
    reference = source_stats(s.train_data, features, num_images=s.gen_images)
    entry = Entry("baseline-s0", str(TOKENIZER), 1024)
    for seed in seeds:
        row = benchmark_tokenizer(entry, replace(s, gen_seeds=[seed]), out, features, reference, False, print)
        g = row["per_seed"][0]
        if record:
            PER_SEED.mkdir(parents=True, exist_ok=True)
            (PER_SEED / f"seed{seed}.json").write_text(json.dumps({"seed": seed, **g}, indent=1))


def summarize() -> dict:
    """The variance components from the recorded seeds, and the generator's share of the family's seed variance."""
    from scipy import stats

    rows = sorted((json.loads(f.read_text()) for f in PER_SEED.glob("seed*.json")), key=lambda r: r["seed"])
    budget = json.loads((ROOT / "experiments" / "results" / "noise-budget.json").read_text())
    result: dict = {"seeds": [r["seed"] for r in rows], "per_seed": rows, "endpoints": {}}
    for key in ENDPOINTS:
        means = np.array([r[key] for r in rows])
        sets = np.array([r[f"{key}_sets"] for r in rows])
        var_set = float(np.mean((sets[:, 0] - sets[:, 1]) ** 2) / 2)
        var_means = float(np.var(means, ddof=1))
        df = len(rows) - 1
        lo, hi = (df * var_means / stats.chi2.ppf(q, df) for q in (0.975, 0.025))
        var_gen = max(var_means - var_set / 2, 0.0)
        family = budget["family"][key]["var_seed"]
        result["endpoints"][key] = {
            "mean": float(means.mean()),
            "sd_across_seeds": float(np.sqrt(var_means)),
            "var_sample_set_n1000": var_set,
            "var_generator_seed": var_gen,
            "var_across_seeds_ci95": [float(lo), float(hi)],
            "family_var_tokenizer_plus_generator_seed": family,
            "generator_share": min(var_gen / family, 1.0) if family > 0 else None,
            "generator_share_ci95": [
                min(max(lo - var_set / 2, 0.0) / family, 1.0),
                min(max(hi - var_set / 2, 0.0) / family, 1.0),
            ],
        }
    if rows and rows[0]["seed"] == 0:
        result["seed0_vs_family"] = {k: [rows[0][k], v] for k, v in FAMILY_SEED0.items()}
    return result


def markdown(result: dict) -> str:
    lines = [
        "| endpoint | seeds | mean gFID | sd across seeds | sample-set var (n=1000) | generator-seed var | "
        "family's tokenizer+generator seed var | generator's share [95% CI] |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, e in result["endpoints"].items():
        share = e["generator_share"]
        lines.append(
            f"| {key} | {len(result['seeds'])} | {e['mean']:.2f} | {e['sd_across_seeds']:.2f} | "
            f"{e['var_sample_set_n1000']:.2f} | {e['var_generator_seed']:.2f} | "
            f"{e['family_var_tokenizer_plus_generator_seed']:.2f} | "
            f"{'–' if share is None else f'{share:.2f}'} [{e['generator_share_ci95'][0]:.2f}, "
            f"{e['generator_share_ci95'][1]:.2f}] |"
        )
    return "\n".join(lines)


def main() -> None:
    p = study.parser(__doc__, RESULT, "write each seed to experiments/results/generator-seeds/")
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    args = p.parse_args()
    if study.report(args, summarize, markdown, RESULT):
        return
    if not args.out:
        p.error("--out is required")
    run(Path(args.out), study.chosen(p, "--seeds", args.seeds, SEEDS), args.record)


if __name__ == "__main__":
    main()
