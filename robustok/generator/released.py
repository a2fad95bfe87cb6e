"""What the autoregressive generators converted from released checkpoints share (LlamaGen GPT, RAR).

`ReleasedAR` samples in raster order with a KV cache, through the default loop or the static CUDA-graph decoder
of `robustok.generator.decode` (the same tokens), teacher-forces post-training pairs like `ARGenerator`, and
checks that a command's tokenizer is the one the weights were converted with (fingerprint, vocabulary, grid).
A subclass builds its modules and implements `step_logits` (the logits predicting token s) and `forward`
(teacher-forced logits, for the next-token loss); `modulations` returns what a sampling call computes once.

Converted models are made by `robustok convert KIND FILE --tokenizer DIR` (`robustok.adapters.generators`),
not trained from scratch: `build` refuses with that hint.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from robustok.errors import CheckpointError, ConfigError
from robustok.generator.ar import ARSampling
from robustok.generator.base import IdGenerator
from robustok.generator.guidance import DrawRule, check_guidance, draw
from robustok.generator.layers import KVCache


class ReleasedAR(IdGenerator):
    """Base of converted autoregressive generators: sampling, teacher forcing and tokenizer checks.

    Subclasses set `seq_len`, `null_class`, `cache_len` (inputs the KV cache holds) and `head` (the output
    projection: its weight gives the device and dtype), and implement `step_logits` and `forward`."""

    token_kind: ClassVar[str] = "ids"
    sampling_class = ARSampling  # the AR kind's options: guidance, temperature, top-k/p, static cache
    family: ClassVar[str] = ""  # readable name of the upstream model ("LlamaGen GPT", "RAR")
    cache_len: int
    head: nn.Linear

    # ---- hooks ---------------------------------------------------------------------------------------------
    def modulations(self, rows: torch.Tensor) -> Optional[list]:
        """What every decoding step of a sampling call for class ids `rows` reuses (None: nothing)."""
        return None

    def step_logits(
        self, seq: torch.Tensor, rows: torch.Tensor, s: int, cache: Optional[KVCache], mods: Optional[list]
    ) -> torch.Tensor:
        """Logits (R, K) of token s given tokens seq[:, :s] and class ids `rows` (R,). With `cache`, only the
        inputs not yet in it are run (shapes fixed by s: capturable); without, the whole prefix."""
        raise NotImplementedError

    def guidance_interval(self, opts: Any) -> int:
        """The last decoding step (minus one) that is guided, from this kind's sampling options (-1: every step)."""
        return -1

    def new_cache(self, rows: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        """An empty KV cache for `rows` sequences of `cache_len` inputs."""
        c = self.config
        return KVCache(c.depth, rows, c.heads, self.cache_len, c.dim // c.heads, device, dtype)

    # ---- sampling --------------------------------------------------------------------------------------------
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
        cfg_interval: int = -1,
    ) -> torch.Tensor:
        """Token grids (B, h, w) in raster order for class ids `labels` (B,); the arguments mean what they mean
        for `ARGenerator.sample` (guidance, temperature, top-k/p, teacher forcing, static decoder).
        `cfg_interval` >= 0: LlamaGen's `cfg_interval`, tokens after index cfg_interval + 1 are drawn unguided."""
        check_guidance(cfg, cfg_schedule, cfg_power)
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {temperature}")
        labels = labels.to(self.head.weight.device).long()
        self.check_inputs(labels=labels)
        B, dev = labels.shape[0], labels.device
        keep_mask, prefix_tokens = self.kept_tokens(keep_mask, prefix_tokens, B, dev)
        rule = DrawRule(cfg, cfg_schedule, cfg_power, temperature, top_k, top_p, int(cfg_interval))
        if static_cache:
            if not use_cache:
                raise ConfigError("static_cache needs use_cache=True")
            from robustok.generator.decode import static_sample

            return static_sample(self, labels, rule, generator, keep_mask, prefix_tokens)
        rows = torch.cat([labels, torch.full_like(labels, self.null_class)]) if rule.guided else labels
        seq = torch.empty(rows.shape[0], self.seq_len, dtype=torch.long, device=dev)
        cache = self.new_cache(rows.shape[0], dev, self.head.weight.dtype) if use_cache else None
        mods = self.modulations(rows)
        for s in range(self.seq_len):
            self.decode_step(seq, rows, s, B, rule, cache, mods, generator, keep=keep_mask, prefix=prefix_tokens)
        return seq[:B].view(B, *self.config.grid)

    def decode_step(
        self,
        seq: torch.Tensor,
        rows: torch.Tensor,
        s: int,
        batch: int,
        rule: DrawRule,
        cache: Optional[KVCache] = None,
        mods: Optional[list] = None,
        generator: Optional[torch.Generator] = None,
        u: Optional[torch.Tensor] = None,
        keep: Optional[torch.Tensor] = None,
        prefix: Optional[torch.Tensor] = None,
    ) -> None:
        """Raster step `s` in place, as `ARGenerator.decode_step` (the step the static decoder captures)."""
        logits = rule.apply(self.step_logits(seq, rows, s, cache, mods).float(), batch, s, self.seq_len)
        tok = draw(logits, generator, greedy=rule.temperature == 0, u=u)
        if keep is not None and prefix is not None:
            tok = torch.where(keep[:, s], prefix[:, s], tok)
        seq[:batch, s] = tok
        if rule.guided:
            seq[batch:, s] = tok

    # ---- the generator protocol ------------------------------------------------------------------------------
    @classmethod
    def build(cls, model_cfg: Any, store: Any) -> "ReleasedAR":
        raise ConfigError(
            f"model.kind={cls.kind}: a {cls.family} generator is converted from its released "
            f"weights (robustok convert {cls.kind} FILE --tokenizer DIR --out DIR), not built; "
            "continue training a converted one with model.init=DIR"
        )

    def training_loss(
        self, model: nn.Module, tokens: torch.Tensor, labels: torch.Tensor, step: int, total_steps: int, objective: Any
    ) -> dict[str, torch.Tensor]:
        """Next-token cross-entropy in raster order (label dropout for CFG)."""
        labels = self.prepare_labels(labels, objective.label_dropout)
        logits = model(tokens, labels)
        return {"loss": F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten())}

    def _sample_with(
        self, labels: torch.Tensor, o: Any, generator: Optional[torch.Generator], **forcing: Any
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
            cfg_interval=self.guidance_interval(o),
            **forcing,
        )

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Refuse a tokenizer of another grid or vocabulary, or another fingerprint than the converted one's."""
        grid = [int(tokenizer.grid_size)] * 2
        if grid != list(self.config.grid):
            raise CheckpointError(
                f"the tokenizer's {grid[0]}x{grid[1]} token grid differs from the {self.family} "
                f"generator's {self.config.grid[0]}x{self.config.grid[1]} (convert the tokenizer "
                "at the generator's image size)"
            )
        if int(tokenizer.codebook_size) != self.config.vocab_size:
            raise CheckpointError(
                f"tokenizer codebook size {tokenizer.codebook_size} != {self.family} generator "
                f"vocabulary {self.config.vocab_size}"
            )
        super().check_tokenizer(tokenizer)
