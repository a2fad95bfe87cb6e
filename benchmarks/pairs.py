"""Post-training pair generation: robustok's token-id pipeline vs the generate -> PNG -> re-encode round trip.

    python benchmarks/pairs.py [--tokenizer DIR --generator DIR] [--num 256] [--batch 64] [--sigma 0.7]

Both pipelines run teacher-forced sampling with the same seeds. robustok stores the generated ids; the
round trip (what the authors' code does) decodes them, writes PNGs, reads them back and re-encodes them.
Prints pairs/s of both, the speed-up, and the fraction of tokens the round trip changes. Without
--tokenizer/--generator, the demo-sized models (conv tokenizer K=1024 8x8, tiny AR) with random weights.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from robustok.data import build_dataset, to_uint8
from robustok.generator.ar import ARConfig, ARGenerator
from robustok.generator.sampling import SamplingOptions
from robustok.posttrain.pairs import generate_batch
from robustok.tokenizer import Tokenizer, TokenizerConfig


def models(args):
    if args.tokenizer and args.generator:
        from robustok.adapters import load_tokenizer
        from robustok.generator import load_generator

        return load_tokenizer(args.tokenizer).eval(), load_generator(args.generator).eval()
    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig()).eval()
    gen = ARGenerator(ARConfig(vocab_size=tok.codebook_size, grid=[tok.grid_size] * 2, dim=128, depth=4, heads=4))
    return tok, gen.eval()


def run(tok, gen, images, labels, sigma, batch, roundtrip: bool, folder: Path) -> tuple[float, list]:
    opts = SamplingOptions()
    out = []
    t = time.perf_counter()
    for b, lo in enumerate(range(0, len(images), batch)):
        x, y = images[lo : lo + batch], labels[lo : lo + batch]
        rng_s, rng_m = torch.Generator().manual_seed(b), torch.Generator().manual_seed(10_000 + b)
        ids = generate_batch(gen, tok, x, y, sigma, opts, rng_s, rng_m)
        if roundtrip:
            pix = to_uint8(tok.decode(ids)).permute(0, 2, 3, 1).numpy()
            for k, p in enumerate(pix):
                Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p).save(folder / f"{lo + k:06d}.png")
            back = np.stack([np.asarray(Image.open(folder / f"{lo + k:06d}.png")) for k in range(len(pix))])
            back = torch.from_numpy(back).float().div(127.5).sub(1)
            back = back[:, None] if back.ndim == 3 else back.permute(0, 3, 1, 2)
            out.append((ids, tok.encode(back)))
        else:
            np.save(folder / f"ids-{b:05d}.npy", ids.flatten(1).numpy().astype(np.uint16))
            out.append((ids, ids))
    return len(images) / (time.perf_counter() - t), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer")
    ap.add_argument("--generator")
    ap.add_argument("--num", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--sigma", type=float, default=0.7)
    args = ap.parse_args()
    tok, gen = models(args)
    ds = build_dataset("fashion-mnist:test", tok.config.image_size, tok.config.channels)
    items = [ds[i] for i in range(args.num)]
    images = torch.stack([x for x, _ in items])
    labels = torch.tensor([y for _, y in items]) % max(gen.config.num_classes, 1)
    with torch.no_grad(), tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        ours, _ = run(tok, gen, images, labels, args.sigma, args.batch, False, Path(d1))
        theirs, pairs = run(tok, gen, images, labels, args.sigma, args.batch, True, Path(d2))
    changed = float(np.mean([(a != b).float().mean().item() for a, b in pairs]))
    print(f"{'pipeline':44s} {'pairs/s':>9s}")
    print(f"{'robustok: store generated token ids':44s} {ours:9.1f}")
    print(f"{'round trip: decode -> PNG -> re-encode':44s} {theirs:9.1f}")
    print(
        f"speed-up {ours / theirs:.2f}x; the round trip changes {changed:.1%} of the generated tokens "
        f"({args.num} pairs, batch {args.batch}, sigma {args.sigma}, {torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
