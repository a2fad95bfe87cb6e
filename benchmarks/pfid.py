"""One pFID pass (encode once, reference features once, 15 cells) vs 15 independent FID runs.

    python benchmarks/pfid.py [--num-images 200] [--features random|fmnist|inception] [--tokenizer DIR]
Without --tokenizer a small randomly initialised tokenizer (K=1024) is used: the timing is what matters.
"""

from __future__ import annotations

import argparse
import time

import torch

from robustok import Tokenizer, TokenizerConfig
from robustok.data import eval_batches, to_uint8
from robustok.metrics.features import get_feature_net
from robustok.metrics.frechet import RunningStats, frechet_distance
from robustok.metrics.pfid import PFIDConfig
from robustok.metrics.tokenizer_eval import evaluate_tokenizer
from robustok.tokenizer.perturbation import perturb_ids


@torch.no_grad()
def independent_runs(tok, batches, net, cells, seed):
    """The naive way: for every cell, encode, perturb, decode, and extract both feature sets again."""
    fids = []
    for i, (alpha, delta) in enumerate(cells):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i * 7_919)
        ref, pert = RunningStats(), RunningStats()
        for x, _ in batches:
            ids = tok.encode(x)
            ref.update(net(to_uint8(x)))
            pert.update(net(to_uint8(tok.decode(perturb_ids(ids, tok.codebook, alpha, delta, generator=gen)))))
        fids.append(frechet_distance(pert.finalize(), ref.finalize()))
    return sum(fids) / len(fids)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-images", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--features", default="random")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--data", default="fashion-mnist:test")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.tokenizer:
        tok = Tokenizer.from_pretrained(args.tokenizer).eval()
    else:
        torch.manual_seed(0)
        tok = Tokenizer(TokenizerConfig(codebook_size=1024)).eval()
    net = get_feature_net(args.features)
    batches = list(
        eval_batches(args.data, args.batch_size, args.num_images, tok.config.image_size, tok.config.channels)
    )
    cfg = PFIDConfig()
    cells = cfg.cells(tok.codebook_size)
    start = time.perf_counter()
    one = evaluate_tokenizer(tok, batches, ["pfid"], net, cfg)["pfid"]
    t_one = time.perf_counter() - start
    start = time.perf_counter()
    naive = independent_runs(tok, batches, net, cells, cfg.seed)
    t_naive = time.perf_counter() - start
    print(
        f"{args.num_images} images, K={tok.codebook_size}, {len(cells)} cells, features {net.name}, "
        f"{args.threads} threads"
    )
    print(f"{'method':<34}{'seconds':>10}{'pFID':>12}")
    print(f"{'one pFID pass (robustok)':<34}{t_one:>10.2f}{one:>12.4f}")
    print(f"{'15 independent FID runs':<34}{t_naive:>10.2f}{naive:>12.4f}")
    print(f"speed-up {t_naive / t_one:.2f}x")


if __name__ == "__main__":
    main()
