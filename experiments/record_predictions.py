"""Record `robustok diagnose`'s estimate for every planned post-training condition of issue 21, before any run.

    python experiments/record_predictions.py    # writes experiments/predictions/issue21.json; refuses to overwrite

The estimate is `robustok.posttrain.evidence.estimate` (what `robustok diagnose` prints) on the condition's
gFID/rFID and generator kind, from the evidence shipped at this commit. Besides the verdict it records what a
later run is scored against: the predicted sign (likely -> post-trained below its control; unlikely -> not below;
mixed or unknown -> no call) and the interval of per-seed post - control in the conditions the estimate pooled
(all recipes, and this condition's recipe alone where it was measured there). Scoring after the runs: is the sign
right, and does the observed mean post - control fall inside the interval.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "predictions" / "issue21.json"
AUTHORS_IDS = "configs/posttrain/fmnist-authors.yaml on token-id pairs"


def _results(name: str) -> dict:
    return json.loads((ROOT / "experiments" / "results" / name).read_text())


def planned() -> list[dict]:
    """The conditions of issue 21 part 4, with gFID and rFID from committed JSON (None where not measured)."""
    cfg5 = next(a for a in _results("posttrain-dose.json")["arms"] if a["arm"] == "gen2000-cfg5")
    masked = _results("masked_generator.json")["masked"]
    rfid_s0 = next(t for t in _results("tokenizer_family-half-seeds.json")["tokenizers"] if t["name"] == "baseline-s0")[
        "rfid"
    ]
    rows = [
        {
            "condition": f"posttrain_pairs: {n} pairs, authors' recipe, token ids, 480 steps (2000-step AR)",
            "generator": "ar",
            "gfid": cfg5["gfid"],
            "rfid": cfg5["rfid"],
            "recipe": AUTHORS_IDS,
            "source": "posttrain-dose.json:gen2000-cfg5",
        }
        for n in (192, 1000, 4000, 16000)
    ]
    rows.append(
        {
            "condition": "masked generator (800 steps), authors' recipe, token ids",
            "generator": "masked",
            "gfid": masked["gfid_cfg"],
            "rfid": rfid_s0,
            "recipe": AUTHORS_IDS,
            "source": "masked_generator.json:masked.gfid_cfg, tokenizer_family-half-seeds.json:baseline-s0",
        }
    )
    rows.append(
        {
            "condition": "KL tokenizer + flow DiT, SDEdit pairs, against its control",
            "generator": "diffusion",
            "gfid": None,
            "rfid": None,
            "recipe": "",
            "source": "no committed JSON for these models yet",
        }
    )
    return rows


def _interval(deltas: list[float]) -> Optional[list[float]]:
    return [min(deltas), max(deltas)] if deltas else None


def predict(row: dict) -> dict:
    from robustok.posttrain.evidence import estimate

    if row["gfid"] is None:  # no ratio: the estimate can only speak to the generator kind
        est = estimate(float("nan"), 1.0, "fmnist", generator=row["generator"])
        est["gfid_over_rfid"] = None
    else:
        est = estimate(row["gfid"], row["rfid"], "fmnist", generator=row["generator"])
    word = est["verdict"].split(":")[0]
    sign = {"likely to pay": "post < control", "unlikely to pay": "post >= control"}.get(word)
    pooled = [d for c in est["evidence"] for d in c["deltas"]]
    own = [d for c in est["evidence"] if c["recipe"] == row["recipe"] for d in c["deltas"]]
    return {
        **row,
        "gfid_over_rfid": est["gfid_over_rfid"],
        "verdict": est["verdict"],
        "predicted_sign": sign,
        "interval_all_recipes": _interval(pooled),
        "interval_this_recipe": _interval(own),
    }


def main() -> int:
    if OUT.is_file():
        print(f"{OUT.relative_to(ROOT)} exists: predictions are recorded once, before the runs", file=sys.stderr)
        return 2
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "recorded_at_commit": commit,
        "command": "python experiments/record_predictions.py",
        "conditions": [predict(r) for r in planned()],
    }
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    for p in record["conditions"]:
        print(f"- {p['condition']}: {p['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
