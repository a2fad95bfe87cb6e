"""Every number of docs/findings.md, from the committed results (a few seconds, no training).

    python experiments/findings.py

Prints, per paper claim: the effects per seed, their mean, sd, a t-based 95% interval and p value (one-sample
over seeds for post - control; two-sample over training seeds for robust - baseline), the correlations, and the
minimal detectable effects of `experiments/results/noise-budget.json` (`experiments/noise_budget.py --json`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
sys.path.insert(0, str(ROOT / "experiments"))
from noise_budget import mde_t  # noqa: E402

PAPER_GAIN = (1.36 - 1.60) / 1.60  # Table 2/3, RobusTok-L post-training (relative)
PAPER_LP_GFID = (3.93 - 4.13) / 4.13  # Table 5, + LP beta = 0.1 (gFID with CFG, relative)
PAPER_LP_PFID = (3.61 - 6.98) / 6.98  # Table 5, + LP beta = 0.1 (pFID, relative)


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def one_sample(xs: list[float]) -> str:
    """mean, sd, 95% t interval and two-sided p of the mean against 0 (seeds as the unit)."""
    x = np.asarray(xs, float)
    if len(x) < 2:
        return f"{', '.join(f'{v:+.2f}' for v in x)} (one run: no interval)"
    m, sd = x.mean(), x.std(ddof=1)
    half = stats.t.ppf(0.975, len(x) - 1) * sd / np.sqrt(len(x))
    p = stats.ttest_1samp(x, 0).pvalue
    return (
        f"{', '.join(f'{v:+.2f}' for v in x)}; mean {m:+.2f} ± {sd:.2f} (sd), 95% CI [{m - half:+.2f}, "
        f"{m + half:+.2f}], p {'< 0.001' if p < 0.001 else f'= {p:.3f}'}"
    )


def two_sample(a: list[float], b: list[float]) -> tuple[str, float]:
    """b - a: difference, pooled sd, 95% t interval, p (equal variances, df = na + nb - 2); and the design's MDE."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    df = len(a) + len(b) - 2
    sp = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / df)
    se = sp * np.sqrt(1 / len(a) + 1 / len(b))
    d, half, mde = b.mean() - a.mean(), stats.t.ppf(0.975, df) * se, mde_t(se, df)
    return (
        f"{d:+.2f} (pooled sd {sp:.2f}), 95% CI [{d - half:+.2f}, {d + half:+.2f}], "
        f"p = {stats.ttest_ind(b, a).pvalue:.2f}; detectable at 80% power with this design: {mde:.2f}"
    ), mde


def posttrain() -> list[str]:
    out = ["## Post-training against the sigma = 1 control (FID-fmnist gFID proxy, post - control per seed)"]
    dose = _load("posttrain-dose.json")
    for a in dose["arms"]:
        out.append(
            f"- dose {a['arm']} (gFID/rFID {a['gfid'] / a['rfid']:.1f}, default recipe): "
            + one_sample(a["delta_vs_control"])
            + f"; post - untouched {np.mean(a['delta_vs_untouched']):+.2f}, control - untouched "
            f"{np.mean(a['control']) - a['untouched']:+.2f}"
        )
        out.append(
            f"  - RobusTok-L's relative gain (1.60 -> 1.36, {PAPER_GAIN:.0%}) at this arm's untouched gFID "
            f"proxy ({a['untouched']:.2f}): {PAPER_GAIN * a['untouched']:+.2f}"
        )
        if a["arm"] in dose["inception"]:
            out.append("  - FID-inception: " + one_sample(dose["inception"][a["arm"]]["delta_vs_control"]))
    for name in ("-first-run", "", "-long", "-longer"):
        d = _load(f"posttrain-authors{name}.json")
        for a in d["arms"]:
            out.append(
                f"- E2 posttrain-authors{name} {a['arm']} {a['epochs']:g} epochs ({d['num_pairs']} pairs, "
                f"authors' recipe, EMA): "
                + one_sample(a["delta_vs_control"])
                + f"; post - untouched {np.mean(a['delta_vs_untouched']):+.2f}, control - untouched "
                f"{np.mean(a['control']) - a['untouched']:+.2f}"
            )
            out.append(
                "  - raw (online) decoders: " + one_sample([p - c for p, c in zip(a["post_raw"], a["control_raw"])])
            )
            for point in a["curve"]:
                out.append(
                    f"  - EMA at epoch {point['epoch']:g}: "
                    + ", ".join(f"{v:+.2f}" for v in point["ema"]["delta_vs_control"])
                )
            inc = d.get("inception", {}).get(a["arm"])
            if inc:
                out.append("  - FID-inception: " + one_sample(inc["delta_vs_control"]))
    m = _load("masked_generator.json")
    out.append(
        f"- masked generator (gFID {m['masked']['gfid_cfg']:.2f}, sigma {m['posttrain']['sigma']:g}, default "
        f"recipe): " + one_sample([m["posttrain"]["delta_post_minus_control"]])
    )
    return out


def dose_response() -> list[str]:
    arms = [a for a in _load("posttrain-dose.json")["arms"] if a["cfg_schedule"] == "constant"]
    keys = [k for k in arms[0]["diagnostics"] if k not in ("cfg", "estimate")]
    rows = [
        f"{k} {stats.spearmanr([a['delta_mean'] for a in arms], [a['diagnostics'][k] for a in arms])[0]:+.1f}"
        for k in keys
    ]
    g2000 = next(a for a in arms if a["arm"] == "gen2000")
    return [
        "## Dose-response: Spearman of mean post - control with each diagnostic (4 constant-CFG arms)",
        "- " + "; ".join(rows),
        "- 2000-step generator vs real tokens: unseen horizontal bigrams "
        f"{g2000['diagnostics']['unseen_horizontal_bigrams']:.2f}"
        f" vs {g2000['real']['unseen_horizontal_bigrams']:.2f}; round-trip change "
        f"{g2000['diagnostics']['roundtrip_change']:.2f} vs {g2000['real']['roundtrip_change']:.2f}",
    ]


def guidance() -> list[str]:
    d = _load("diagnose-family-half-robust-s2.json")
    keys = ("unseen_horizontal_bigrams", "unseen_vertical_bigrams", "position_js_bits", "roundtrip_change", "gfid")
    return ["## Guidance and token statistics (diagnose-family-half-robust-s2.json; real floor first)"] + [
        f"- {k}: real {d['real'][k]:.3f}; " + ", ".join(f"CFG {r['cfg']:g} {r[k]:.3f}" for r in d["generated"])
        for k in keys
    ]


def family() -> list[str]:
    f = _load("tokenizer_family-half.json")
    toks = {t["name"]: t for t in f["tokenizers"]}
    out = ["## Tokenizer family (12 members, K = 1024)"]
    for key, paper in (("gfid_cfg", PAPER_LP_GFID), ("gfid_nocfg", None), ("pfid", PAPER_LP_PFID), ("rfid", None)):
        base = [toks[f"baseline-s{i}"][key] for i in range(3)]
        rob = [toks[f"robust-s{i}"][key] for i in range(3)]
        text, mde = two_sample(base, rob)
        out.append(
            f"- {key}: baseline {', '.join(f'{v:.2f}' for v in base)}; robust "
            f"{', '.join(f'{v:.2f}' for v in rob)}; robust - baseline " + text
        )
        if paper is not None:
            out.append(
                f"  - Table 5's relative change ({paper:+.1%}) at the baseline mean ({np.mean(base):.2f}): "
                f"{paper * np.mean(base):+.2f}; detectable / baseline mean: {mde / np.mean(base):.0%}"
            )
    for key in ("gfid_cfg", "gfid_nocfg"):
        s = f["by_codebook_size"]["1024"][key]["spearman"]
        rest = [t for t in f["tokenizers"] if t["name"] not in ("baseline-narrow", "robust-short")]
        g = [t[key] for t in rest]
        out.append(
            f"- {key}: Spearman pFID {s['a']:.2f} / rFID {s['b']:.2f}, difference {s['difference']:+.2f}, "
            f"bootstrap 95% CI [{s['ci95'][0]:+.2f}, {s['ci95'][1]:+.2f}]; without the narrow and half-length "
            f"members (n = {len(rest)}): pFID {stats.spearmanr([t['pfid'] for t in rest], g)[0]:+.2f} / "
            f"rFID {stats.spearmanr([t['rfid'] for t in rest], g)[0]:+.2f}"
        )
    return out


def power() -> list[str]:
    path = RESULTS / "noise-budget.json"
    if not path.is_file():
        return ["## Power: experiments/results/noise-budget.json not recorded yet"]
    b = json.loads(path.read_text())
    first = b["perturbation_mde"][0]
    rank12 = next(r for r in b["spearman_difference_mde"] if r["members"] == 12)
    pc = {r["design"]: r for r in b["post_minus_control_mde"]}["3 seeds, one shared held-out set"]
    return [
        "## Minimal detectable effects (80% power, alpha 0.05; noise-budget.json)",
        f"- perturbation, the family's design ({first['design']}): "
        + ", ".join(f"f = {f}: {v:.1f}" for f, v in first["mde"].items())
        + " FID",
        "- Spearman difference, 12 tokenizers: "
        + ", ".join(
            f"f = {f}: {'> 0.5' if not np.isfinite(rank12[f]['mde']) else round(rank12[f]['mde'], 2)}"
            for f in map(str, b["shares"])
        ),
        f"- post - control, 3 seeds on one held-out set: {pc['mde_e2_sd']:.2f} (E2's seed sd), "
        f"{pc['mde_dose_trained_sd']:.2f} (the 2000-step generator's default-recipe runs), "
        f"{pc['mde_dose_far_sd']:.2f} (the far generators' default-recipe runs)",
    ]


def main() -> None:
    for block in (posttrain(), dose_response(), guidance(), family(), power()):
        print("\n".join(block) + "\n")


if __name__ == "__main__":
    main()
