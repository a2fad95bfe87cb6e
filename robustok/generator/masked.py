"""Class-conditional masked-token generator over a token grid (MaskGIT / TiTok style).

A bidirectional transformer sees `[class, x_0, ..., x_{L-1}]` where some tokens are replaced by the [MASK] id
(= vocab_size) and predicts the original token at every masked position. Training masks `ceil(cos(pi/2 * u) * L)`
random positions per sample (u ~ U(0, 1), at least one) and scores only those. Sampling starts from an all-[MASK]
grid and decodes in `decode_steps` parallel steps: at each step every still-masked position gets a sampled token,
and only the most confident ones are kept (the count still masked follows the cosine schedule); confidence is the
log-probability of the sampled token plus Gumbel noise scaled by `choice_temperature * (1 - (t+1)/T)`.
Classifier-free guidance uses the null class (index `num_classes`), as the AR generator does.

Post-training pairs: each real token is kept with probability sigma, the rest is filled in by masked decoding
conditioned on the kept ones (sigma = 1 returns the real tokens, sigma = 0 a free sample).

Registered as `model.kind: masked`; the methods below the `protocol` line are the `TokenGenerator` protocol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, overload

import torch
import torch.nn.functional as F
from torch import nn

from robustok.errors import ConfigError, DataError
from robustok.generator.base import IdGenerator, IdGeneratorConfig, register_generator
from robustok.generator.guidance import DrawRule, check_guidance, draw
from robustok.generator.layers import Block
from robustok.generator.options import DrawOptions, GeneratorModelConfig, SamplingOptions, convert, sampling_options


@dataclass
class MaskedConfig(IdGeneratorConfig):  # vocab_size = K; the [MASK] id is K
    decode_steps: int = 10  # default number of parallel decoding steps T
    choice_temperature: float = 4.5  # default Gumbel scale of the confidence, annealed linearly to 0


@dataclass
class MaskedModelOptions(GeneratorModelConfig):
    """`model:` of `model.kind: masked` (presets tiny|small)."""

    qk_norm: bool = True
    dropout: float = 0.0

    BOUNDS: ClassVar[dict] = {**GeneratorModelConfig.BOUNDS, "dropout": "[0,1)"}


@dataclass
class MaskedSampling(DrawOptions):
    """Sampling options of `model.kind: masked` (None: the generator's `decode_steps` / `choice_temperature`)."""

    mask_steps: Optional[int] = field(
        default=None, metadata={"help": "parallel decoding steps (default: the generator's, 10)"}
    )
    choice_temperature: Optional[float] = field(
        default=None,
        metadata={"help": "Gumbel scale of the token confidence, annealed to 0 (default: the generator's, 4.5)"},
    )

    BOUNDS: ClassVar[dict] = {**DrawOptions.BOUNDS, "mask_steps": ">=1", "choice_temperature": ">=0"}


@overload
def cosine_ratio(frac: torch.Tensor) -> torch.Tensor: ...
@overload
def cosine_ratio(frac: float) -> float: ...
def cosine_ratio(frac: torch.Tensor | float) -> torch.Tensor | float:
    """MaskGIT's cosine schedule: the fraction of tokens masked at progress `frac` in [0, 1]."""
    if isinstance(frac, torch.Tensor):
        return torch.cos(math.pi / 2 * frac)
    return math.cos(math.pi / 2 * frac)


@register_generator("masked")
class MaskedGenerator(IdGenerator):
    """Bidirectional transformer with a class token, a [MASK] id and a null class for classifier-free guidance."""

    config_class = MaskedConfig
    options_class: ClassVar[type[MaskedModelOptions]] = MaskedModelOptions
    sampling_class: ClassVar[type[MaskedSampling]] = MaskedSampling
    cross_entropy_kind = "masked-token"

    def __init__(self, config: MaskedConfig):
        super().__init__(config)
        c = config
        if len(c.grid) != 2 or min(c.grid) < 1:
            raise ConfigError(f"model.grid must be [h, w], got {c.grid}")
        if c.decode_steps < 1 or c.choice_temperature < 0:
            raise ConfigError(
                f"decode_steps must be >= 1 and choice_temperature >= 0, got {c.decode_steps} and "
                f"{c.choice_temperature}"
            )
        self.seq_len = c.grid[0] * c.grid[1]
        self.null_class = c.num_classes
        self.mask_id = c.vocab_size
        self.tok_emb = nn.Embedding(c.vocab_size + 1, c.dim)
        self.cls_emb = nn.Embedding(c.num_classes + 1, c.dim)
        self.pos_emb = nn.Parameter(torch.zeros(self.seq_len + 1, c.dim))
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio, c.qk_norm, c.dropout) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.head = nn.Linear(c.dim, c.vocab_size)
        self.apply(self.init_weights)
        nn.init.trunc_normal_(self.pos_emb, std=0.02)
        nn.init.zeros_(self.head.weight)

    # ---- model -----------------------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, K) for every grid position of `tokens` (B, L) or (B, h, w), ids in [0, K] (K = [MASK])."""
        seq = tokens.flatten(1)
        h = torch.cat([self.cls_emb(labels)[:, None], self.tok_emb(seq)], 1) + self.pos_emb
        h = self.drop(h)
        for blk in self.blocks:
            h = blk(h, None, False)
        return self.head(self.norm(h[:, 1:]))

    def random_mask(
        self, batch: int, device: torch.device, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """Training masks (B, L) bool: `ceil(cos(pi/2 u) L)` random positions per row (at least 1), u ~ U(0, 1)."""
        L = self.seq_len
        u = torch.rand(batch, device=device, generator=generator)
        count = torch.ceil(cosine_ratio(u) * L).long().clamp(1, L)
        rank = torch.rand(batch, L, device=device, generator=generator).argsort(1).argsort(1)
        return rank < count[:, None]

    def loss(
        self,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        label_dropout: float = 0.0,
        mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Cross-entropy on the masked positions only (a random cosine-schedule mask unless `mask` is given)."""
        return masked_loss(self, self, tokens, labels, label_dropout, mask)

    # ---- sampling --------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        labels: torch.Tensor,
        cfg: float = 1.0,
        temperature: float = 1.0,
        steps: Optional[int] = None,
        choice_temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
        keep_mask: Optional[torch.Tensor] = None,
        prefix_tokens: Optional[torch.Tensor] = None,
        cfg_schedule: str = "constant",
        cfg_power: float = 1.0,
    ) -> torch.Tensor:
        """Token grids (B, h, w) for class ids `labels` (B,) by iterative parallel decoding.

        steps: decoding steps T (default `config.decode_steps`); choice_temperature: Gumbel scale of the
        confidence (default `config.choice_temperature`), annealed linearly to 0. cfg: guidance scale
        (1 = conditional, 0 = unconditional), shaped over the T steps by `cfg_schedule` (constant | linear |
        power). temperature (0 = greedy), top_k, top_p filter the guided logits. Where `keep_mask` (B, L)
        is true, the real token `prefix_tokens` is given from the start and never changed.
        """
        c = self.config
        steps = c.decode_steps if steps is None else int(steps)
        tau = c.choice_temperature if choice_temperature is None else float(choice_temperature)
        check_guidance(cfg, cfg_schedule, cfg_power)
        if steps < 1 or tau < 0 or temperature < 0:
            raise ConfigError(
                f"masked sampling needs steps >= 1, choice_temperature >= 0 and temperature >= 0, "
                f"got {steps}, {tau}, {temperature}"
            )
        labels = labels.to(self.head.weight.device).long()
        self.check_inputs(labels=labels)
        B, L, dev = labels.shape[0], self.seq_len, labels.device
        seq = torch.full((B, L), self.mask_id, dtype=torch.long, device=dev)
        keep_mask, prefix_tokens = self.kept_tokens(keep_mask, prefix_tokens, B, dev)
        if keep_mask is not None and prefix_tokens is not None:  # both or neither (`kept_tokens`)
            seq = torch.where(keep_mask, prefix_tokens, seq)
        rule = DrawRule(cfg, cfg_schedule, cfg_power, temperature, top_k, top_p)
        rows = torch.cat([labels, torch.full_like(labels, self.null_class)]) if rule.guided else labels
        initial = (seq == self.mask_id).sum(1)  # masked tokens at the start, per row
        for t in range(steps):
            if not (seq == self.mask_id).any():  # e.g. sigma = 1: nothing left to decode
                break
            seq = self._decode_step(seq, rows, t, steps, initial, rule, tau, generator)
        return seq.view(B, *c.grid)

    def _decode_step(
        self,
        seq: torch.Tensor,
        rows: torch.Tensor,
        t: int,
        steps: int,
        initial: torch.Tensor,
        rule: DrawRule,
        tau: float,
        generator: Optional[torch.Generator],
    ) -> torch.Tensor:
        """One parallel step: sample every masked position, re-mask the least confident per the cosine schedule."""
        B, L = seq.shape
        unknown = seq == self.mask_id
        inp = torch.cat([seq, seq]) if rule.guided else seq
        # (R*L, K), all conditional rows first: DrawRule guides rows [:B*L] with rows [B*L:]
        logits = rule.apply(self(inp, rows).float().flatten(0, 1), B * L, t, steps)
        sampled = draw(logits, generator, greedy=rule.temperature == 0).view(B, L)
        logp = torch.log_softmax(logits, -1).gather(1, sampled.flatten()[:, None]).view(B, L)
        sampled = torch.where(unknown, sampled, seq)
        if t == steps - 1:
            return sampled
        dev = generator.device if generator is not None else seq.device
        u = torch.rand(B, L, generator=generator, device=dev, dtype=torch.float64).to(seq.device)
        gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1 - 1e-12)))
        confidence = logp.double() + tau * (1.0 - (t + 1) / steps) * gumbel
        confidence = confidence.masked_fill(~unknown, float("inf"))  # decoded tokens stay
        left = torch.floor(initial.double() * cosine_ratio((t + 1) / steps)).long()
        count = unknown.sum(1)
        left = torch.minimum(left.clamp_min(1), count - 1).clamp_min(0)  # reveal >= 1, keep >= 1 masked
        rank = confidence.argsort(1).argsort(1)
        return sampled.masked_fill(rank < left[:, None], self.mask_id)

    # ---- protocol (what the generator registry calls) --------------------------------------------------
    @classmethod
    def model_options(cls, options: GeneratorModelConfig) -> MaskedModelOptions:
        return convert(options, cls.options_class, "model", cls.kind)

    @classmethod
    def sampling(cls, options: Optional[SamplingOptions] = None, **values: Any) -> MaskedSampling:
        return sampling_options(cls.sampling_class, cls.kind, options, values)

    @classmethod
    def build(cls, model_cfg: GeneratorModelConfig, store: Any) -> "MaskedGenerator":
        """A fresh generator for the model config `model_cfg` (preset + overrides) on the token store `store`."""
        from robustok.generator.presets import MASKED_PRESETS, resolve

        mc = cls.model_options(model_cfg)
        dim, depth, heads, ratio = resolve(MASKED_PRESETS, mc.preset)
        cfg = MaskedConfig(
            vocab_size=store.codebook_size,
            grid=list(store.grid),
            num_classes=store.num_classes,
            dim=mc.dim or dim,
            depth=mc.depth or depth,
            heads=mc.heads or heads,
            mlp_ratio=mc.mlp_ratio or ratio,
            qk_norm=mc.qk_norm,
            dropout=mc.dropout,
            tokenizer_fingerprint=store.fingerprint,
            preset=mc.preset,
        )
        return cls(cfg)

    def training_loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int, total: int, objective: Any
    ) -> dict[str, torch.Tensor]:
        """The training task's loss dict; `model` is this module or a DDP/compiled wrapper of it."""
        return {"loss": masked_loss(model, self, x, y, objective.label_dropout)}

    def _sample_with(
        self, labels: torch.Tensor, o: MaskedSampling, generator: Optional[torch.Generator], **forcing: Any
    ) -> torch.Tensor:
        """`sample` with the options `o` (free sampling, or conditioned on kept tokens through `forcing`)."""
        return self.sample(
            labels,
            cfg=o.cfg,
            temperature=o.temperature,
            top_k=o.top_k,
            top_p=o.top_p,
            steps=o.mask_steps,
            choice_temperature=o.choice_temperature,
            generator=generator,
            cfg_schedule=o.cfg_schedule,
            cfg_power=o.cfg_power,
            **forcing,
        )


def masked_loss(
    model: nn.Module,
    inner: MaskedGenerator,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    label_dropout: float = 0.0,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Masked-token cross-entropy, calling `model` (possibly a DDP/compiled wrapper of `inner`) for the forward."""
    labels = inner.prepare_labels(labels, label_dropout)
    x = tokens.flatten(1).long()
    if mask is None:
        mask = inner.random_mask(x.shape[0], x.device)
    mask = mask.flatten(1).bool()
    if not mask.any():
        raise DataError("masked loss: the mask selects no position")
    logits = model(x.masked_fill(mask, inner.mask_id), labels)
    return F.cross_entropy(logits[mask].float(), x[mask])
