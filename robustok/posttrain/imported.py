"""Pairs from your own generator: token ids / latents that a generator robustok cannot load made (another AR model,
a diffusion model), turned into a pairs folder (`robustok.tokens.pairs`) that `robustok post-train` trains on.

The user brings, as `.npy` files (no pickles):
- the generated tokens, one per pair: (N, h, w) or (N, h*w) integer ids in [0, K), or (N, C, h, w) float latents,
  each made from real image `index[i]` of the data set (teacher forcing, SDEdit, ...);
- `index`: (N,) integers, the position of each pair's real image in `--data` (as `build_dataset` orders it);
- held-out free samples (M, ...) of the same generator, for the gFID proxy;
- optionally the class ids of the pairs (default: the real images' labels) and of the held-out samples.

Everything is checked against the tokenizer (kind, grid, latent channels, id range, fingerprint) and the data set
(count, index range, labels) before anything is written; errors name the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from robustok.errors import DataError
from robustok.outputs import staged_output
from robustok.tokens.kinds import (
    check_fingerprint,
    id_dtype,
    kind_of_tokenizer,
    token_kind,
)
from robustok.tokens.pairs import load_array, write_pairs


def token_shape(tokenizer: Any) -> tuple[int, ...]:
    """The shape of one image's tokens, (h, w) ids or (C, h, w) latents: the tokenizer's output on a blank image."""
    c = tokenizer.config
    blank = torch.zeros(1, c.channels, c.image_size, c.image_size, device=next(tokenizer.parameters()).device)
    with torch.no_grad():
        return tuple(token_kind(kind_of_tokenizer(tokenizer)).encode(tokenizer, blank).shape[1:])


def check_tokens(arr: np.ndarray, path: str, kind: str, shape: tuple[int, ...], codebook_size: int) -> np.ndarray:
    """`arr` as stored in a pairs folder (ids: (n, h, w) in the id dtype; latents: (n, C, h, w) float16), or a
    `DataError` naming `path`: wrong shape, grid, channels, dtype, id range or non-finite values."""
    n = len(arr) if arr.ndim else 0
    out: np.ndarray
    if kind == "ids":
        want = f"(N, {shape[0]}, {shape[1]}) or (N, {shape[0] * shape[1]}) token ids"
        if arr.ndim == 2 and arr.shape[1] == shape[0] * shape[1]:
            arr = arr.reshape(n, *shape)
        if arr.ndim != 3 or arr.shape[1:] != shape:
            raise DataError(f"{path}: shape {arr.shape}, expected {want} (the tokenizer's {shape[0]}x{shape[1]} grid)")
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{path}: token ids must be integers, got dtype {arr.dtype}")
        if n and (int(arr.min()) < 0 or int(arr.max()) >= codebook_size):
            raise DataError(
                f"{path}: token ids span [{int(arr.min())}, {int(arr.max())}], outside [0, {codebook_size})"
                " (the tokenizer's codebook size)"
            )
        out = arr.astype(id_dtype(codebook_size))
    else:
        if arr.ndim != 4:
            raise DataError(f"{path}: shape {arr.shape}, expected (N, {', '.join(map(str, shape))}) latents")
        if arr.shape[1] != shape[0]:
            raise DataError(f"{path}: {arr.shape[1]} latent channels, the tokenizer has {shape[0]}")
        if arr.shape[2:] != shape[1:]:
            raise DataError(
                f"{path}: latent grid {arr.shape[2]}x{arr.shape[3]}, the tokenizer's is {shape[1]}x{shape[2]}"
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise DataError(f"{path}: latents must be floating point, got dtype {arr.dtype}")
        out = arr.astype(np.float16)
        if not np.isfinite(out).all():
            raise DataError(f"{path}: latents hold NaN/infinite values or values beyond float16's range")
    if n == 0:
        raise DataError(f"{path}: no entries")
    return out


def check_ints(arr: np.ndarray, path: str, n: int, lo: int, hi: int, what: str) -> np.ndarray:
    """A (n,) integer array with values in [lo, hi), or a `DataError` naming `path` and `what` the values are."""
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"{path}: shape {arr.shape}, expected ({n},): one {what} per entry")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{path}: {what} values must be integers, got dtype {arr.dtype}")
    if n and (int(arr.min()) < lo or int(arr.max()) >= hi):
        raise DataError(f"{path}: {what} values span [{int(arr.min())}, {int(arr.max())}], outside [{lo}, {hi})")
    return arr.astype(np.int64)


def import_pairs(
    tokenizer: Any,
    dataset: Any,
    data: str,
    tokens: str | Path,
    index: str | Path,
    heldout: str | Path,
    out: str | Path,
    sigma: float,
    labels: Optional[str | Path] = None,
    heldout_labels: Optional[str | Path] = None,
    fingerprint: str = "",
    generator: str = "",
    overwrite: bool = False,
) -> dict:
    """Validate the user's arrays against `tokenizer` and `dataset` (the data set `data` names, map-style) and
    write the pairs folder `out` (staged, renamed into place when complete). Returns its manifest."""
    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise DataError(
            f"--data {data}: pairs store the index of their real image, so they need an image folder "
            "(or fashion-mnist), not a wds: stream"
        )
    own = tokenizer.fingerprint()
    check_fingerprint(fingerprint, own, f"--fingerprint {fingerprint}", DataError)
    kind = kind_of_tokenizer(tokenizer)
    K = int(tokenizer.codebook_size) if kind == "ids" else 0
    shape = token_shape(tokenizer)
    generated = check_tokens(load_array(Path(tokens)), str(tokens), kind, shape, K)
    held_out = check_tokens(load_array(Path(heldout)), str(heldout), kind, shape, K)
    n, m = len(generated), len(held_out)
    if n > len(dataset):
        raise DataError(f"{tokens}: {n} pairs, more than the {len(dataset)} images of --data {data}")
    where = f"real-image index (into the {len(dataset)} images of --data {data})"
    idx = check_ints(load_array(Path(index)), str(index), n, 0, len(dataset), where)
    num_classes = int(dataset.num_classes)
    if labels is not None:
        y = check_ints(load_array(Path(labels)), str(labels), n, -1, max(num_classes, 0), "class id")
    else:
        y = np.asarray(dataset.labels, dtype=np.int64)[idx]
    y_held = (
        np.full(m, -1, np.int64)
        if heldout_labels is None
        else check_ints(load_array(Path(heldout_labels)), str(heldout_labels), m, -1, max(num_classes, 0), "class id")
    )
    c = tokenizer.config
    fields = {
        "sigma": float(sigma),
        "num_pairs": n,
        "num_eval": m,
        "data": data,
        "resolution": int(c.image_size),
        "channels": int(c.channels),
        "pair_input": "ids",
        "generator": generator or "imported",
        "imported_from": {
            "tokens": str(tokens),
            "index": str(index),
            "heldout": str(heldout),
            "labels": None if labels is None else str(labels),
        },
    }
    with staged_output(out, overwrite) as staged:
        manifest = write_pairs(staged.build, kind, generated, y, idx, held_out, y_held, own, K, num_classes, fields)
        staged.commit()
    return manifest
