"""pFID (RobusTok, arXiv 2509.12474 §3/§5.1): FID of reconstructions decoded from perturbed tokens vs the inputs.

Every image is perturbed (beta = 1). For each (alpha, delta) cell of the grid, each token is replaced with
probability alpha by a uniform draw among its delta nearest codes (itself included); pFID is the mean FID over
the cells. Defaults: alpha in {0.9, 0.8, 0.7, 0.6, 0.5} x three deltas scaled with the codebook size K.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The paper's delta triplets (Fig. 14 captions).
DELTA_ANCHORS: dict[int, tuple[int, int, int]] = {
    1024: (10, 15, 20),
    4096: (50, 70, 90),
    8192: (100, 140, 180),
    16384: (200, 280, 360),
}
DEFAULT_ALPHAS = (0.9, 0.8, 0.7, 0.6, 0.5)
MIN_DELTA = 2  # delta = 1 would leave every token unchanged


def _round(x: float) -> int:
    return int(x + 0.5)


def delta_triplet(codebook_size: int) -> tuple[int, ...]:
    """The three deltas for a codebook of size K.

    K equal to an anchor (1024, 4096, 8192, 16384): the paper's values. Between two anchors: linear interpolation
    in K between them. Below 1024: the 1024 triplet scaled by K/1024; above 16384: the 16384 triplet scaled by
    K/16384. Rounded half up, at least MIN_DELTA (2) and at most K.
    """
    k = int(codebook_size)
    if k < 2:
        raise ValueError(f"codebook size must be >= 2, got {k}")
    keys = sorted(DELTA_ANCHORS)
    vals: tuple[float, ...]
    if k in DELTA_ANCHORS:
        vals = DELTA_ANCHORS[k]
    elif k < keys[0]:
        vals = tuple(d * k / keys[0] for d in DELTA_ANCHORS[keys[0]])
    elif k > keys[-1]:
        vals = tuple(d * k / keys[-1] for d in DELTA_ANCHORS[keys[-1]])
    else:
        lo = max(a for a in keys if a < k)
        hi = min(a for a in keys if a > k)
        t = (k - lo) / (hi - lo)
        vals = tuple(a + t * (b - a) for a, b in zip(DELTA_ANCHORS[lo], DELTA_ANCHORS[hi]))
    return tuple(min(k, max(MIN_DELTA, _round(v))) for v in vals)


@dataclass
class PFIDConfig:
    """The pFID grid: `alphas` x `deltas` (None: `delta_triplet(K)`), perturbation neighbourhood and seed."""

    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    deltas: tuple[int, ...] | None = None
    neighbours: str = "code"  # "code": nearest codes to e_k (paper); "latent": nearest to z (authors' training code)
    seed: int = 0
    extra_cells: list[tuple[float, int]] = field(default_factory=list)

    def cells(self, codebook_size: int) -> list[tuple[float, int]]:
        deltas = tuple(self.deltas) if self.deltas else delta_triplet(codebook_size)
        for d in deltas:
            if int(d) < 1:
                raise ValueError(f"pfid deltas must be >= 1, got {d}")
        for a in self.alphas:
            if not 0.0 <= float(a) <= 1.0:
                raise ValueError(f"pfid alphas must lie in [0, 1], got {a}")
        if self.neighbours not in ("code", "latent"):
            raise ValueError(f"pfid neighbours must be 'code' or 'latent', got {self.neighbours!r}")
        return [(float(a), int(d)) for a in self.alphas for d in deltas] + list(self.extra_cells)
