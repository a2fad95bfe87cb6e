"""When does post-training beat its equal-compute sigma = 1 control? The conditions measured so far, the estimate
`robustok diagnose` prints from them, and the dose-response figure (README "When does post-training help?").

Each condition is one tokenizer + generator (+ recipe) with post-training runs next to their sigma = 1 control,
summarised by the generator's gFID over the tokenizer's rFID (both FID-fmnist; the further the generator's
samples are from what the tokenizer can reconstruct, the more a decoder could learn) and by post - control per
run (negative: post-training won).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence


@dataclass(frozen=True)
class Condition:
    where: str                  # what was run (and where the numbers are: README section / results file)
    gfid: float                 # the generator's gFID (FID-fmnist, CFG 1.5 samples or the pairs' held-out tokens)
    rfid: float                 # the tokenizer's rFID (FID-fmnist)
    runs: int                   # post-training runs, each next to its own control
    beat: int                   # runs whose post-trained decoder ended below its control
    mean_delta: Optional[float]  # mean of post - control (gFID proxy of held-out generated tokens)
    recipe: str = ""            # the post-training config it used, where one file holds it

    @property
    def ratio(self) -> float:
        return self.gfid / self.rfid


OURS, AUTHORS = "configs/posttrain/fmnist.yaml", "configs/posttrain/fmnist-authors.yaml"   # the recipes' configs

EVIDENCE: list[Condition] = [
    Condition("default demo profile, baseline tokenizer (README: demo, default profile)", 124.7, 4.44, 3, 3, -5.2,
              OURS),
    Condition("default demo profile, robust tokenizer (README: demo, default profile)", 124.6, 5.18, 3, 3, -6.5, OURS),
    Condition("full demo profile, baseline, 3 recipes (README: full profile, recipe study)", 13.3, 2.2, 9, 0, 0.78),
    Condition("full demo profile, robust, 3 recipes (README: full profile, recipe study)", 11.3, 2.2, 9, 0, 0.79),
    Condition("full demo profile, both tokenizers, sigma = 0.95 pairs (README: full profile)", 12.3, 2.2, 6, 1, None),
    Condition("masked generator, sigma = 0.5 (experiments/results/masked_generator.json)", 55.05, 3.86, 1, 0, 6.86),
    # one tokenizer, AR generators of increasing quality (experiments/results/posttrain-dose.json, issue 10 E3/E1)
    Condition("100-step AR generator (posttrain-dose)", 259.34, 3.67, 3, 3, -13.51, OURS),
    Condition("300-step AR generator (posttrain-dose)", 173.21, 3.67, 3, 3, -6.24, OURS),
    Condition("800-step AR generator (posttrain-dose)", 45.34, 3.67, 3, 1, 0.40, OURS),
    Condition("2000-step AR generator (posttrain-dose)", 12.57, 3.67, 3, 0, 0.86, OURS),
    Condition("2000-step AR generator, pairs at CFG 5 power 1.15 (posttrain-dose)", 11.11, 3.67, 3, 0, 0.40, OURS),
    # the same generator and guidance, the authors' recipe at length (experiments/results/posttrain-authors.json, E2)
    Condition("authors' recipe, 40 epochs, token-id pairs (posttrain-authors)", 11.11, 3.67, 3, 3, -0.11, AUTHORS),
    Condition("authors' recipe, 40 epochs, round-trip pairs (posttrain-authors)", 11.11, 3.67, 3, 0, 0.22),
    # E2's token-id arm run on to 80 and 160 epochs with the same EMA decay per step (posttrain-authors-long*.json)
    Condition("authors' recipe, 80 epochs, token-id pairs (posttrain-authors-long)", 11.11, 3.67, 3, 3, -0.36,
              AUTHORS + " epochs=80 ema_keep=0.21"),
    Condition("authors' recipe, 160 epochs, token-id pairs (posttrain-authors-longer)", 11.11, 3.67, 3, 3, -0.25,
              AUTHORS + " epochs=160 ema_keep=0.04"),
]


def nearby(ratio: float, evidence: Sequence[Condition] = EVIDENCE, factor: float = 2.0) -> list[Condition]:
    """The measured conditions whose gFID/rFID lies within `factor` of `ratio`."""
    return [c for c in evidence if abs(math.log(c.ratio / ratio)) <= math.log(factor)]


def estimate(gfid: float, rfid: float, features: str, evidence: Sequence[Condition] = EVIDENCE) -> dict:
    """A plain-language estimate of whether post-training will beat its control, from the measured conditions
    within a factor 2 of this gFID/rFID ratio: likely (>= 75% of their runs won), unlikely (<= 25%), else mixed;
    unknown where none is that close."""
    ratio = gfid / max(rfid, 1e-6)
    near = nearby(ratio, evidence)
    runs, beat = sum(c.runs for c in near), sum(c.beat for c in near)
    if not near:
        closest = min(evidence, key=lambda c: abs(math.log(c.ratio / ratio)))
        verdict = (f"unknown: gFID/rFID = {ratio:.1f} is more than 2x from every condition measured so far (closest: "
                   f"{closest.ratio:.1f}, post-training won {closest.beat} of {closest.runs} runs); run `robustok "
                   "post-train ... --control` and compare")
    else:
        share = beat / runs
        word = "likely to pay" if share >= 0.75 else "unlikely to pay" if share <= 0.25 else "mixed"
        verdict = (f"{word}: at gFID/rFID = {ratio:.1f}, in the {len(near)} measured condition(s) with a ratio within "
                   f"2x ({', '.join(f'{c.ratio:.1f}' for c in near)}) post-training beat its sigma=1 control in "
                   f"{beat} of {runs} runs")
        won = [c for c in near if c.recipe and c.runs and c.beat == c.runs and c.mean_delta is not None]
        if won:
            best = min(won, key=lambda c: c.mean_delta)
            verdict += (f"; one recipe beat its control on every run there: {best.recipe} ({best.beat} of "
                        f"{best.runs}, mean post - control {best.mean_delta:+.2f})")
    note = "" if features == "fmnist" else f" (the measured ratios are FID-fmnist; yours is FID-{features})"
    return {"gfid_over_rfid": ratio, "verdict": verdict + note, "runs_nearby": runs, "beat_nearby": beat,
            "evidence": [dict(vars(c), ratio=c.ratio) for c in near]}


def plot_evidence(ax: Any, own: Sequence[tuple[float, Sequence[float], str]] = (),
                  evidence: Sequence[Condition] = EVIDENCE) -> None:
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
