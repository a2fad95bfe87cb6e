"""Fréchet distance between Gaussians fitted to features: streaming statistics, stable trace, `.npz` files."""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustok.errors import DataError


class RunningStats:
    """Streaming mean and covariance of feature vectors in float64 (pairwise/Chan merge, no feature storage)."""

    def __init__(self, dim: int | None = None):
        self.n = 0
        self.dim = dim
        self.mean: np.ndarray | None = None
        self.scatter: np.ndarray | None = None  # sum of outer products of centred vectors

    def update(self, feats) -> "RunningStats":
        """Add a batch of features (N, D) (numpy or torch)."""
        x = np.asarray(feats.detach().cpu().numpy() if hasattr(feats, "detach") else feats, dtype=np.float64)
        if x.ndim != 2:
            raise DataError(f"features must be a 2-d array (N, D), got shape {x.shape}")
        if not np.isfinite(x).all():
            raise DataError(
                f"features contain NaN or inf ({int((~np.isfinite(x)).sum())} values): "
                "the images or the feature network produced non-finite values"
            )
        if len(x) == 0:
            return self
        mean = x.mean(0)
        centred = x - mean
        return self.merge_parts(len(x), mean, centred.T @ centred)

    def merge_parts(self, n: int, mean: np.ndarray, scatter: np.ndarray) -> "RunningStats":
        """Merge the statistics of another set: count, mean and centred scatter matrix."""
        if n == 0:
            return self
        if self.dim is not None and mean.shape[0] != self.dim:
            raise DataError(f"feature dimension {mean.shape[0]} does not match earlier features ({self.dim})")
        if self.n == 0:
            self.n, self.mean, self.scatter, self.dim = n, mean.copy(), scatter.copy(), mean.shape[0]
            return self
        own_mean, own_scatter = self.moments()
        total = self.n + n
        delta = mean - own_mean
        self.scatter = own_scatter + scatter + np.outer(delta, delta) * (self.n * n / total)
        self.mean = own_mean + delta * (n / total)
        self.n = total
        return self

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """The mean and the centred scatter matrix so far (an error before any feature was added)."""
        if self.mean is None or self.scatter is None:
            raise DataError("no features added yet: no mean or scatter matrix")
        return self.mean, self.scatter

    def merge(self, other: "RunningStats") -> "RunningStats":
        return self.merge_parts(other.n, *other.moments()) if other.n else self

    def finalize(self, what: str = "image set") -> "GaussianStats":
        """Mean and unbiased covariance (as `np.cov`); needs at least 2 vectors."""
        if self.n < 2:
            raise DataError(f"{what}: FID needs at least 2 images, got {self.n}")
        mean, scatter = self.moments()
        return GaussianStats(mean.copy(), scatter / (self.n - 1), self.n)


@dataclass
class GaussianStats:
    """`mu` (D,), `sigma` (D, D) and the number of vectors they came from (0 if unknown)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int = 0

    @classmethod
    def from_features(cls, feats, what: str = "image set") -> "GaussianStats":
        return RunningStats().update(feats).finalize(what)

    def save(self, path: str | Path) -> None:
        """Write an ADM-compatible `.npz` with keys `mu`, `sigma` (plus `num_images`)."""
        np.savez(path, mu=self.mu, sigma=self.sigma, num_images=np.int64(self.n))

    @classmethod
    def load(cls, path: str | Path) -> "GaussianStats":
        """Read `mu`/`sigma` from an `.npz` (ADM reference batches also hold `arr_0`; it is ignored)."""
        try:
            with np.load(path) as data:
                keys = set(data.files)
                if not {"mu", "sigma"} <= keys:
                    raise DataError(f"{path}: statistics file needs keys 'mu' and 'sigma', found {sorted(keys)}")
                mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
                n = int(data["num_images"]) if "num_images" in keys else 0
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise DataError(f"{path}: not a readable .npz file ({err})") from None
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise DataError(f"{path}: 'mu' must be (D,) and 'sigma' (D, D); got {mu.shape} and {sigma.shape}")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise DataError(f"{path}: 'mu' or 'sigma' contains NaN or inf")
        return cls(mu, sigma, n)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues clipped)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr(sqrtm(sigma1 @ sigma2)) for covariance matrices, computed stably in float64.

    sigma1 @ sigma2 is similar to the symmetric PSD matrix s1^{1/2} sigma2 s1^{1/2}, so the trace is the sum
    of the square roots of that matrix's (clipped) eigenvalues: no complex arithmetic, no `sqrtm` iterations.
    """
    s1 = _psd_sqrt(np.asarray(sigma1, dtype=np.float64))
    m = s1 @ np.asarray(sigma2, dtype=np.float64) @ s1
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr(sqrt(S_a S_b)), in float64."""
    if a.mu.shape != b.mu.shape:
        raise DataError(
            f"feature dimensions differ: {a.mu.shape[0]} vs {b.mu.shape[0]} "
            "(statistics from different feature networks?)"
        )
    diff = a.mu.astype(np.float64) - b.mu.astype(np.float64)
    value = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace_sqrt_product(a.sigma, b.sigma))
    return max(value, 0.0)
