"""Post-training pairs on disk: generated tokens, each with the index of its real image, and held-out samples.

A pairs folder is a token store (`robustok.tokens.store`, one shard) with two additions:
```
manifest.json                 a token store manifest + the pairs' fields (sigma, data, resolution, channels, ...)
ids-00000.npy | latents-...   generated tokens (n, h, w) ids | (n, C, h, w) latents, one per pair
labels-00000.npy              (n,) class ids (-1: unconditional)
index.npy                     (n,) int64: the index of each pair's real image in the `data` set
eval/                         a token store of free samples (sigma = 0) of the same generator (the gFID proxy)
```
Folders written before `robustok.tokens` (kind "ar" / "diffusion", `generated.npy` flat (N, h*w) ids) are still
read: their kind is mapped to "ids" / "latents" and the ids reshaped to the grid of their manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from robustok.errors import CheckpointError, ConfigError, DataError
from robustok.tokens.kinds import LEGACY_KINDS, check_fingerprint, token_kind
from robustok.tokens.store import FORMAT, MANIFEST, TokenDataset, write_array_store

INDEX, HELD_OUT = "index.npy", "eval"
MANIFEST_KEYS = ("kind", "sigma", "data", "resolution", "channels", "tokenizer_fingerprint")
RERUN = "rerun `robustok post-train-data`"

PAIR_INPUTS = {  # pair_input name -> (tokenizer, generated batch, token kind) -> what the decoder is trained on
    "ids": lambda tok, generated, kind: generated,  # the generated tokens (ours)
    "roundtrip": lambda tok, generated, kind: token_kind(kind).round_trip(tok, generated),  # the authors'
}


def check_pair_input(name: str, where: str = "--pair-input") -> None:
    if name not in PAIR_INPUTS:
        raise ConfigError(f"{where}: unknown pair input {name!r}; choose from {sorted(PAIR_INPUTS)}")


def write_pairs(
    out: str | Path,
    kind: str,
    generated: np.ndarray,
    labels: np.ndarray,
    index: np.ndarray,
    held_out: Optional[np.ndarray],
    held_out_labels: Optional[np.ndarray],
    fingerprint: str,
    codebook_size: int,
    num_classes: int,
    fields: dict,
) -> dict:
    """Write a pairs folder into `out` (staged by the caller): the generated tokens, their real images' `index`,
    the held-out samples (if any) in `out/eval`, and `fields` (sigma, data, ...) in the manifest."""
    out = Path(out)

    def labels_or_none(y: np.ndarray) -> np.ndarray:
        return np.where(y < num_classes, y, -1)  # the null class of an unconditional generator -> -1

    if held_out is not None:
        if held_out_labels is None:
            raise ValueError("write_pairs: held_out needs held_out_labels")
        write_array_store(
            out / HELD_OUT,
            kind,
            held_out,
            labels_or_none(held_out_labels),
            fingerprint,
            codebook_size,
            num_classes,
            "held-out generator samples (sigma = 0)",
        )
    np.save(out / INDEX, index.astype(np.int64))
    return write_array_store(
        out,
        kind,
        generated,
        labels_or_none(labels),
        fingerprint,
        codebook_size,
        num_classes,
        f"generated pairs (sigma = {fields.get('sigma')})",
        fields,
    )


def _read_json(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: invalid JSON ({err}); {RERUN}") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path}: not a pairs manifest (a JSON object)")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise DataError(f"{path}: missing field(s) {missing}; {RERUN}")
    return manifest


def load_array(path: Path, mmap: bool = False) -> np.ndarray:
    """`np.load` of one pairs array (no pickles), naming the file if it is missing, truncated or corrupt."""
    if not path.is_file():
        raise DataError(f"{path}: not found")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: unreadable array ({err})") from None


def _legacy_arrays(directory: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(generated, labels, held-out) of a folder in the layout before `robustok.tokens`, ids reshaped to the grid."""
    path = directory / MANIFEST
    if manifest["kind"] not in LEGACY_KINDS:
        raise DataError(
            f"{path}: kind must be one of {sorted(LEGACY_KINDS)} (or a {FORMAT} store), "
            f"got {manifest['kind']!r}; {RERUN}"
        )
    manifest["kind"] = LEGACY_KINDS[manifest["kind"]]
    generated = load_array(directory / "generated.npy", mmap=True)
    labels = load_array(directory / "labels.npy")
    eval_path = directory / "eval_generated.npy"
    held_out = load_array(eval_path) if eval_path.is_file() else None
    if manifest["kind"] == "ids":
        grid = manifest.get("grid")
        if not grid or len(grid) != 2:
            raise DataError(f"{path}: an old pairs folder without its token grid; {RERUN}")
        generated = generated.reshape(len(generated), *grid)
        held_out = None if held_out is None else held_out.reshape(len(held_out), *grid)
    return generated, labels, held_out


class PairStore:
    """A folder written by `robustok post-train-data`; checks that it belongs to the given tokenizer."""

    def __init__(self, directory: str | Path, tokenizer: Any = None):
        self.dir = Path(directory)
        path = self.dir / MANIFEST
        if not path.is_file():
            raise DataError(
                f"{path}: not found; is {directory} a pairs folder from `robustok post-train-data` "
                "or `robustok import-pairs`?"
            )
        self.manifest = _read_json(path)
        self.pair_input = self.manifest.get("pair_input", "ids")  # stores written before the option: ids
        try:
            check_pair_input(self.pair_input, f"{path}: pair_input")
        except ConfigError as err:
            raise DataError(str(err)) from None
        if tokenizer is not None:
            check_fingerprint(
                self.manifest["tokenizer_fingerprint"], tokenizer.fingerprint(), f"{path}: the pairs", CheckpointError
            )
        if self.manifest.get("format") == FORMAT:
            self.generated, self.labels = TokenDataset(self.dir).arrays()
            held = self.dir / HELD_OUT
            self.eval_generated = TokenDataset(held).arrays()[0] if held.is_dir() else None
        else:
            self.generated, self.labels, self.eval_generated = _legacy_arrays(self.dir, self.manifest)
        self.token_kind = token_kind(self.kind, str(path))
        self.index = load_array(self.dir / INDEX)
        if not len(self.generated) == len(self.index) == len(self.labels):
            raise DataError(f"{self.dir}: generated/index/labels lengths differ")
        if not np.issubdtype(self.index.dtype, np.integer) or (len(self.index) and int(self.index.min()) < 0):
            raise DataError(f"{self.dir / INDEX}: real-image indices must be non-negative integers")
        for name, arr in (("generated", self.generated), ("held-out", self.eval_generated)):
            if arr is not None and self.kind == "ids" and not np.issubdtype(arr.dtype, np.integer):
                raise DataError(f"{self.dir}: {name} token ids must be integers, got dtype {arr.dtype}")

    @property
    def kind(self) -> str:
        """ "ids" | "latents" (see `robustok.tokens.kinds`)."""
        return self.manifest["kind"]

    @property
    def sigma(self) -> float:
        return float(self.manifest["sigma"])

    @property
    def num_eval(self) -> int:
        """How many held-out generated samples the pairs carry (0: none)."""
        return 0 if self.eval_generated is None else len(self.eval_generated)

    def __len__(self) -> int:
        return len(self.index)

    def tensor(self, arr: np.ndarray) -> torch.Tensor:
        return self.token_kind.to_tensor(arr)


class PairDataset(torch.utils.data.Dataset):
    """(generated tokens/latents, real image, label) items; accepts the loop's `(index, seed)` keys."""

    def __init__(self, store: PairStore, images: Any):
        self.store, self.images = store, images
        top = int(store.index.max()) if len(store) else -1
        if top >= len(images):
            raise DataError(
                f"{store.dir}: pairs refer to real image {top}, but {store.manifest['data']} has only "
                f"{len(images)} images"
            )

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, item):
        i = int(item[0] if isinstance(item, tuple) else item)
        x, _ = self.images[int(self.store.index[i])]
        return self.store.tensor(self.store.generated[i]), x, int(self.store.labels[i])
