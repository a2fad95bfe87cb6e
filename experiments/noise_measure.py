"""Issue 21 part 1: the sample-set component of gFID, measured on one committed model, at three sample counts.

    OMP_NUM_THREADS=1 python experiments/noise_measure.py --out runs/noise [--record]

The committed `experiments/models/baseline-s0` tokenizer and its 2000-step AR generator; `--repeats` (4) sample
sets of 2000 images at CFG 1.5 (constant, the family's and the dose study's gFID setting), sampling seeds
100, 101, ... Each set's gFID-fmnist is measured as the benchmark measures it (`robustok.demo.stages`:
`sample_tokens`, `decoded_fid`; the reference is the first n images of fashion-mnist:train, n = the number of
generated images), for the whole set (n = 2000) and for its disjoint halves (n = 1000) and quarters (n = 500).
The spread across disjoint sets at each n is the sample-set variance that `experiments/noise_budget.py` scales.
Each seed's token ids are cached under `--out` (an interrupted run continues); `--record` writes
`experiments/results/noise-budget-sets.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
from study_models import GENERATOR, TOKENIZER  # noqa: E402

RESULT = ROOT / "experiments" / "results" / "noise-budget-sets.json"
SIZES = (2000, 1000, 500)
CFG = 1.5
FIRST_SEED = 100


def measure(out: Path, repeats: int, record: bool) -> dict:
    """gFID of every disjoint set at every size; rewrites the result after each seed."""
    import torch

    from robustok.demo.stages import decoded_fid, sample_tokens
    from robustok.generator import load_generator
    from robustok.metrics.features import get_feature_net
    from robustok.metrics.fid import source_stats
    from robustok.tokenizer.loading import load_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    gen, tok = load_generator(str(GENERATOR)).eval(), load_tokenizer(str(TOKENIZER)).eval()
    features = get_feature_net("fmnist")
    refs = {n: source_stats("fashion-mnist:train", features, num_images=n) for n in SIZES}
    res = {
        "tokenizer": "experiments/models/baseline-s0/tokenizer",
        "generator": "experiments/models/baseline-s0/generator-ar2000",
        "cfg": CFG,
        "features": "fmnist",
        "reference": "fashion-mnist:train (first n images)",
        "seeds": [],
        "sets": {str(n): [] for n in SIZES},
    }
    for seed in range(FIRST_SEED, FIRST_SEED + repeats):
        cache, done = out / f"ids-seed{seed}.npy", out / f"fids-seed{seed}.json"
        if done.is_file():
            fids = json.loads(done.read_text())
        else:
            if cache.is_file():
                ids = torch.from_numpy(np.load(cache).astype(np.int64))
            else:
                ids = sample_tokens(gen, SIZES[0], CFG, seed)
                np.save(cache, ids.numpy().astype(np.uint16))
            # disjoint slices of this seed's set; labels cycle 0..9, so every slice is class-balanced
            fids = {
                str(n): [decoded_fid(tok, ids[lo : lo + n], features, refs[n]) for lo in range(0, SIZES[0], n)]
                for n in SIZES
            }
            done.write_text(json.dumps(fids))
        for n in SIZES:
            res["sets"][str(n)] += fids[str(n)]
        res["seeds"].append(seed)
        print(
            f"seed {seed}: "
            + ", ".join(f"n={n}: {np.round(res['sets'][str(n)][-SIZES[0] // n :], 2).tolist()}" for n in SIZES),
            flush=True,
        )
        if record:
            RESULT.write_text(json.dumps(res, indent=1) + "\n")
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--record", action="store_true")
    a = p.parse_args()
    measure(a.out, a.repeats, a.record)


if __name__ == "__main__":
    main()
