"""A generator's cross-entropy on real tokens: the quickest check that a (converted) generator is right.

The mean over the first N entries of a token store of the generator's own training loss without label dropout
(`TokenGenerator.token_cross_entropy`: next-token cross-entropy for AR models, masked-token for masked ones),
next to ln K, the cross-entropy of a uniform guess over the K codes, which a randomly initialised model gives.
Trained models score well below it (users of ImageNet AR generators at K = 16384, ln K = 9.70, report
about 6-7 nats).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from tqdm import tqdm

from robustok.errors import DataError
from robustok.tokens.kinds import check_fingerprint, token_kind
from robustok.tokens.store import MANIFEST, TokenDataset


def check_store(gen: Any, store: TokenDataset) -> None:
    """Refuse a store whose tokens the generator does not model: kind, grid, vocabulary, tokenizer (`DataError`)."""
    where = str(store.dir / MANIFEST)
    c = gen.config
    if store.kind != gen.token_kind:
        raise DataError(
            f"{where}: holds {token_kind(store.kind).description}, the generator models {gen.tokens.description}"
        )
    problems = []
    if list(store.grid) != list(c.grid):
        problems.append(f"grid {store.grid} vs the generator's {list(c.grid)}")
    if store.codebook_size != c.vocab_size:
        problems.append(f"codebook size {store.codebook_size} vs the generator's vocabulary {c.vocab_size}")
    if problems:
        raise DataError(f"{where}: tokens do not fit the generator ({'; '.join(problems)})")
    check_fingerprint(store.fingerprint, c.tokenizer_fingerprint, f"{where} (vs the generator's config.json)")


@torch.no_grad()
def store_cross_entropy(
    gen: Any,
    store: TokenDataset,
    num: Optional[int] = None,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """The generator's mean cross-entropy (nats per token) on the first `num` entries of `store` (all if None),
    with the perplexity and ln K. Unlabeled entries (-1), and every entry for an unconditional generator, are
    scored with the null class. Only generators of token ids have a cross-entropy: check `gen.token_kind` first."""
    check_store(gen, store)
    codes, labels = store.arrays()
    n = len(store) if num is None else min(num, len(store))
    num_classes = gen.config.num_classes
    labels = np.asarray(labels[:n]).astype(np.int64)
    if num_classes == 0:
        labels = np.full_like(labels, -1)
    elif n and int(labels.max()) >= num_classes:
        raise DataError(
            f"{store.dir / MANIFEST}: class ids up to {int(labels.max())}, the generator knows {num_classes} classes"
        )
    device = next(gen.parameters()).device
    total, count = 0.0, 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # random parts of the loss (masks) are the same each run
        for start in tqdm(range(0, n, batch_size), disable=not progress, desc="cross-entropy", unit="batch"):
            x = torch.from_numpy(np.asarray(codes[start : min(n, start + batch_size)]).astype(np.int64)).to(device)
            y = torch.from_numpy(labels[start : start + batch_size]).to(device)
            total += float(gen.token_cross_entropy(x, y)) * len(x)
            count += len(x)
    if count == 0:
        raise DataError(f"{store.dir}: no entries to score")
    ce, K = total / count, int(gen.config.vocab_size)
    return {
        "cross_entropy": ce,
        "perplexity": math.exp(ce),
        "ln_k": math.log(K),
        "vocab_size": K,
        "objective": gen.cross_entropy_kind,
        "entries": count,
        "tokens_per_entry": int(gen.seq_len),
        "seed": seed,
    }
