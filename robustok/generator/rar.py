"""RAR (bytedance/1d-tokenizer, Apache-2.0; weights for research use) and the RobusTok release's RAR-B/L as a
robustok generator.

Architecture facts (1d-tokenizer @ 942a96f `modeling/rar.py`, identical in qiuk2/RobusTok `RAR/rar.py`), for
raster-order inference: inputs `[cls_token, class, x_0 .. x_{L-2}]` at positions i = 0 .. L. Input i gets the
learned position embedding `pos_embed[i]` and, for i >= 1, the "target-aware" embedding of the position it
predicts, `target_aware_pos_embed[i + 1]`. One `embeddings` table holds the K token rows, a mask row (unused at
inference), the C class rows and the null class (C + K + 1). Every block is adaLN-modulated by a condition that
changes per position: the class embedding plus `timesteps_embeddings[i]`; (shift, scale, gate) x 2 =
Linear(SiLU(cond)); `x += gate1 * attn(LN1(x) * (1 + scale1) + shift1)`, likewise the MLP, with affine LayerNorms
(eps 1e-6), qkv/proj biases, an affine LayerNorm q/k-norm per head, exact GELU. The final LayerNorm has no affine
and is modulated by (scale, shift) (in that order); `lm_head` has a bias. Output i predicts x_{i-1}.

This module keeps only the rows it uses: `embeddings` is sliced into `tok_emb` (K) and `cls_emb` (C classes + null),
`pos_embed` to positions 0..L, `target_aware_pos_embed` to rows 2..L+1, `timesteps_embeddings` to 0..L
(`robustok.adapters.generators` does the mapping). Converted with `robustok convert rar|robustok-rar FILE
--tokenizer DIR --out DIR`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, cast

import torch
from torch import nn

from robustok.errors import ConfigError
from robustok.generator.base import IdGeneratorConfig, register_generator
from robustok.generator.layers import Block, KVCache
from robustok.generator.released import ReleasedAR


@dataclass
class RARConfig(IdGeneratorConfig):
    mlp_dim: int = 0  # MLP hidden width (`intermediate_size`: B 3072, L 4096, XL 5120, XXL 6144)


@register_generator("rar")
class RARGenerator(ReleasedAR):
    """RAR in raster order, with the per-position adaLN condition (class embedding + step embedding)."""

    config_class = RARConfig
    family: ClassVar[str] = "RAR"

    def __init__(self, config: RARConfig):
        super().__init__(config)
        c = config
        if len(c.grid) != 2 or min(c.grid) < 1:
            raise ConfigError(f"rar: grid must be [h, w], got {c.grid}")
        if c.mlp_dim < 1 or c.dim % c.heads:
            raise ConfigError(f"rar: need mlp_dim >= 1 and dim divisible by heads (dim {c.dim}, {c.heads} heads)")
        L = self.seq_len = c.grid[0] * c.grid[1]
        self.cache_len = L + 1  # cls_token, class, L - 1 tokens
        self.null_class = c.num_classes
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.tok_emb = nn.Embedding(c.vocab_size, c.dim)
        self.cls_emb = nn.Embedding(c.num_classes + 1, c.dim)
        self.pos_emb = nn.Parameter(torch.zeros(L + 1, c.dim))  # positions 0..L
        self.target_emb = nn.Parameter(torch.zeros(L, c.dim))  # for inputs 1..L
        self.step_emb = nn.Parameter(torch.zeros(L + 1, c.dim))  # adaLN: + class embedding, per input
        self.blocks = nn.ModuleList(
            Block(
                c.dim,
                c.heads,
                qk_norm=True,
                adaln=True,
                affine=True,
                mlp_hidden=c.mlp_dim,
                qk_norm_kind="layer",
                gelu="none",
            )
            for _ in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(c.dim, 2 * c.dim))
        self.head = nn.Linear(c.dim, c.vocab_size)

    def modulations(self, rows: torch.Tensor) -> Optional[list]:
        """The class embeddings of `rows` (the per-step adaLN condition adds the step embedding to them)."""
        return [self.cls_emb(rows)]

    def _run(
        self,
        seq: torch.Tensor,
        labels: torch.Tensor,
        start: int,
        end: int,
        cache: Optional[KVCache],
        cond: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Logits of input positions [start, end) (0: cls_token, 1: the class, j >= 2: token seq[:, j-2])."""
        R = labels.shape[0]
        cond = self.cls_emb(labels) if cond is None else cond
        parts = []
        if start == 0:
            parts.append(self.cls_token.expand(R, -1, -1))
        if start <= 1 < end:
            parts.append(cond[:, None])
        lo = max(start, 2)
        if end > lo:
            parts.append(self.tok_emb(seq[:, lo - 2 : end - 2]))
        h = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
        target = self.target_emb[max(start, 1) - 1 : end - 1]
        if start == 0:
            target = torch.cat([torch.zeros_like(target[:1]), target])
        h = h + self.pos_emb[start:end] + target
        c = cond[:, None] + self.step_emb[start:end]  # (R, T, D): changes per position
        for i, blk in enumerate(cast(list[Block], self.blocks)):
            h = blk(h, None, True, cache, i, mod=blk.modulation(c))
        if cache is not None:
            cache.length += h.shape[1]
        scale, shift = self.final_ada(c).chunk(2, dim=-1)
        return self.head(self.norm(h) * (1 + scale) + shift)

    def step_logits(
        self, seq: torch.Tensor, rows: torch.Tensor, s: int, cache: Optional[KVCache], mods: Optional[list]
    ) -> torch.Tensor:
        start = (0 if s == 0 else s + 1) if cache is not None else 0
        return self._run(seq, rows, start, s + 2, cache, None if mods is None else mods[0])[:, -1]

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, L, K) in raster order for token grids (B, h, w) and class ids (B,)."""
        return self._run(tokens.flatten(1), labels, 0, self.seq_len + 1, None)[:, 1:]
