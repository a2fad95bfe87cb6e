"""Generate `robustok/posttrain/evidence.json`, the conditions `robustok diagnose` estimates from, from the
committed study results in `experiments/results/`.

    python experiments/build_evidence.py            # rewrite robustok/posttrain/evidence.json
    python experiments/build_evidence.py --check    # exit 1 if the shipped file differs from a fresh generation

A condition is one tokenizer + generator + pair set (sigma, pair count, sampler) + recipe, with post-training
runs next to their sigma = 1 control on the same held-out generated tokens. Runs that share seeds and pairs are
one condition: E2's token-id arm at 40, 80 and 160 epochs (and its first run on another machine) are the same
three seeds on the same 192 pairs, so they count as 3 runs, not 12; a seed counts as won only if it beat its
control in every member (every length, every machine), and its delta is the mean over the members.

Only conditions with a results file are here. Dropped (their numbers exist only as README text, no committed
JSON): the default demo profile (baseline and robust tokenizers, 3 + 3 runs), the full demo profile's recipe
study (3 recipes x 2 tokenizers x 3 seeds) and its sigma = 0.95 pairs (6 runs): 30 runs in all. The quick demo
reference (`demo-quick-reference.json`) is a wiring check with random features, not comparable, and is left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
SHIPPED = ROOT / "robustok" / "posttrain" / "evidence.json"
OURS, AUTHORS = "configs/posttrain/fmnist.yaml", "configs/posttrain/fmnist-authors.yaml"
DROPPED = [
    "default demo profile, baseline and robust tokenizers (6 runs)",
    "full demo profile, recipe study: demo, low-lr, paper recipes x 2 tokenizers (18 runs)",
    "full demo profile, sigma = 0.95 pairs, paper recipe x 2 tokenizers (6 runs)",
]


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _condition(
    where: str, generator: str, gfid: float, rfid: float, recipe: str, members: list[tuple[str, dict]]
) -> dict:
    """One condition from its members (source label, arm with per-seed `delta_vs_control`), same seeds."""
    deltas = np.array([arm["delta_vs_control"] for _, arm in members], dtype=float)  # members x seeds
    if len({len(arm["delta_vs_control"]) for _, arm in members}) != 1:
        raise ValueError(f"{where}: members have different seed counts")
    won = (deltas < 0).all(axis=0)
    per_seed = deltas.mean(axis=0)
    return {
        "where": where,
        "generator": generator,
        "features": "fmnist",
        "gfid": round(float(gfid), 4),
        "rfid": round(float(rfid), 4),
        "recipe": recipe,
        "runs": int(deltas.shape[1]),
        "beat": int(won.sum()),
        "mean_delta": round(float(per_seed.mean()), 4),
        "deltas": [round(float(d), 4) for d in per_seed],
        "members": [label for label, _ in members],
    }


def build() -> dict:
    """All conditions with committed JSON, in a fixed order."""
    dose = _load("posttrain-dose.json")
    arms = {a["arm"]: a for a in dose["arms"]}
    conditions = []
    for a in dose["arms"]:
        cfg = "CFG 5 power 1.15" if a["cfg_schedule"] == "power" else f"CFG {a['cfg']:g}"
        conditions.append(
            _condition(
                f"{a['generator_steps']}-step AR generator, {dose['num_pairs']} pairs at {cfg}, default recipe "
                f"{dose['post_steps']} steps (posttrain-dose)",
                "ar",
                a["gfid"],
                a["rfid"],
                OURS,
                [(f"posttrain-dose.json:{a['arm']}", a)],
            )
        )
    # E2: the committed baseline-s0 models are the dose study's tokenizer and 2000-step generator (rebuilt bit for
    # bit, experiments/study_models.py), sampled in the dose study's CFG 5 arm's regime: its gFID and rFID.
    cfg5 = arms["gen2000-cfg5"]
    e2 = [(name, _load(f"posttrain-authors{name}.json")) for name in ("-first-run", "", "-long", "-longer")]
    for arm, label in (("ids", "token-id pairs"), ("roundtrip", "round-trip pairs")):
        recipe = f"{AUTHORS} on {label}"  # the pair input (`post-train-data --pair-input`) is part of the recipe
        runs = [(name, d, a) for name, d in e2 for a in d["arms"] if a["arm"] == arm]
        if len({(tuple(d["seeds"]), d["num_pairs"], d["sigma"], d["guidance"]) for _, d, _ in runs}) != 1:
            raise ValueError(f"E2 {arm}: the runs do not share seeds and pairs, so they are not one condition")
        epochs = "/".join(sorted({f"{a['epochs']:g}" for _, _, a in runs}, key=float))
        conditions.append(
            _condition(
                f"2000-step AR generator, {runs[0][1]['num_pairs']} pairs at CFG 5 power 1.15, authors' recipe at "
                f"{epochs} epochs, {label} (posttrain-authors*)",
                "ar",
                cfg5["gfid"],
                cfg5["rfid"],
                recipe,
                [(f"posttrain-authors{name}.json:{arm} ({a['epochs']:g} epochs)", a) for name, _, a in runs],
            )
        )
    masked = _load("masked_generator.json")
    family = {t["name"]: t for t in _load("tokenizer_family-half-seeds.json")["tokenizers"]}
    post = masked["posttrain"]
    conditions.append(
        _condition(
            f"masked generator, {post['num_pairs']} pairs at sigma {post['sigma']:g}, default recipe "
            f"{post['steps']} steps (masked_generator)",
            "masked",
            masked["masked"]["gfid_cfg"],
            family["baseline-s0"]["rfid"],
            OURS,
            [("masked_generator.json:posttrain", {"delta_vs_control": [post["delta_post_minus_control"]]})],
        )
    )
    if (RESULTS / "posttrain-pairs.json").is_file():
        # issue 21's pairs study: nested pair sets (192 ... 16000, one seed), the same seeds and judging set, so
        # the pair counts are members of one condition (a seed wins only if it beat its control at every count)
        study = _load("posttrain-pairs.json")
        arms = [a for a in study["arms"] if len(a["seeds"]) == len(study["arms"][0]["seeds"])]
        counts = "/".join(str(a["num_pairs"]) for a in arms)
        conditions.append(
            _condition(
                f"2000-step AR generator, {counts} pairs at CFG 5 power 1.15 (pair seed 1), authors' recipe at "
                f"{study['design']['steps']} steps, token-id pairs (posttrain-pairs)",
                "ar",
                cfg5["gfid"],
                cfg5["rfid"],
                f"{AUTHORS} on token-id pairs",
                [(f"posttrain-pairs.json:{a['num_pairs']} pairs", a) for a in arms],
            )
        )
    if (RESULTS / "posttrain-pairsets.json").is_file():
        # six independent 192-pair sets (post-train-data --seed 2..7), one post-training seed each: six runs
        sets = _load("posttrain-pairsets.json")["sets"]
        conditions.append(
            _condition(
                f"2000-step AR generator, {len(sets)} independent sets of 192 pairs at CFG 5 power 1.15, authors' "
                "recipe at 80 epochs, token-id pairs (posttrain-pairsets)",
                "ar",
                cfg5["gfid"],
                cfg5["rfid"],
                f"{AUTHORS} on token-id pairs",
                [("posttrain-pairsets.json", {"delta_vs_control": [r["delta"] for r in sets]})],
            )
        )
    if (RESULTS / "posttrain-masked.json").is_file():
        m = _load("posttrain-masked.json")
        conditions.append(
            _condition(
                "masked generator (retrained, fp32), 1000 pairs at sigma 0.9, authors' recipe at 480 steps, "
                "token-id pairs (posttrain-masked)",
                "masked",
                m["generator"]["gfid_cfg"],
                family["baseline-s0"]["rfid"],
                f"{AUTHORS} on token-id pairs",
                [("posttrain-masked.json:masked", m["arm"])],
            )
        )
        if t := m.get("pair_sets"):  # the same run on other pair sets, one post-training seed each: own runs
            conditions.append(
                _condition(
                    f"masked generator (retrained, fp32), {len(t['sets'])} other sets of 1000 pairs at sigma 0.9, "
                    "authors' recipe at 480 steps, token-id pairs (posttrain-masked, pair sets)",
                    "masked",
                    m["generator"]["gfid_cfg"],
                    family["baseline-s0"]["rfid"],
                    f"{AUTHORS} on token-id pairs",
                    [("posttrain-masked.json:pair_sets", {"delta_vs_control": t["deltas"]})],
                )
            )
    if (RESULTS / "posttrain-diffusion.json").is_file():  # each pair set with post-training seed 0: own runs
        d = _load("posttrain-diffusion.json")
        conditions.append(
            _condition(
                f"KL tokenizer + flow DiT, {len(d['sets'])} sets of 1000 SDEdit pairs at sigma 0.9, authors' recipe "
                "at 480 steps (posttrain-diffusion)",
                "diffusion",
                float(np.mean(d["untouched"])),
                d["tokenizer"]["rfid"],
                f"{AUTHORS} on SDEdit latents",
                [("posttrain-diffusion.json", {"delta_vs_control": d["deltas"]})],
            )
        )
    return {
        "generated_by": "python experiments/build_evidence.py",
        "dropped_without_json": DROPPED,
        "conditions": conditions,
    }


def render(evidence: dict) -> str:
    return json.dumps(evidence, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    a = p.parse_args()
    text = render(build())
    if a.check:
        same = SHIPPED.is_file() and SHIPPED.read_text() == text
        print(f"{SHIPPED.relative_to(ROOT)}: {'matches' if same else 'differs from'} a fresh generation")
        return 0 if same else 1
    SHIPPED.write_text(text)
    print(f"wrote {SHIPPED.relative_to(ROOT)} ({len(build()['conditions'])} conditions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
