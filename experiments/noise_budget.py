"""Issue 21 parts 1-2: the noise budget of gFID and post - control, and the smallest effect each design can detect.

    python experiments/noise_budget.py [--json experiments/results/noise-budget.json]

Reads only committed results (no training, a few seconds on one thread):
- `tokenizer_family-half.json`: two sample sets of 1000 images per generator (12 generators, one per tokenizer)
  give the sample-set variance at n = 1000; the 3 baseline + 3 robust training seeds give the seed variance
  (pooled within arm, less the sample-set share of a two-set mean). Each tokenizer seed had its own generator
  (generator seed 0 on that tokenizer's tokens), so the tokenizer's and the generator's seed variance are one
  number here: the budget shows the split as a scenario (share f of the seed variance that is the generator's:
  0, 0.5, 1), and measuring it (several generator seeds on one tokenizer) is the next measurement to make.
- `noise-budget-sets.json` (`experiments/noise_measure.py`): disjoint sample sets of the committed 2000-step
  generator at n = 500, 1000, 2000: how the sample-set variance shrinks with n (fitted power of n).
- the post-training studies (`posttrain-dose.json`, `posttrain-authors*.json`): the seed sd of post - control
  per condition, and the held-out-set (+ machine) component from E2's rerun (same seeds and pairs, other
  held-out tokens: `posttrain-authors-first-run.json` against `posttrain-authors.json`).

Power (80%, two-sided alpha 0.05):
- perturbation's gFID effect (robust - baseline, k tokenizer seeds per arm, g generator seeds per tokenizer, s
  sample sets of n images): two-sample t test on the per-tokenizer means, df = 2k - 2, exact via the noncentral t;
- post - control (one-sample t over seeds, df = seeds - 1), with the held-out component added as a variance that
  more seeds do not shrink when all seeds share one held-out set;
- rho(pFID, gFID) - rho(rFID, gFID) (Spearman, n tokenizers): Monte Carlo of a Gaussian model (true gFID T;
  measured gFID = T + noise at the design's reliability; pFID and rFID correlated rho_p and rho_r with T, their
  residuals correlated so that corr(pFID, rFID) matches the family's); the test rejects when the difference
  exceeds 1.96 of its null sd (as the bootstrap interval excluding 0). MDE = the smallest rho_p - rho_r (true,
  rho_r = 0.5) with 80% power, "> max" when none up to rho_p = 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import optimize, stats

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
ALPHA, POWER = 0.05, 0.8
SHARES = (0.0, 0.5, 1.0)  # share of the (tokenizer + generator) seed variance that is the generator's


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def family_components(family: dict) -> dict:
    """Sample-set (n = 1000) and seed variance of gFID per endpoint, the spread across members, corr(pFID, rFID)."""
    toks = family["tokenizers"]
    out = {
        "members": len(toks),
        "sample_images": family["spec"]["gen_images"],
        "spearman_pfid_rfid": float(stats.spearmanr([t["pfid"] for t in toks], [t["rfid"] for t in toks])[0]),
    }
    for key in ("gfid_cfg", "gfid_nocfg"):
        diffs = np.array([s[f"{key}_sets"][0] - s[f"{key}_sets"][1] for t in toks for s in t["per_seed"]])
        var_set = float(np.mean(diffs**2) / 2)  # one set of n images; df = len(diffs)
        groups = [
            np.array([t[key] for t in toks if t["name"] in {f"{arm}-s{i}" for i in range(3)}])
            for arm in ("baseline", "robust")
        ]
        pooled = float(sum(((g - g.mean()) ** 2).sum() for g in groups) / sum(len(g) - 1 for g in groups))
        out[key] = {
            "var_set": var_set,
            "sd_set": var_set**0.5,
            "set_pairs": len(diffs),
            "seed_pooled_var": pooled,
            "seed_pooled_sd": pooled**0.5,
            "seed_df": sum(len(g) - 1 for g in groups),
            "var_seed": max(pooled - var_set / 2, 0.0),
            "sd_seed": max(pooled - var_set / 2, 0.0) ** 0.5,
            "member_sd": float(np.std([t[key] for t in toks], ddof=1)),
            "mean": float(np.mean([t[key] for t in toks])),
        }
    return out


def set_scaling(measured: dict) -> dict:
    """Mean and spread of gFID across disjoint sample sets at each n (one generator)."""
    rows = {
        int(n): {
            "n_sets": len(v),
            "mean": float(np.mean(v)),
            "var": float(np.var(v, ddof=1)),
            "sd": float(np.std(v, ddof=1)),
        }
        for n, v in measured["sets"].items()
        if len(v) >= 2
    }
    return {"by_n": rows, "seeds": measured["seeds"], "cfg": measured["cfg"]}


def posttrain_components() -> dict:
    """Seed sd of post - control per condition, and the held-out (+ machine) component from E2's rerun."""
    rows = []
    for a in _load("posttrain-dose.json")["arms"]:
        rows.append({"condition": f"dose {a['arm']} (default recipe, 4000 pairs)", "deltas": a["delta_vs_control"]})
    for name in ("", "-long", "-longer"):
        d = _load(f"posttrain-authors{name}.json")
        for a in d["arms"]:
            rows.append(
                {
                    "condition": f"E2 {a['arm']} {a['epochs']:g} epochs (authors' recipe, 192 pairs)",
                    "deltas": a["delta_vs_control"],
                }
            )
    for r in rows:
        r["mean"], r["sd"] = float(np.mean(r["deltas"])), float(np.std(r["deltas"], ddof=1))
    first = {a["arm"]: a["delta_vs_control"] for a in _load("posttrain-authors-first-run.json")["arms"]}
    rerun = {a["arm"]: a["delta_vs_control"] for a in _load("posttrain-authors.json")["arms"]}
    diffs = np.array([x - y for arm in first for x, y in zip(first[arm], rerun[arm])])
    trained = [r for r in rows if "gen2000" in r["condition"]]  # the trained generator (gFID 11-13)

    def pooled(rs: list[dict]) -> float:
        return float(np.sqrt(np.mean([r["sd"] ** 2 for r in rs])))

    return {
        "conditions": rows,
        "holdout_var": float(np.mean(diffs**2) / 2),
        "holdout_pairs": len(diffs),
        "holdout_sd": float(np.sqrt(np.mean(diffs**2) / 2)),
        "sd_e2": pooled([r for r in rows if r["condition"].startswith("E2 ids")]),
        "sd_dose_trained": pooled([r for r in trained if r["condition"].startswith("dose")]),
        "sd_dose_far": pooled([r for r in rows if "gen100" in r["condition"] or "gen300" in r["condition"]]),
    }


def mde_t(se_unit: float, df: int) -> float:
    """Smallest true effect a two-sided t test (df) detects with POWER, when its standard error is se_unit."""
    crit = stats.t.ppf(1 - ALPHA / 2, df)

    def power(delta: float) -> float:
        nc = delta / se_unit
        return float(stats.nct.sf(crit, df, nc) + np.nan_to_num(stats.nct.cdf(-crit, df, nc)))  # 2nd: tiny

    return float(optimize.brentq(lambda d: power(d) - POWER, 1e-9, 200 * se_unit))  # df 1 needs a wide bracket


def var_set_at(n: int, fam: dict, key: str, scaling: dict) -> float:
    """The family's sample-set variance at n = 1000, scaled to n as 1/n (the measurement on the 2000-step generator
    shrinks at least that fast from 1000 to 2000 images, so 1/n does not flatter larger sets)."""
    return fam[key]["var_set"] * fam["sample_images"] / n


def perturbation_mde(fam: dict, scaling: dict, key: str, k: int, g: int, s: int, n: int, share: float) -> float:
    """robust - baseline: k tokenizers per arm, g generator seeds each, s sets of n images per generator."""
    v = fam[key]["var_seed"]
    unit = (1 - share) * v + share * v / g + var_set_at(n, fam, key, scaling) / (g * s)
    return mde_t(np.sqrt(2 * unit / k), 2 * k - 2)


def posttrain_mde(sd: float, seeds: int, holdout_var: float, shared: bool = True) -> float:
    """post - control over seeds: one judging set shared by all seeds adds its variance once (more seeds do not
    shrink it); a judging set per seed adds it to every seed's variance."""
    se2 = sd**2 / seeds + holdout_var if shared else (sd**2 + holdout_var) / seeds
    return mde_t(np.sqrt(se2), seeds - 1)


def _spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ra, rb = a.argsort(1).argsort(1).astype(float), b.argsort(1).argsort(1).astype(float)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    return (ra * rb).sum(1) / np.sqrt((ra**2).sum(1) * (rb**2).sum(1))


def spearman_mde(
    n: int, reliability: float, corr_pr: float, rho_r: float = 0.5, reps: int = 4000, seed: int = 0
) -> tuple[float, float]:
    """(null sd of the Spearman difference, smallest rho_p - rho_r with 80% power; inf if none up to rho_p = 1)."""
    rng = np.random.default_rng(seed)
    kappa = float(np.clip((corr_pr - rho_r**2) / (1 - rho_r**2), -1, 1))  # residual corr at rho_p = rho_r
    z = rng.standard_normal((5, reps, n))  # one draw reused for every rho_p (common random numbers)
    t, noise = z[0], z[1]
    e_r = z[2]
    e_p = kappa * z[2] + np.sqrt(1 - kappa**2) * z[3]
    g = np.sqrt(reliability) * t + np.sqrt(1 - reliability) * noise
    r = rho_r * t + np.sqrt(1 - rho_r**2) * e_r

    def diffs(rho_p: float) -> np.ndarray:
        return _spearman(rho_p * t + np.sqrt(1 - rho_p**2) * e_p, g) - _spearman(r, g)

    sd0 = float(diffs(rho_r).std())
    for rho_p in np.arange(rho_r + 0.025, 1.0001, 0.025):
        if np.mean(np.abs(diffs(min(rho_p, 1.0))) > 1.96 * sd0) >= POWER:
            return sd0, float(min(rho_p, 1.0) - rho_r)
    return sd0, float("inf")


def reliability(fam: dict, scaling: dict, key: str, g: int, s: int, n: int, share: float) -> float:
    """Share of the measured gFID variance across tokenizers that is the tokenizers' own, for a design; the
    tokenizers' variance is the family's member variance less the noise of the family's own design."""
    v = fam[key]["var_seed"]
    noise_family = share * v + var_set_at(fam["sample_images"], fam, key, scaling) / 2
    true = max(fam[key]["member_sd"] ** 2 - noise_family, 1e-6)
    noise = share * v / g + var_set_at(n, fam, key, scaling) / (g * s)
    return true / (true + noise)


def measured_share(key: str = "gfid_cfg") -> list[float]:
    """The generator's share of the seed variance as measured by `experiments/generator_seeds.py` (a list of one
    value, rounded to 0.01; empty before that measurement is recorded)."""
    path = RESULTS / "generator-seeds.json"
    if not path.is_file():
        return []
    share = json.loads(path.read_text())["endpoints"][key]["generator_share"]
    return [] if share is None else [round(float(share), 2)]


def budget(reps: int = 4000) -> dict:
    fam = family_components(_load("tokenizer_family-half.json"))
    shares = sorted({*SHARES, *measured_share()})
    measured = RESULTS / "noise-budget-sets.json"
    scaling = set_scaling(json.loads(measured.read_text())) if measured.is_file() else {"by_n": {}}
    post = posttrain_components()
    key = "gfid_cfg"
    designs = [
        ("studies: 3 tokenizer seeds/arm, 1 generator, 2 sets x 1000", 3, 1, 2, 1000),
        ("3 seeds/arm, 3 generators each, 2 sets x 2000", 3, 3, 2, 2000),
        ("6 seeds/arm, 1 generator, 2 sets x 1000", 6, 1, 2, 1000),
        ("6 seeds/arm, 3 generators each, 2 sets x 2000", 6, 3, 2, 2000),
        ("12 seeds/arm, 3 generators each, 2 sets x 2000", 12, 3, 2, 2000),
    ]
    perturb = [
        {"design": d, "mde": {str(f): perturbation_mde(fam, scaling, key, k, g, s, n, f) for f in shares}}
        for d, k, g, s, n in designs
    ]
    corr_pr = fam["spearman_pfid_rfid"]
    rank = []
    for members in (12, 24, 48, 96):
        for label, g, s, n in (
            ("1 generator, 2 sets x 1000 (the family)", 1, 2, 1000),
            ("3 generators, 2 sets x 2000", 3, 2, 2000),
        ):
            row = {"members": members, "design": label}
            for f in shares:
                rel = reliability(fam, scaling, key, g, s, n, f)
                sd0, mde = spearman_mde(members, rel, corr_pr, reps=reps)
                row[str(f)] = {"reliability": rel, "null_sd": sd0, "mde": mde}
            rank.append(row)
    pc = [
        {
            "design": f"{seeds} seeds, {'one shared' if shared else 'own'} held-out set",
            "seeds": seeds,
            "mde_e2_sd": posttrain_mde(post["sd_e2"], seeds, post["holdout_var"], shared),
            "mde_dose_trained_sd": posttrain_mde(post["sd_dose_trained"], seeds, post["holdout_var"], shared),
            "mde_dose_far_sd": posttrain_mde(post["sd_dose_far"], seeds, post["holdout_var"], shared),
        }
        for seeds in (3, 5, 10)
        for shared in (True, False)
    ]
    planned = {
        "per_arm_3_seeds_shared_judging_set": posttrain_mde(post["sd_e2"], 3, post["holdout_var"]),
        "per_arm_5_seeds_shared_judging_set": posttrain_mde(post["sd_e2"], 5, post["holdout_var"]),
        # two pair counts, 3 seeds each, one judging set for both: the held-out component is common to both
        "between_two_arms_3_seeds": mde_t(post["sd_e2"] * np.sqrt(2 / 3), 4),
        "between_two_arms_5_seeds": mde_t(post["sd_e2"] * np.sqrt(2 / 5), 8),
    }
    observed = _load("tokenizer_family-half.json")["by_codebook_size"]["1024"][key]["spearman"]
    return {
        "family": fam,
        "sample_sets": scaling,
        "posttrain": post,
        "perturbation_mde": perturb,
        "spearman_difference_mde": rank,
        "post_minus_control_mde": pc,
        "planned_pairs_study_mde": planned,
        "observed_family_spearman": observed,
        "shares": shares,
        "measured_share": measured_share(),
        "command": "python experiments/noise_budget.py --json experiments/results/noise-budget.json",
    }


def report(b: dict) -> str:
    fam, sc, post = b["family"], b["sample_sets"], b["posttrain"]
    lines = ["## Noise budget (gFID-fmnist)", ""]
    for key in ("gfid_cfg", "gfid_nocfg"):
        c = fam[key]
        lines.append(
            f"- {key}: mean {c['mean']:.1f}; one sample set of {fam['sample_images']}: sd {c['sd_set']:.2f} "
            f"({c['set_pairs']} set pairs); tokenizer + generator seed: sd {c['sd_seed']:.2f} (pooled "
            f"{c['seed_pooled_sd']:.2f}, df {c['seed_df']}); spread across the {fam['members']} members: sd "
            f"{c['member_sd']:.2f}"
        )
    lines.append(f"- Spearman(pFID, rFID) across the family: {fam['spearman_pfid_rfid']:.2f}")
    if sc["by_n"]:
        lines.append(
            f"- sample sets of the 2000-step generator (CFG {sc['cfg']}, seeds {sc['seeds']}): "
            + "; ".join(
                f"n={n}: mean {r['mean']:.2f}, sd {r['sd']:.2f} ({r['n_sets']} sets)"
                for n, r in sorted(sc["by_n"].items())
            )
            + " (the budget scales the family's n = 1000 variance as 1/n)"
        )
    else:
        lines.append("- sample-set scaling not measured: the budget assumes var ~ 1/n")
    lines.append(
        f"- post - control, seed sd: E2 token ids {post['sd_e2']:.3f}; trained generators, default recipe "
        f"{post['sd_dose_trained']:.2f} (2000-step generator, CFG 1.5 and 5); "
        f"far generators {post['sd_dose_far']:.2f}; held-out set + machine "
        f"(E2 rerun, {post['holdout_pairs']} seed pairs): sd {post['holdout_sd']:.3f}"
    )
    shares = " | ".join(f"f = {f:g}" for f in b["shares"])
    lines += [
        "",
        "## Perturbation's gFID effect (CFG 1.5): minimal detectable |robust - baseline|, 80% power",
        "f: share of the seed variance that is the generator's"
        + (
            f" (measured: {b['measured_share'][0]:g}, experiments/generator_seeds.py)"
            if b.get("measured_share")
            else " (not yet measured)"
        ),
        "",
        f"| design | {shares} |",
        "|---|" + "---:|" * len(b["shares"]),
    ]
    lines += [
        f"| {r['design']} | " + " | ".join(f"{r['mde'][str(f)]:.2f}" for f in b["shares"]) + " |"
        for r in b["perturbation_mde"]
    ]
    o = b["observed_family_spearman"]
    lines += [
        "",
        "## rho(pFID, gFID) - rho(rFID, gFID), Spearman: minimal detectable true difference (rho_r = 0.5)",
        f"observed in the family (n = 12): {o['difference']:+.2f}, 95% CI [{o['ci95'][0]:.2f}, {o['ci95'][1]:.2f}]",
        "",
        f"| tokenizers | design | {shares} (reliability; null sd; MDE) |",
        "|---:|---|" + "---|" * len(b["shares"]),
    ]
    for r in b["spearman_difference_mde"]:
        cells = [
            f"{r[str(f)]['reliability']:.2f}; {r[str(f)]['null_sd']:.2f}; "
            + (f"{r[str(f)]['mde']:.2f}" if np.isfinite(r[str(f)]["mde"]) else "> 0.5 (unreachable)")
            for f in b["shares"]
        ]
        lines.append(f"| {r['members']} | {r['design']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## post - control: minimal detectable |effect| (FID-fmnist), 80% power",
        "",
        "| design | seed sd of E2 token ids | seed sd of the 2000-step generator, default recipe | seed sd of "
        "the far generators, default recipe |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['design']} | {r['mde_e2_sd']:.3f} | {r['mde_dose_trained_sd']:.2f} | {r['mde_dose_far_sd']:.2f} |"
        for r in b["post_minus_control_mde"]
    ]
    pl = b["planned_pairs_study_mde"]
    lines += [
        "",
        "## The planned pairs study (experiments/posttrain_pairs.py), with E2's seed sd",
        f"- one pair count, post - control: 3 seeds {pl['per_arm_3_seeds_shared_judging_set']:.3f}, 5 seeds "
        f"{pl['per_arm_5_seeds_shared_judging_set']:.3f}",
        f"- two pair counts, difference of their post - control: 3 seeds each {pl['between_two_arms_3_seeds']:.3f}, "
        f"5 seeds each {pl['between_two_arms_5_seeds']:.3f}",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, help="also write the numbers here")
    a = p.parse_args()
    b = budget()
    print(report(b))
    if a.json:
        a.json.write_text(json.dumps(b, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
