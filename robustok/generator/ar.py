"""Class-conditional autoregressive transformer over a token grid (GPT / RAR style).

Sequence: `[class, x_0, ..., x_{L-2}]` -> logits for `x_0 .. x_{L-1}`; in raster order by default. With
`random_order` the model also learns RAR's permuted orders: every input carries a "target-aware" embedding of
the grid position it must predict next, and training draws a random permutation for a fraction of the batch
(annealed by the training task). Sampling always runs in raster order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustok.errors import ConfigError
from robustok.generator.base import IdGenerator, IdGeneratorConfig, register_generator
from robustok.generator.guidance import DrawRule, check_guidance, draw
from robustok.generator.layers import Block, KVCache, interleave_rope, rope_2d, zero_init
from robustok.generator.options import (
    DrawOptions,
    GeneratorModelConfig,
    ObjectiveConfig,
    SamplingOptions,
    convert,
    sampling_options,
)


@dataclass
class ARConfig(IdGeneratorConfig):
    pos: str = "rope"  # rope (2-D rotary) | learned (2-D table, one vector per grid cell)
    random_order: bool = False  # RAR: target-aware positions so permuted orders can be trained
    adaln: bool = False  # RAR: the class embedding also modulates every block (adaLN-Zero)


@dataclass
class ARModelOptions(GeneratorModelConfig):
    """`model:` of `model.kind: ar` (presets tiny|small|rar-b|rar-l|rar-xl)."""

    qk_norm: bool = True
    pos: str = "rope"  # rope | learned
    dropout: float = 0.0  # RAR uses 0.1
    random_order: bool = False  # RAR randomized-order training (see objective.order_anneal_*)
    adaln: bool = False  # class-conditional adaLN-Zero in every block (RAR)

    BOUNDS: ClassVar[dict] = {**GeneratorModelConfig.BOUNDS, "dropout": "[0,1)"}


@dataclass
class ARObjective(ObjectiveConfig):
    """`objective:` of `model.kind: ar`: the random-order schedule of RAR (with `model.random_order`)."""

    order_anneal_start: float = 0.5  # random-order probability 1 until this fraction of train.steps ...
    order_anneal_end: float = 0.75  # ... then linearly to 0 here (RAR: 125k and 187.5k of 250k steps)

    BOUNDS: ClassVar[dict] = {**ObjectiveConfig.BOUNDS, "order_anneal_start": "[0,1]", "order_anneal_end": "[0,1]"}


@dataclass
class ARSampling(DrawOptions):
    """Sampling options of `model.kind: ar`."""

    static_cache: bool = field(
        default=False,
        metadata={"help": "static KV cache and CUDA-graph decoding steps (same tokens, much faster on a GPU)"},
    )


@register_generator("ar")
class ARGenerator(IdGenerator):
    """Decoder-only transformer with a class token, null class (index `num_classes`) for CFG and a KV cache."""

    config_class = ARConfig
    token_kind = "ids"
    options_class: ClassVar[type[ARModelOptions]] = ARModelOptions
    objective_class: ClassVar[type[ARObjective]] = ARObjective
    sampling_class: ClassVar[type[ARSampling]] = ARSampling
    rope_cos: Tensor  # buffers (with pos = rope)
    rope_sin: Tensor

    def __init__(self, config: ARConfig):
        super().__init__(config)
        c = config
        if c.pos not in ("rope", "learned"):
            raise ConfigError(f"model.pos must be 'rope' or 'learned', got {c.pos!r}")
        if len(c.grid) != 2 or min(c.grid) < 1:
            raise ConfigError(f"model.grid must be [h, w], got {c.grid}")
        self.seq_len = c.grid[0] * c.grid[1]
        self.null_class = c.num_classes
        self.tok_emb = nn.Embedding(c.vocab_size, c.dim)
        self.cls_emb = nn.Embedding(c.num_classes + 1, c.dim)
        if c.pos == "learned":
            self.pos_emb = nn.Parameter(torch.randn(self.seq_len + 1, c.dim) * 0.02)
        else:
            rows, cols = torch.meshgrid(torch.arange(c.grid[0]), torch.arange(c.grid[1]), indexing="ij")
            pos = torch.cat(
                [torch.zeros(1, 2, dtype=torch.long), torch.stack([rows.flatten(), cols.flatten()], 1) + 1]
            )  # class at (0, 0)
            cos, sin = interleave_rope(*rope_2d(pos, c.dim // c.heads))
            self.register_buffer("rope_cos", cos.float(), persistent=False)
            self.register_buffer("rope_sin", sin.float(), persistent=False)
        if c.random_order:
            self.target_emb = nn.Parameter(torch.randn(self.seq_len, c.dim) * 0.02)
        self.drop = nn.Dropout(c.dropout)
        blocks = [Block(c.dim, c.heads, c.mlp_ratio, c.qk_norm, c.dropout, c.adaln) for _ in range(c.depth)]
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(c.dim, elementwise_affine=not c.adaln, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(c.dim, 2 * c.dim)) if c.adaln else None
        self.head = nn.Linear(c.dim, c.vocab_size)
        self.apply(self.init_weights)
        nn.init.zeros_(self.head.weight)
        adas = [b.ada for b in blocks if b.ada is not None]
        for m in adas + ([self.final_ada] if self.final_ada is not None else []):
            zero_init(m[-1])  # adaLN-Zero: its last linear layer

    # ---- building blocks -------------------------------------------------------------------------------
    def _embed(
        self, seq: torch.Tensor, labels: torch.Tensor, start: int, end: int, order: Optional[torch.Tensor]
    ) -> tuple[torch.Tensor, Optional[tuple]]:
        """Input vectors for sequence indices [start, end): index 0 is the class, index j>0 the token seq[:, j-1]."""
        B = labels.shape[0]
        parts = []
        if start == 0:
            parts.append(self.cls_emb(labels)[:, None])
        lo = max(start, 1)
        if end > lo:
            parts.append(self.tok_emb(seq[:, lo - 1 : end - 1]))
        h = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
        # grid cell of each input (class -> slot 0), and of each input's target
        if order is None:
            slots = torch.arange(start, end, device=h.device)[None]  # raster: slot j
        else:
            slots = torch.cat([torch.zeros(B, 1, dtype=torch.long, device=h.device), order + 1], 1)[:, start:end]
        if self.config.pos == "learned":
            h = h + self.pos_emb[slots]
            rope = None
        else:
            cos, sin = self.rope_cos[slots], self.rope_sin[slots]  # (1|B, T, Dh)
            rope = (cos[:, None], sin[:, None])
        if self.config.random_order:  # target-aware: input j is told which grid cell step j predicts
            idx = torch.arange(start, end, device=h.device)[None] if order is None else order[:, start:end]
            h = h + self.target_emb[idx]
        return self.drop(h), rope

    def modulations(self, labels: torch.Tensor) -> Optional[list[tuple]]:
        """adaLN modulation of every block and of the final norm for class ids `labels` (None without adaLN).

        They depend only on the class, so sampling computes them once per call instead of once per step.
        """
        if self.final_ada is None:  # built without adaLN
            return None
        cond = self.cls_emb(labels)
        shift, scale = self.final_ada(cond)[:, None].chunk(2, dim=-1)
        blocks = cast(Iterable[Block], self.blocks)  # nn.ModuleList types its items as plain modules
        return [blk.modulation(cond) for blk in blocks] + [(shift, 1 + scale)]

    def _trunk(
        self,
        h: torch.Tensor,
        rope,
        labels: torch.Tensor,
        cache: Optional[KVCache] = None,
        mods: Optional[list[tuple]] = None,
    ) -> torch.Tensor:
        if mods is None:
            mods = self.modulations(labels)
        for i, blk in enumerate(self.blocks):
            h = blk(h, rope, True, cache, i, mod=None if mods is None else mods[i])
        if cache is not None:
            cache.length += h.shape[1]
        h = self.norm(h)
        if mods is not None:
            shift, scale = mods[-1]
            h = h * scale + shift
        return self.head(h)

    # ---- training --------------------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, labels: torch.Tensor, order: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits (B, L, K) for the tokens in sequence order.

        `order` (B, L): the grid index of each step (raster if None).
        """
        seq = tokens.flatten(1)
        if order is not None:
            seq = seq.gather(1, order)
        h, rope = self._embed(seq, labels, 0, self.seq_len, order)
        return self._trunk(h, rope, labels)

    def random_orders(
        self, batch: int, ratio: float, device: torch.device, generator: Optional[torch.Generator] = None
    ) -> Optional[torch.Tensor]:
        """Per-sample orders: a random permutation with probability `ratio`, else raster (None if ratio == 0)."""
        if ratio <= 0:
            return None
        if not self.config.random_order:
            raise ConfigError("random-order training needs model.random_order=true")
        perm = torch.rand(batch, self.seq_len, device=device, generator=generator).argsort(1)
        pick = torch.rand(batch, 1, device=device, generator=generator) < ratio
        return torch.where(pick, perm, torch.arange(self.seq_len, device=device).expand(batch, -1))

    def loss(
        self, tokens: torch.Tensor, labels: torch.Tensor, label_dropout: float = 0.0, order_ratio: float = 0.0
    ) -> torch.Tensor:
        """Next-token cross-entropy (label dropout for CFG; random orders with probability `order_ratio`)."""
        return ar_loss(self, self, tokens, labels, label_dropout, order_ratio)

    # ---- sampling --------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        labels: torch.Tensor,
        cfg: float = 1.0,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
        keep_mask: Optional[torch.Tensor] = None,
        prefix_tokens: Optional[torch.Tensor] = None,
        cfg_schedule: str = "constant",
        cfg_power: float = 1.0,
        use_cache: bool = True,
        static_cache: bool = False,
    ) -> torch.Tensor:
        """Sample token grids (B, h, w) in raster order for class ids `labels` (B,).

        cfg: guidance scale (1 = conditional model, 0 = unconditional), shaped over steps by `cfg_schedule`
        (constant | linear | power, with `cfg_power`); conditional and unconditional rows run as one batch.
        temperature (0 = greedy), top_k, top_p filter the guided logits. Teacher forcing: where
        `keep_mask[:, s]` (B, L bool), the real token `prefix_tokens[:, s]` replaces the sample at step s and
        is fed back. `use_cache=False` recomputes the whole prefix each step (same tokens, slower).
        `static_cache=True`: the fast decoder of `robustok.generator.decode` (cache and buffers kept between
        calls, decoding steps replayed as CUDA graphs on a GPU; the same tokens as the default path).
        """
        check_guidance(cfg, cfg_schedule, cfg_power)
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {temperature}")
        labels = labels.to(self.head.weight.device).long()
        self.check_inputs(labels=labels)
        B, L, dev = labels.shape[0], self.seq_len, labels.device
        keep_mask, prefix_tokens = self.kept_tokens(keep_mask, prefix_tokens, B, dev)
        rule = DrawRule(cfg, cfg_schedule, cfg_power, temperature, top_k, top_p)
        if static_cache:
            if not use_cache:
                raise ConfigError("static_cache needs use_cache=True")
            from robustok.generator.decode import static_sample

            return static_sample(self, labels, rule, generator, keep_mask, prefix_tokens)
        rows = torch.cat([labels, torch.full_like(labels, self.null_class)]) if rule.guided else labels
        seq = torch.empty(rows.shape[0], L, dtype=torch.long, device=dev)
        cache = self.new_cache(rows.shape[0], dev, self.head.weight.dtype) if use_cache else None
        mods = self.modulations(rows)
        for s in range(L):
            self.decode_step(seq, rows, s, B, rule, cache, mods, generator, keep=keep_mask, prefix=prefix_tokens)
        return seq[:B].view(B, *self.config.grid)

    def new_cache(self, rows: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        """An empty KV cache for `rows` sequences (the class input and L - 1 tokens)."""
        c = self.config
        return KVCache(c.depth, rows, c.heads, self.seq_len, c.dim // c.heads, device, dtype)

    def decode_step(
        self,
        seq: torch.Tensor,
        rows: torch.Tensor,
        s: int,
        batch: int,
        rule: DrawRule,
        cache: Optional[KVCache] = None,
        mods: Optional[list[tuple]] = None,
        generator: Optional[torch.Generator] = None,
        u: Optional[torch.Tensor] = None,
        keep: Optional[torch.Tensor] = None,
        prefix: Optional[torch.Tensor] = None,
    ) -> None:
        """Raster step `s`: write token s of the first `batch` rows of `seq` (R, L) in place (and of the
        unconditional rows after them when guided). `rows`: class ids (R,); `mods`: `modulations(rows)`;
        `u`: this step's uniform numbers (else drawn from `generator`). Without `cache` the prefix is recomputed.

        No host synchronisation and only shapes fixed by (R, s): a CUDA graph can capture it.
        """
        h, rope = self._embed(seq, rows, s if cache is not None else 0, s + 1, None)
        logits = rule.apply(self._trunk(h, rope, rows, cache, mods)[:, -1].float(), batch, s, self.seq_len)
        tok = draw(logits, generator, greedy=rule.temperature == 0, u=u)
        if keep is not None:
            if prefix is None:
                raise ConfigError("decode_step: keep needs prefix (the real tokens to keep)")
            tok = torch.where(keep[:, s], prefix[:, s], tok)
        seq[:batch, s] = tok
        if rule.guided:
            seq[batch:, s] = tok

    # ---- the generator protocol (robustok.generator.base) ------------------------------------------------
    @classmethod
    def model_options(cls, options: GeneratorModelConfig) -> ARModelOptions:
        return convert(options, cls.options_class, "model", cls.kind)

    @classmethod
    def objective(cls, options: ObjectiveConfig) -> ARObjective:
        return convert(options, cls.objective_class, "objective", cls.kind)

    @classmethod
    def sampling(cls, options: Optional[SamplingOptions] = None, **values: Any) -> ARSampling:
        return sampling_options(cls.sampling_class, cls.kind, options, values)

    @classmethod
    def build(cls, model_cfg: ARModelOptions, store: Any) -> "ARGenerator":
        from robustok.generator.presets import AR_PRESETS, resolve

        mc = cls.model_options(model_cfg)
        dim, depth, heads, ratio = resolve(AR_PRESETS, mc.preset)
        return cls(
            ARConfig(
                vocab_size=store.codebook_size,
                grid=list(store.grid),
                num_classes=store.num_classes,
                dim=mc.dim or dim,
                depth=mc.depth or depth,
                heads=mc.heads or heads,
                mlp_ratio=mc.mlp_ratio or ratio,
                qk_norm=mc.qk_norm,
                pos=mc.pos,
                dropout=mc.dropout,
                random_order=mc.random_order,
                adaln=mc.adaln,
                tokenizer_fingerprint=store.fingerprint,
                preset=mc.preset,
            )
        )

    def check_objective(self, objective: ObjectiveConfig) -> None:
        o = self.objective(objective)
        if not 0 <= o.order_anneal_start <= o.order_anneal_end <= 1:
            raise ConfigError("objective.order_anneal_start/end are fractions of train.steps with start <= end")

    def training_loss(
        self,
        model: nn.Module,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        step: int,
        total_steps: int,
        objective: ObjectiveConfig,
    ) -> dict[str, torch.Tensor]:
        """Next-token cross-entropy; with `random_order`, RAR's random orders at `order_ratio` of the step."""
        ratio = order_ratio(self.objective(objective), step, total_steps) if self.config.random_order else 0.0
        loss = ar_loss(model, self, tokens, labels, objective.label_dropout, ratio)
        return {"loss": loss, "order_ratio": torch.tensor(ratio)}

    def _sample_with(
        self, labels: torch.Tensor, o: ARSampling, generator: Optional[torch.Generator], **forcing: Any
    ) -> torch.Tensor:
        """`sample` with the options `o` (free sampling, or teacher forcing through `forcing`)."""
        return self.sample(
            labels,
            cfg=o.cfg,
            temperature=o.temperature,
            top_k=o.top_k,
            top_p=o.top_p,
            generator=generator,
            cfg_schedule=o.cfg_schedule,
            cfg_power=o.cfg_power,
            static_cache=o.static_cache,
            **forcing,
        )


def order_ratio(obj: ARObjective, step: int, total: int) -> float:
    """RAR's random-order probability: 1 until `order_anneal_start`, linear to 0 at `order_anneal_end`."""
    frac = step / max(1, total)
    if frac <= obj.order_anneal_start:
        return 1.0
    if frac >= obj.order_anneal_end:
        return 0.0
    return 1.0 - (frac - obj.order_anneal_start) / max(1e-12, obj.order_anneal_end - obj.order_anneal_start)


def ar_loss(
    model: nn.Module,
    inner: ARGenerator,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    label_dropout: float = 0.0,
    order_ratio: float = 0.0,
) -> torch.Tensor:
    """The AR training loss, calling `model` (possibly a DDP/compiled wrapper of `inner`) for the forward pass."""
    labels = inner.prepare_labels(labels, label_dropout)
    order = inner.random_orders(tokens.shape[0], order_ratio, tokens.device)
    logits = model(tokens, labels, order)
    target = tokens.flatten(1) if order is None else tokens.flatten(1).gather(1, order)
    return F.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
