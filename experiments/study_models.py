"""Rebuild the trained models the post-training studies share, bit for bit, and install them in the repository.

    python experiments/study_models.py --out runs/study-models [--install]

The tokenizer is the family's `baseline-s0` at the half budget (`experiments/tokenizer_family.py`: 1200 steps,
`run.deterministic=true`), its token store holds the first 30,000 fashion-mnist:train images (as the family's
benchmark), and the generator is the dose study's 2000-step AR generator (`experiments/posttrain_dose.py`, seed 0,
deterministic). About an hour on one thread. `--install` copies them to `experiments/models/` (a few MB, committed
so that the studies need no retraining), where `experiments/models/README.md` says what they are.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
MODELS = ROOT / "experiments" / "models" / "baseline-s0"
TOKENIZER, GENERATOR = MODELS / "tokenizer", MODELS / "generator-ar2000"


def build(out: Path) -> tuple[Path, Path]:
    """Train (or reuse) the tokenizer, write its token store and train the generator under `out`."""
    import posttrain_dose
    from tokenizer_family import train_member

    from robustok.data import build_dataset
    from robustok.tokenizer.loading import load_tokenizer
    from robustok.tokens.store import write_token_store

    tok = Path(train_member("baseline-s0", out / "family-half", "half"))
    tokens = out / "family-half" / "bench" / "tokens" / "baseline-s0"
    if not (tokens / "manifest.json").is_file():
        t = load_tokenizer(tok)
        ds = build_dataset("fashion-mnist:train", t.config.image_size, t.config.channels, train=True)
        write_token_store(t, ds, tokens, views=1, limit=30000, source="fashion-mnist:train", overwrite=True)
    gen = posttrain_dose.train_generator(str(tokens), str(tok), 2000, out / "dose")
    return tok, Path(gen)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--install", action="store_true", help=f"copy the models to {MODELS.relative_to(ROOT)}")
    args = p.parse_args()
    tok, gen = build(Path(args.out).resolve())
    print(f"tokenizer: {tok}\ngenerator: {gen}")
    if args.install:
        for src, dst in ((tok, TOKENIZER), (gen, GENERATOR)):
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst)
        print(f"installed in {MODELS}")


if __name__ == "__main__":
    main()
