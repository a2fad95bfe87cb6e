"""The embedded default data set: Fashion-MNIST (Zalando, MIT licence), read from its standard IDX `.gz` files.

Where the files are: an explicit `root` (only there), else `$ROBUSTOK_DATA` if set (only the folder itself or its
`fashion-mnist/`), else the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`) or
`~/.cache/robustok/fashion-mnist`. A `root` or `$ROBUSTOK_DATA` without the files is an error, never a silent
fallback to another copy.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from robustok.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
HOW_TO_GET = (
    "Install the Debian package (`apt-get install -y dataset-fashion-mnist`), or download the four IDX .gz files "
    "of Fashion-MNIST (github.com/zalandoresearch/fashion-mnist, data/fashion/) into a folder and set "
    "ROBUSTOK_DATA=<that folder> or `data.root`."
)


def candidate_dirs(root: str | None = None) -> list[Path]:
    if root:
        return [Path(root)]
    if os.environ.get("ROBUSTOK_DATA"):
        env = Path(os.environ["ROBUSTOK_DATA"])
        return [env, env / "fashion-mnist"]
    return [Path("/usr/share/datasets/fashion-mnist"), Path.home() / ".cache" / "robustok" / "fashion-mnist"]


def find_dir(split: str, root: str | None = None) -> Path:
    for d in candidate_dirs(root):
        if all((d / f).is_file() for f in FILES[split]):
            return d
    looked = ", ".join(str(d) for d in candidate_dirs(root))
    given = "data.root/--data-root" if root else "ROBUSTOK_DATA" if os.environ.get("ROBUSTOK_DATA") else None
    if given:
        raise DataError(
            f"Fashion-MNIST {split} files {FILES[split]} not found in {looked} (set by {given}; "
            "other copies are not searched). Point it at the folder with the IDX .gz files."
        )
    raise DataError(f"Fashion-MNIST {split} files {FILES[split]} not found (looked in: {looked}). {HOW_TO_GET}")


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read gzip IDX file ({err})") from None
    if len(data) < 4 + 4 * ndim or int.from_bytes(data[:4], "big") != magic:
        raise DataError(f"{path}: not an IDX file with magic {magic:#x}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: truncated IDX file (expected {int(np.prod(shape))} bytes, got {body.size})")
    return body.reshape(shape)


def load_fashion_mnist(split: str, root: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return `(images uint8 (N, 28, 28), labels int64 (N,))` of split 'train' (60k) or 'test' (10k)."""
    if split not in FILES:
        raise DataError(f"unknown Fashion-MNIST split {split!r}; use 'fashion-mnist:train' or 'fashion-mnist:test'")
    d = find_dir(split, root)
    images = _read_idx(d / FILES[split][0], 0x803, 3)
    labels = _read_idx(d / FILES[split][1], 0x801, 1).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{d}: {len(images)} images but {len(labels)} labels")
    return images, labels
