"""LlamaGen's class-conditional GPT (c2i B, L, XL, XXL, 3B; FoundationVision/LlamaGen, MIT) as a robustok generator.

Architecture facts (LlamaGen @ ce98ec4, `autoregressive/models/gpt.py`): sequence `[class, x_0 .. x_{L-2}]`, one
class token (`cls_embedding.embedding_table`, num_classes + 1 rows, the last = the null class of CFG), token
embedding, pre-norm blocks `h = x + wo(attn(RMSNorm(x)))`, `out = h + w2(silu(w1 RMSNorm(h)) * w3 RMSNorm(h))`,
no biases anywhere, RMSNorm eps 1e-5 computed in float32, final RMSNorm and `output` projection. Queries and keys
get a 2-D rotary embedding on interleaved channel pairs: of the head_dim/2 pairs the first half rotate by the
token's row, the second half by its column (frequencies base^(-i / (head_dim/4))); the class input's table row is
all zeros (cos = sin = 0), so its rotated query and key are zero. Attention is causal, scaled by head_dim^-1/2.

Converted with `robustok convert llamagen-gpt c2i_L_256.pt --tokenizer VQDIR --out DIR`
(`robustok.adapters.generators`); sizes are read off the tensor shapes, the grid off the tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, cast

import torch
import torch.nn.functional as F
from torch import nn

from robustok.errors import ConfigError
from robustok.generator.ar import ARSampling
from robustok.generator.base import IdGeneratorConfig, register_generator
from robustok.generator.layers import Attention, KVCache, RMSNorm, interleave_rope, rope_2d
from robustok.generator.released import ReleasedAR


@dataclass
class LlamaGenGPTConfig(IdGeneratorConfig):
    ffn_dim: int = 0  # SwiGLU hidden width (GPT-B 2048, L 2816, XL 3584, XXL 4096, 3B 8704)
    norm_eps: float = 1e-5
    rope_base: float = 10000.0


@dataclass
class LlamaGenSampling(ARSampling):
    """Sampling options of `llamagen-gpt`: the AR kind's, and LlamaGen's `cfg_interval`."""

    cfg_interval: int = field(
        default=-1,
        metadata={
            "help": "llamagen-gpt: guide only the first cfg_interval + 2 tokens (LlamaGen's cfg_interval; -1: all)"
        },
    )

    BOUNDS: ClassVar[dict] = {**ARSampling.BOUNDS, "cfg_interval": ">=-1"}


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x), no biases."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class LlamaBlock(nn.Module):
    """Pre-RMSNorm block: x + attn(norm1(x)), then + SwiGLU(norm2(.))."""

    def __init__(self, c: LlamaGenGPTConfig):
        super().__init__()
        self.norm1 = RMSNorm(c.dim, c.norm_eps)
        self.attn = Attention(c.dim, c.heads, qk_norm=False, bias=False)
        self.norm2 = RMSNorm(c.dim, c.norm_eps)
        self.mlp = SwiGLU(c.dim, c.ffn_dim)

    def forward(self, x: torch.Tensor, rope, cache: Optional[KVCache], layer: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope, True, cache, layer)
        return x + self.mlp(self.norm2(x))


@register_generator("llamagen-gpt")
class LlamaGenGPT(ReleasedAR):
    """LlamaGen GPT c2i: input 0 is the class, input j > 0 the token x_{j-1}; logits j predict x_j."""

    config_class = LlamaGenGPTConfig
    sampling_class = LlamaGenSampling
    family: ClassVar[str] = "LlamaGen GPT"
    rope_cos: torch.Tensor
    rope_sin: torch.Tensor

    def __init__(self, config: LlamaGenGPTConfig):
        super().__init__(config)
        c = config
        if len(c.grid) != 2 or min(c.grid) < 1:
            raise ConfigError(f"llamagen-gpt: grid must be [h, w], got {c.grid}")
        if c.ffn_dim < 1 or c.dim % c.heads or (c.dim // c.heads) % 4:
            raise ConfigError(
                f"llamagen-gpt: need ffn_dim >= 1 and a head dim divisible by 4 (dim {c.dim}, "
                f"{c.heads} heads, ffn_dim {c.ffn_dim})"
            )
        self.seq_len = self.cache_len = c.grid[0] * c.grid[1]
        self.null_class = c.num_classes
        self.tok_emb = nn.Embedding(c.vocab_size, c.dim)
        self.cls_emb = nn.Embedding(c.num_classes + 1, c.dim)
        self.blocks = nn.ModuleList(LlamaBlock(c) for _ in range(c.depth))
        self.norm = RMSNorm(c.dim, c.norm_eps)
        self.head = nn.Linear(c.dim, c.vocab_size, bias=False)
        rows, cols = torch.meshgrid(torch.arange(c.grid[0]), torch.arange(c.grid[1]), indexing="ij")
        cos, sin = rope_2d(torch.stack([rows.flatten(), cols.flatten()], 1), c.dim // c.heads, c.rope_base)
        cos, sin = interleave_rope(cos, sin)
        zero = torch.zeros(1, cos.shape[1], dtype=cos.dtype)  # the class input: rotated to 0
        self.register_buffer("rope_cos", torch.cat([zero, cos])[: self.seq_len].float(), persistent=False)
        self.register_buffer("rope_sin", torch.cat([zero, sin])[: self.seq_len].float(), persistent=False)

    def guidance_interval(self, opts: Any) -> int:
        return cast(LlamaGenSampling, self.sampling(opts)).cfg_interval

    def _run(
        self, seq: torch.Tensor, labels: torch.Tensor, start: int, end: int, cache: Optional[KVCache]
    ) -> torch.Tensor:
        """Logits of inputs [start, end) (0: the class, j: token seq[:, j-1])."""
        parts = [self.cls_emb(labels)[:, None]] if start == 0 else []
        lo = max(start, 1)
        if end > lo:
            parts.append(self.tok_emb(seq[:, lo - 1 : end - 1]))
        h = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
        rope = (self.rope_cos[start:end], self.rope_sin[start:end])
        for i, blk in enumerate(self.blocks):
            h = blk(h, rope, cache, i)
        if cache is not None:
            cache.length += h.shape[1]
        return self.head(self.norm(h))

    def step_logits(
        self, seq: torch.Tensor, rows: torch.Tensor, s: int, cache: Optional[KVCache], mods: Optional[list]
    ) -> torch.Tensor:
        return self._run(seq, rows, s if cache is not None else 0, s + 1, cache)[:, -1]

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, L, K) for token grids (B, h, w) and class ids (B,)."""
        return self._run(tokens.flatten(1), labels, 0, self.seq_len, None)
