"""What the studies in `experiments/` share: the t interval over independent units, and the command-line glue
(`--out`, `--record`, `--summarize`, `--markdown JSON`, a comma list checked against the design)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from noise_budget import mde_t
from scipy import stats


def t975(df: int) -> float:
    """The two-sided 95% quantile of Student's t with `df` degrees of freedom."""
    return float(stats.t.ppf(0.975, df))


def unit_test(deltas: Sequence[float]) -> dict:
    """One-sample t test of post − control over independent units (pair sets, seeds): the mean, the units' sd, the
    95% interval, the call ("beats its control" below 0, "loses" above, else "no call") and the realised minimal
    detectable effect at 80% power."""
    mean, sd = float(np.mean(deltas)), float(np.std(deltas, ddof=1))
    se, df = sd / np.sqrt(len(deltas)), len(deltas) - 1
    half = t975(df) * se
    return {
        "mean_delta": mean,
        "pair_set_sd": sd,
        "ci95": [mean - half, mean + half],
        "verdict": "beats its control" if mean + half < 0 else "loses" if mean - half > 0 else "no call",
        "realised_mde": mde_t(se, df),
    }


def parser(doc: str, result: Path, record_help: str) -> argparse.ArgumentParser:
    """A study's parser with the options every study has; `doc` is the script's docstring."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--out", help="working folder (models, pairs, cached scores)")
    p.add_argument("--record", action="store_true", help=record_help)
    p.add_argument("--summarize", action="store_true", help=f"build {result.name} from the per-run files")
    p.add_argument("--markdown", metavar="JSON", help="print the docs tables of a recorded result and stop")
    return p


def report(args: argparse.Namespace, build: Callable[[], dict], markdown: Callable[[dict], str], result: Path) -> bool:
    """`--markdown JSON` prints a recorded result's tables; `--summarize` rebuilds `result` and prints them. True
    when one of them ran (the caller stops)."""
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return True
    if args.summarize:
        built = build()
        result.write_text(json.dumps(built, indent=1, default=float))
        print(markdown(built))
        return True
    return False


def chosen(p: argparse.ArgumentParser, flag: str, text: str, design: Sequence[int]) -> list[int]:
    """The comma list `text` of `flag`, refused unless every value is in the design."""
    values = [int(x) for x in text.split(",") if x]
    if unknown := set(values) - set(design):
        p.error(f"{flag}: {sorted(unknown)} are not in the design {tuple(design)}")
    return values
