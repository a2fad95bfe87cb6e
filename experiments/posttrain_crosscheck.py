"""Exploratory, written after the pairs study's first results (not pre-registered): why does E2's gain over the
control (post - control -0.34 at 480 steps) turn into a loss (+0.17 to +0.24) in the pairs study's 192-pair arm,
whose recipe and length are E2's?

    python experiments/posttrain_crosscheck.py --e2 runs/e2-replay --pairs runs/pairs [--record]

The two differ in the pair set (post-train-data --seed 0 for E2, --seed 1 for the pairs study) and, with it, in
the held-out generated tokens that judge them. This crosses the two: every finished decoder of E2's replay
(`posttrain_authors.py --budget long --arms ids --amp fp32`, seed 0) and of the pairs study's 192-pair arm, post-
trained and control, is scored on both judging sets (FID-fmnist of the 1000 decoded held-out tokens against 1000
fashion-mnist:test images, as `post-train` scores them; the diagonal must reproduce the recorded values). If the
sign follows the judging set, the gain is a property of the set that judges; if it follows the pairs, of the pairs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "experiments" / "results" / "posttrain-crosscheck.json"


def decoders(e2: Path, pairs: Path) -> dict[str, dict]:
    """name -> {pairs seed, post-trained and control decoder folders, the recorded post - control}."""
    runs = {}
    for run in sorted((e2 / "ids").glob("post-seed*")):
        runs[f"E2 replay, {run.name}"] = {"pairs_seed": 0, "run": run}
    for run in sorted((pairs / "pairs192").glob("post-seed[0-9]")):
        runs[f"pairs study 192, {run.name}"] = {"pairs_seed": 1, "run": run}
    for r in runs.values():
        s = json.loads((r["run"] / "posttrain.json").read_text())
        r["recorded"] = {"post": s["gfid_proxy_after"], "control": s["gfid_proxy_control"]}
    return runs


def main() -> None:
    from robustok.demo.stages import decoded_fid
    from robustok.metrics.features import get_feature_net
    from robustok.metrics.fid import source_stats
    from robustok.tokenizer.loading import load_tokenizer
    from robustok.tokens.pairs import PairStore

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--e2", type=Path, required=True, help="posttrain_authors.py --budget long --out folder")
    p.add_argument("--pairs", type=Path, required=True, help="posttrain_pairs.py --out folder")
    p.add_argument("--record", action="store_true", help=f"write {RESULT.relative_to(ROOT)}")
    a = p.parse_args()
    sets = {
        0: np.array(PairStore(a.e2 / "ids" / "pairs").eval_generated, dtype=np.int64),
        1: np.array(PairStore(a.pairs / "pairs192" / "pairs").eval_generated, dtype=np.int64),
    }
    net = get_feature_net("fmnist")
    reference = source_stats("fashion-mnist:test", net, num_images=1000, resolution=32)
    rows = []
    for name, r in decoders(a.e2, a.pairs).items():
        row = {"decoder": name, "pairs_seed": r["pairs_seed"], "recorded": r["recorded"]}
        for judge, ids in sets.items():
            with torch.no_grad():
                fids = {
                    kind: float(decoded_fid(load_tokenizer(d), torch.from_numpy(ids), net, reference))
                    for kind, d in (("post", r["run"] / "tokenizer"), ("control", r["run"] / "control" / "tokenizer"))
                }
            row[f"judged_on_set{judge}"] = {**fids, "post_minus_control": fids["post"] - fids["control"]}
        print(
            f"{name} (pairs seed {r['pairs_seed']}): post - control on set 0 "
            f"{row['judged_on_set0']['post_minus_control']:+.3f}, "
            f"on set 1 {row['judged_on_set1']['post_minus_control']:+.3f}"
            f" (recorded {r['recorded']['post'] - r['recorded']['control']:+.3f})",
            flush=True,
        )
        rows.append(row)
    if a.record:
        RESULT.write_text(json.dumps({"command": "python experiments/posttrain_crosscheck.py", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
