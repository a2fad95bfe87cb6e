"""Transformer pieces shared by the generators: norms, 2-D RoPE, SDPA attention with an optional KV cache."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain (used for qk-norm)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return x.to(dtype) * self.weight.to(dtype)


def rope_2d(pos: torch.Tensor, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cos/sin tables (L, head_dim/2) for 2-D rotary embeddings of integer positions `pos` (L, 2) = (row, col).

    The first half of the rotated pairs encodes the row, the second half the column.
    """
    if head_dim % 4:
        raise ValueError(f"RoPE-2D needs a head dim divisible by 4, got {head_dim}")
    quarter = head_dim // 4
    inv = 1.0 / base ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ang = torch.cat([pos[:, :1].double() * inv, pos[:, 1:2].double() * inv], dim=1)  # (L, head_dim/2)
    return ang.cos(), ang.sin()


def interleave_rope(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tables `apply_rope` takes, (L, head_dim), from `rope_2d`'s (L, head_dim/2): cos repeated for both
    channels of a pair, sin negated for the first one."""
    return cos.repeat_interleave(2, dim=-1), torch.stack([-sin, sin], dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs (a, b) of x (B, H, L, D) to (a cos - b sin, b cos + a sin), with the
    `interleave_rope` tables (L, D): x * cos + swap(x) * sin, four kernels (the same numbers as the textbook
    form, whose sums differ only by exact sign flips and order of two terms)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2) * sin


def zero_init(layer: nn.Module) -> None:
    """Zero every parameter of `layer` (a linear layer's weight and bias: adaLN-Zero's starting point)."""
    for p in layer.parameters():
        nn.init.zeros_(p)


class KVCache:
    """Pre-allocated keys/values for every layer: `k[layer]` (B, H, max_len, Dh); `length` tokens are filled."""

    def __init__(
        self, layers: int, batch: int, heads: int, max_len: int, head_dim: int, device: torch.device, dtype: torch.dtype
    ):
        shape = (batch, heads, max_len, head_dim)
        # only the filled part [:length] is ever read, so the memory need not be cleared
        self.k = [torch.empty(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.v = [torch.empty(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.length = 0
        self.max_len = max_len


class Attention(nn.Module):
    """Multi-head self-attention (SDPA), optional qk-norm and RoPE; causal or bidirectional.

    `bias`: biases of the qkv and output projections; `qk_norm_kind`: "rms" (RMSNorm) or "layer" (affine
    LayerNorm, eps 1e-6, as RAR) per head."""

    def __init__(
        self,
        dim: int,
        heads: int,
        qk_norm: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        qk_norm_kind: str = "rms",
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        if qk_norm_kind not in ("rms", "layer"):
            raise ValueError(f"qk_norm_kind must be 'rms' or 'layer', got {qk_norm_kind!r}")
        self.q_norm = self._qk_norm(qk_norm_kind) if qk_norm else nn.Identity()
        self.k_norm = self._qk_norm(qk_norm_kind) if qk_norm else nn.Identity()

    def _qk_norm(self, kind: str) -> nn.Module:
        return RMSNorm(self.head_dim) if kind == "rms" else nn.LayerNorm(self.head_dim, eps=1e-6)

    def forward(
        self,
        x: torch.Tensor,
        rope: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
        causal: bool = True,
        cache: Optional[KVCache] = None,
        layer: int = 0,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        drop = self.dropout if self.training else 0.0
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal and T > 1, dropout_p=drop)
        else:
            start = cache.length
            cache.k[layer][:, :, start : start + T] = k
            cache.v[layer][:, :, start : start + T] = v
            k, v = cache.k[layer][:, :, : start + T], cache.v[layer][:, :, : start + T]
            mask = None
            if T > 1:  # new queries see the whole cache plus the causal part of themselves
                mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.proj(out.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    """Two-layer GELU feed-forward (`gelu`: "tanh" approximation, or "none": exact, as RAR)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, gelu: str = "tanh"):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)
        self.gelu = gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x), approximate=self.gelu)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)); x + mlp(norm(x)).

    With `adaln`, a condition vector c (B, dim) sets shift/scale/gate of both sub-layers (adaLN-Zero: the
    modulation starts at zero, so every block starts as the identity), as RAR and DiT do. `affine` (default: not
    `adaln`): learned gains/biases of the two LayerNorms (RAR's released models have both). `mlp_hidden`
    (default dim * mlp_ratio), `qk_norm_kind` and `gelu` as in `Attention` and `MLP`.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        dropout: float = 0.0,
        adaln: bool = False,
        affine: Optional[bool] = None,
        mlp_hidden: int = 0,
        qk_norm_kind: str = "rms",
        gelu: str = "tanh",
    ):
        super().__init__()
        affine = not adaln if affine is None else affine
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=affine, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=affine, eps=1e-6)
        self.attn = Attention(dim, heads, qk_norm, dropout=dropout, qk_norm_kind=qk_norm_kind)
        self.mlp = MLP(dim, mlp_hidden or int(dim * mlp_ratio), dropout, gelu)
        self.drop = nn.Dropout(dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim)) if adaln else None

    def modulation(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """adaLN vectors (B, 1, dim) for condition vectors `cond` (B, dim), or (B, T, dim) for a condition per
        position (B, T, dim): shift, 1 + scale and gate of the attention, then of the MLP (the 1 + is added here,
        so sampling pays for it once per call)."""
        if self.ada is None:
            raise ValueError("Block.modulation needs a block built with adaln=True")
        m = self.ada(cond)
        s1, a1, g1, s2, a2, g2 = (m[:, None] if cond.dim() == 2 else m).chunk(6, dim=-1)
        return s1, 1 + a1, g1, s2, 1 + a2, g2

    def forward(
        self,
        x: torch.Tensor,
        rope=None,
        causal: bool = True,
        cache: Optional[KVCache] = None,
        layer: int = 0,
        cond: Optional[torch.Tensor] = None,
        mod: Optional[tuple] = None,
    ) -> torch.Tensor:
        """`mod`: a precomputed `modulation(cond)` (then `cond` is not needed)."""
        if self.ada is None:
            x = x + self.drop(self.attn(self.norm1(x), rope, causal, cache, layer))
            return x + self.mlp(self.norm2(x))
        if mod is None:
            if cond is None:
                raise ValueError("an adaLN block needs `cond` or a precomputed `mod`")
            mod = self.modulation(cond)
        s1, a1, g1, s2, a2, g2 = mod
        x = x + g1 * self.drop(self.attn(self.norm1(x) * a1 + s1, rope, causal, cache, layer))
        return x + g2 * self.mlp(self.norm2(x) * a2 + s2)


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position table (h*w, dim), rows then columns (dim divisible by 4)."""
    if dim % 4:
        raise ValueError(f"sin-cos 2-D positions need dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    parts = []
    for grid in (rows.flatten(), cols.flatten()):
        ang = grid[:, None] * omega[None]
        parts += [ang.sin(), ang.cos()]
    return torch.cat(parts, dim=1).float()


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of continuous times t (B,) (scaled by 1000 as in diffusion practice)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    ang = (t.float() * 1000.0)[:, None] * freqs[None]
    emb = torch.cat([ang.cos(), ang.sin()], dim=-1)
    return F.pad(emb, (0, dim % 2))
