"""Metrics for generated sets: Inception Score (10 splits) and improved precision/recall (k=3)."""

from __future__ import annotations

import numpy as np
import torch

from robustok.errors import DataError


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """(mean, std) over `splits` equal consecutive chunks of exp(E_x KL(p(y|x) || p(y))), as in ADM/TTUR."""
    if len(logits) < splits:
        raise DataError(f"Inception Score with {splits} splits needs at least {splits} images, got {len(logits)}")
    p = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1)
    scores = []
    for chunk in torch.tensor_split(p, splits):
        marginal = chunk.mean(0, keepdim=True)
        kl = (chunk * (torch.log(chunk.clamp_min(1e-30)) - torch.log(marginal.clamp_min(1e-30)))).sum(1)
        scores.append(float(torch.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def _knn_radii(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row."""
    radii = []
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i : i + chunk], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself at distance 0
    return torch.cat(radii)


def _coverage(query: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int) -> float:
    """Fraction of `query` rows inside at least one ball (support_j, radii_j)."""
    inside = 0
    for i in range(0, len(query), chunk):
        d = torch.cdist(query[i : i + chunk], support)
        inside += int((d <= radii[None, :]).any(1).sum())
    return inside / len(query)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, chunk: int = 1000) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls in feature space."""
    if len(real) <= k or len(fake) <= k:
        raise DataError(
            f"precision/recall with k={k} needs more than {k} images per set, got {len(real)} and {len(fake)}"
        )
    r = torch.as_tensor(real, dtype=torch.float64)
    f = torch.as_tensor(fake, dtype=torch.float64)
    precision = _coverage(f, r, _knn_radii(r, k, chunk), chunk)
    recall = _coverage(r, f, _knn_radii(f, k, chunk), chunk)
    return precision, recall


def class_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples whose classifier argmax equals the class they were generated for."""
    labels = np.asarray(labels).reshape(-1)
    if len(logits) != len(labels):
        raise DataError(f"class accuracy: {len(logits)} classified images but {len(labels)} labels")
    if len(labels) == 0:
        raise DataError("class accuracy needs at least one labelled image")
    n_cls = np.asarray(logits).shape[1]
    if labels.min() < 0 or labels.max() >= n_cls:
        raise DataError(
            f"class accuracy: labels must lie in [0, {n_cls}) for this classifier, got [{labels.min()}, {labels.max()}]"
        )
    return float((np.asarray(logits).argmax(1) == labels).mean())
