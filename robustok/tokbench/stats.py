"""Does a tokenizer metric predict gFID? Rank/linear correlations, a bootstrap of their difference, pair ordering.

All functions take one value per tokenizer (same order in every array) and return JSON-ready dicts.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import stats


def _corr(x: np.ndarray, y: np.ndarray, kind: str) -> float:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    fn = stats.spearmanr if kind == "spearman" else stats.pearsonr
    return float(fn(x, y)[0])


def correlation_difference(
    metric_a: list[float],
    metric_b: list[float],
    gfid: list[float],
    kind: str = "spearman",
    samples: int = 2000,
    seed: int = 0,
) -> dict:
    """corr(a, gFID), corr(b, gFID) and a bootstrap 95% interval of corr(a, gFID) - corr(b, gFID).

    Tokenizers are resampled with replacement (the same resample for both metrics, so the interval is of the
    paired difference); resamples where a correlation is undefined (constant values) are dropped and counted.
    """
    a, b, g = (np.asarray(v, dtype=np.float64) for v in (metric_a, metric_b, gfid))
    ra, rb = _corr(a, g, kind), _corr(b, g, kind)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(samples if len(g) >= 3 else 0):
        idx = rng.integers(0, len(g), len(g))
        d = _corr(a[idx], g[idx], kind) - _corr(b[idx], g[idx], kind)
        if not math.isnan(d):
            diffs.append(d)
    lo, hi = np.percentile(diffs, [2.5, 97.5]).tolist() if diffs else [math.nan, math.nan]
    return {
        "kind": kind,
        "a": ra,
        "b": rb,
        "difference": ra - rb,
        "ci95": [lo, hi],
        "bootstrap_used": len(diffs),
        "bootstrap_dropped": (samples if len(g) >= 3 else 0) - len(diffs),
    }


def pair_ordering(metric_a: list[float], metric_b: list[float], gfid: list[float]) -> dict:
    """How often each metric orders a pair of tokenizers as gFID does, over all pairs and over the pairs where
    the two metrics disagree (the pairs that decide which metric is the better predictor). Ties count as wrong."""
    a, b, g = (np.asarray(v, dtype=np.float64) for v in (metric_a, metric_b, gfid))
    total = disagree = a_right = b_right = a_right_dis = b_right_dis = 0
    for i, j in itertools.combinations(range(len(g)), 2):
        sg = np.sign(g[i] - g[j])
        if sg == 0:
            continue
        sa, sb = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
        total += 1
        a_right += int(sa == sg)
        b_right += int(sb == sg)
        if sa != sb:
            disagree += 1
            a_right_dis += int(sa == sg)
            b_right_dis += int(sb == sg)
    frac = lambda k, n: k / n if n else math.nan  # noqa: E731
    return {
        "pairs": total,
        "a_accuracy": frac(a_right, total),
        "b_accuracy": frac(b_right, total),
        "disagreeing_pairs": disagree,
        "a_accuracy_on_disagreeing": frac(a_right_dis, disagree),
        "b_accuracy_on_disagreeing": frac(b_right_dis, disagree),
    }


def compare_predictors(
    pfid: list[float], rfid: list[float], gfid: list[float], samples: int = 2000, seed: int = 0
) -> dict:
    """pFID ("a") against rFID ("b") as predictors of gFID: Spearman, Pearson (each with the bootstrap interval of
    the difference pFID - rFID) and pair ordering."""
    return {
        "n": len(gfid),
        "spearman": correlation_difference(pfid, rfid, gfid, "spearman", samples, seed),
        "pearson": correlation_difference(pfid, rfid, gfid, "pearson", samples, seed),
        "ordering": pair_ordering(pfid, rfid, gfid),
    }
