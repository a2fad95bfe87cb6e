"""When does post-training beat its equal-compute sigma = 1 control? The conditions measured so far, the estimate
`robustok diagnose` prints from them, and the dose-response figure (README "When does post-training help?").

The conditions are package data, `evidence.json`, generated from the committed study results
(`experiments/results/*.json`) by `experiments/build_evidence.py` (a test keeps the two equal). Each condition is
one tokenizer + generator + pair set + recipe with post-training runs next to their sigma = 1 control, summarised
by the generator's gFID over the tokenizer's rFID (both FID-fmnist; the further the generator's samples are from
what the tokenizer can reconstruct, the more a decoder could learn) and by post - control per seed (negative:
post-training won). Runs that share seeds and pairs (one study run on to more epochs) are one condition.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional, Sequence


@dataclass(frozen=True)
class Condition:
    where: str  # what was run (and the results file it comes from)
    gfid: float  # the generator's gFID (FID-fmnist, CFG 1.5 samples or the pairs' sampler)
    rfid: float  # the tokenizer's rFID (FID-fmnist)
    runs: int  # post-training seeds, each next to its own control
    beat: int  # seeds whose post-trained decoder ended below its control in every member run
    mean_delta: Optional[float]  # mean of post - control (gFID proxy of held-out generated tokens)
    recipe: str = ""  # the post-training config it used (+ pair input where not token ids)
    generator: str = "ar"  # the generator kind (`model.kind`): only conditions of one kind are pooled
    features: str = "fmnist"  # the feature network of gfid, rfid and the deltas
    deltas: tuple[float, ...] = ()  # post - control per seed (mean over the member runs)
    members: tuple[str, ...] = ()  # the results files and arms that make up the condition

    @property
    def ratio(self) -> float:
        return self.gfid / self.rfid


def load_evidence(text: Optional[str] = None) -> list[Condition]:
    """The shipped conditions (or those in `text`, the JSON of `experiments/build_evidence.py`)."""
    if text is None:
        text = resources.files("robustok.posttrain").joinpath("evidence.json").read_text(encoding="utf-8")
    return [
        Condition(**{**c, "deltas": tuple(c["deltas"]), "members": tuple(c["members"])})
        for c in json.loads(text)["conditions"]
    ]


EVIDENCE: list[Condition] = load_evidence()


def nearby(
    ratio: float, evidence: Sequence[Condition] = EVIDENCE, factor: float = 2.0, generator: Optional[str] = None
) -> list[Condition]:
    """The measured conditions whose gFID/rFID lies within `factor` of `ratio` (of one generator kind if given)."""
    return [
        c
        for c in evidence
        if abs(math.log(c.ratio / ratio)) <= math.log(factor) and (generator is None or c.generator == generator)
    ]


def winning_recipes(near: Sequence[Condition]) -> list[tuple[str, int, int, float]]:
    """(recipe, seeds won, seeds, mean post - control) for each recipe that beat its control on every run of it
    in `near`, best first; a recipe that lost a single run there is not named."""
    out = []
    for recipe in sorted({c.recipe for c in near if c.recipe}):
        own = [c for c in near if c.recipe == recipe]
        runs, beat = sum(c.runs for c in own), sum(c.beat for c in own)
        if runs and beat == runs and all(c.mean_delta is not None for c in own):
            out.append((recipe, beat, runs, sum(d for c in own for d in c.deltas) / runs))
    return sorted(out, key=lambda r: r[3])


def estimate(
    gfid: float, rfid: float, features: str, evidence: Sequence[Condition] = EVIDENCE, generator: str = "ar"
) -> dict:
    """A plain-language estimate of whether post-training will beat its control, from the measured conditions of
    this generator kind within a factor 2 of this gFID/rFID ratio: likely (>= 75% of their runs won), unlikely
    (<= 25%), else mixed; unknown where none is that close."""
    ratio = gfid / max(rfid, 1e-6)
    own = [c for c in evidence if c.generator == generator]
    near = nearby(ratio, own)
    runs, beat = sum(c.runs for c in near), sum(c.beat for c in near)
    if not own:
        verdict = (
            f"unknown: no post-training run with a {generator} generator has been measured; run `robustok "
            "post-train ... --control` and compare"
        )
    elif not near:
        closest = min(own, key=lambda c: abs(math.log(c.ratio / ratio)))
        verdict = (
            f"unknown: gFID/rFID = {ratio:.1f} is more than 2x from every condition measured so far (closest: "
            f"{closest.ratio:.1f}, post-training won {closest.beat} of {closest.runs} runs); run `robustok "
            "post-train ... --control` and compare"
        )
    else:
        share = beat / runs
        word = "likely to pay" if share >= 0.75 else "unlikely to pay" if share <= 0.25 else "mixed"
        verdict = (
            f"{word}: at gFID/rFID = {ratio:.1f}, in the {len(near)} measured condition(s) with a ratio within "
            f"2x ({', '.join(f'{c.ratio:.1f}' for c in near)}) post-training beat its sigma=1 control in "
            f"{beat} of {runs} runs"
        )
        won = winning_recipes(near)
        if won:
            recipe, b, n, d = won[0]
            verdict += (
                f"; one recipe beat its control on every run there: {recipe} ({b} of {n}, mean post - control {d:+.2f})"
            )
    note = "" if features == "fmnist" else f" (the measured ratios are FID-fmnist; yours is FID-{features})"
    return {
        "gfid_over_rfid": ratio,
        "verdict": verdict + note,
        "runs_nearby": runs,
        "beat_nearby": beat,
        "evidence": [dict(vars(c), ratio=c.ratio) for c in near],
    }


def plot_evidence(
    ax: Any, own: Sequence[tuple[float, Sequence[float], str]] = (), evidence: Sequence[Condition] = EVIDENCE
) -> None:
    """Post - control against gFID/rFID (log x): the measured conditions (grey, size ~ runs) and `own` points
    (ratio, per-seed post - control, label), e.g. a demo run's tokenizers."""
    for c in evidence:
        if c.mean_delta is not None:
            ax.scatter(c.ratio, c.mean_delta, s=12 * c.runs, c="0.6", alpha=0.7, edgecolors="0.3")
    for k, (ratio, deltas, label) in enumerate(own):
        ax.scatter([ratio] * len(deltas), deltas, c=f"C{k}", label=label, zorder=3, s=18)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(FixedLocator([1, 2, 3, 5, 10, 20, 30, 50, 100, 200]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("generator gFID / tokenizer rFID")
    ax.set_ylabel("post-trained − control (gFID proxy)")
    if own:
        ax.legend(fontsize=7, frameon=False)
