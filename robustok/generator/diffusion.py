"""A small DiT/SiT-style transformer trained by flow matching on continuous tokenizer latents (B, C, h, w).

Latents are normalised per channel by dataset statistics stored in the config (`latent_mean`, `latent_std`),
so callers always pass and receive raw tokenizer latents. Conditioning: class embedding (+ null class for CFG)
plus a time embedding, injected by adaLN-Zero modulation in every block.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustok.errors import ConfigError, DataError
from robustok.generator.base import GeneratorConfig, TokenGenerator, register_generator
from robustok.generator.flow import integrate, interpolate, time_grid
from robustok.generator.guidance import check_guidance
from robustok.generator.layers import MLP, Attention, sincos_2d, timestep_embedding, zero_init
from robustok.generator.options import GeneratorModelConfig, ObjectiveConfig, SamplingOptions, convert, sampling_options


@dataclass
class DiffusionConfig(GeneratorConfig):
    latent_channels: int = 4
    patch_size: int = 1
    latent_mean: list[float] = field(default_factory=list)  # per channel; empty = 0
    latent_std: list[float] = field(default_factory=list)  # per channel; empty = 1


@dataclass
class DiffusionModelOptions(GeneratorModelConfig):
    """`model:` of `model.kind: diffusion` (presets tiny|small|sit-b|sit-l|sit-xl)."""

    qk_norm: bool = True
    patch_size: int = 1

    BOUNDS: ClassVar[dict] = {**GeneratorModelConfig.BOUNDS, "patch_size": ">=1"}


@dataclass
class DiffusionObjective(ObjectiveConfig):
    """`objective:` of `model.kind: diffusion`."""

    time_sampling: str = "uniform"  # uniform | logit-normal


@dataclass
class DiffusionSampling(SamplingOptions):
    """Sampling options of `model.kind: diffusion` (also SDEdit of post-training pairs)."""

    steps: int = field(default=50, metadata={"help": "ODE steps"})
    sampler: str = field(default="heun", metadata={"help": "ODE solver", "choices": ("euler", "heun")})
    shift: float = field(default=1.0, metadata={"help": "time-grid shift"})

    BOUNDS: ClassVar[dict] = {**SamplingOptions.BOUNDS, "steps": ">=1", "shift": ">0"}


def _randn(shape, generator: Optional[torch.Generator], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Gaussian noise drawn on the generator's device (so a CPU generator also seeds CUDA sampling)."""
    dev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=dev, dtype=dtype).to(device)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """Bidirectional block with adaLN-Zero: the condition sets shift/scale/gate of both sub-layers."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, qk_norm)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        s1, a1, g1, s2, a2, g2 = self.ada(c).chunk(6, dim=-1)
        x = x + g1[:, None] * self.attn(_modulate(self.norm1(x), s1, a1), causal=False)
        return x + g2[:, None] * self.mlp(_modulate(self.norm2(x), s2, a2))


@register_generator("diffusion")
class DiffusionGenerator(TokenGenerator):
    """Velocity-prediction transformer over latent patches; `sample` and `denoise_from` (SDEdit) integrate its ODE."""

    config_class = DiffusionConfig
    options_class: ClassVar[type[DiffusionModelOptions]] = DiffusionModelOptions
    objective_class: ClassVar[type[DiffusionObjective]] = DiffusionObjective
    sampling_class: ClassVar[type[DiffusionSampling]] = DiffusionSampling
    token_kind = "latents"
    pos: Tensor  # buffers
    latent_mean: Tensor
    latent_std: Tensor

    def __init__(self, config: DiffusionConfig):
        super().__init__(config)
        c = config
        h, w = c.grid
        if h % c.patch_size or w % c.patch_size:
            raise ConfigError(f"model.grid {c.grid} is not divisible by model.patch_size {c.patch_size}")
        for key, vals in (("latent_mean", c.latent_mean), ("latent_std", c.latent_std)):
            if vals and len(vals) != c.latent_channels:
                raise ConfigError(f"model.{key} has {len(vals)} values for {c.latent_channels} latent channels")
        self.null_class = c.num_classes
        p, C = c.patch_size, c.latent_channels
        self.patch = nn.Conv2d(C, c.dim, p, p)
        self.register_buffer("pos", sincos_2d(h // p, w // p, c.dim)[None], persistent=False)
        self.t_mlp = nn.Sequential(nn.Linear(256, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.cls_emb = nn.Embedding(c.num_classes + 1, c.dim)
        self.blocks = nn.ModuleList(DiTBlock(c.dim, c.heads, c.mlp_ratio, c.qk_norm) for _ in range(c.depth))
        self.final_norm = nn.LayerNorm(c.dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(c.dim, 2 * c.dim))
        self.out = nn.Linear(c.dim, p * p * C)
        mean = torch.tensor(c.latent_mean or [0.0] * C).view(1, C, 1, 1)
        std = torch.tensor(c.latent_std or [1.0] * C).view(1, C, 1, 1)
        self.register_buffer("latent_mean", mean.float(), persistent=False)
        self.register_buffer("latent_std", std.float(), persistent=False)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.cls_emb.weight, std=0.02)
        for blk in cast(Iterable[DiTBlock], self.blocks):  # nn.ModuleList types its items as plain modules
            zero_init(blk.ada[-1])  # adaLN-Zero: every block starts as the identity
        for m in (self.final_ada[-1], self.out):
            zero_init(m)

    # ---- normalisation / checks ------------------------------------------------------------------------
    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean.to(z.dtype)) / self.latent_std.to(z.dtype)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std.to(z.dtype) + self.latent_mean.to(z.dtype)

    def check_inputs(self, latents: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None) -> None:
        """Raise `DataError` for latents of the wrong shape or class ids outside [0, C] (C = null)."""
        c = self.config
        if latents is not None and list(latents.shape[1:]) != [c.latent_channels, *c.grid]:
            raise DataError(
                f"latents of shape {tuple(latents.shape[1:])} do not match the generator's "
                f"{(c.latent_channels, *c.grid)}"
            )
        if labels is not None:
            self.check_labels(labels)

    # ---- network ---------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Velocity (B, C, h, w) at normalised latents `x` and times `t` (B,) for class ids `labels` (B,)."""
        B, C, H, W = x.shape
        p = self.config.patch_size
        h = self.patch(x).flatten(2).transpose(1, 2) + self.pos.to(x.dtype)
        c = self.t_mlp(timestep_embedding(t, 256).to(x.dtype)) + self.cls_emb(labels)
        for blk in self.blocks:
            h = blk(h, c)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        h = self.out(_modulate(self.final_norm(h), shift, scale))  # (B, N, p*p*C)
        h = h.view(B, H // p, W // p, p, p, C).permute(0, 5, 1, 3, 2, 4)
        return h.reshape(B, C, H, W)

    def loss(
        self, latents: torch.Tensor, labels: torch.Tensor, label_dropout: float = 0.0, time_sampling: str = "uniform"
    ) -> torch.Tensor:
        """Flow-matching MSE between predicted and true velocity (noise - x0) on normalised latents."""
        return flow_loss(self, self, latents, labels, label_dropout, time_sampling)

    # ---- sampling --------------------------------------------------------------------------------------
    def velocity_fn(
        self, labels: torch.Tensor, cfg: float = 1.0, cfg_interval: tuple[float, float] = (0.0, 1.0)
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """v(x, t) with classifier-free guidance `v_c + (cfg - 1)(v_c - v_u)`, cond and uncond in one batch.

        Guidance is applied only for t inside `cfg_interval` (the whole path by default)."""
        null = torch.full_like(labels, self.null_class)

        def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            tt = float(t[0])
            if cfg == 1.0 or not (cfg_interval[0] <= tt <= cfg_interval[1]):
                return self(x, t, labels)
            out = self(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
            cond, uncond = out.chunk(2)
            return cond + (cfg - 1.0) * (cond - uncond)

        return v

    @torch.no_grad()
    def denoise_from(
        self,
        latents: torch.Tensor,
        t_start: float,
        labels: torch.Tensor,
        cfg: float = 1.0,
        steps: int = 50,
        sampler: str = "heun",
        generator: Optional[torch.Generator] = None,
        noise: Optional[torch.Tensor] = None,
        shift: float = 1.0,
        cfg_interval: tuple[float, float] = (0.0, 1.0),
    ) -> torch.Tensor:
        """SDEdit: noise raw `latents` to time `t_start` (0 = clean, 1 = pure noise), then integrate back to t = 0.

        Returns raw (de-normalised) latents. The preservation ratio of the paper is sigma = 1 - t_start.
        """
        check_guidance(cfg)
        labels = labels.to(latents.device).long()
        self.check_inputs(latents, labels)
        x0 = self.normalize(latents.to(self.out.weight.dtype))
        if noise is None:
            noise = _randn(x0.shape, generator, x0.device, x0.dtype)
        x = interpolate(x0, noise, torch.full((x0.shape[0],), t_start, device=x0.device))
        ts = time_grid(max(1, round(steps * t_start)) if t_start < 1 else steps, t_start, shift)
        return self.denormalize(integrate(self.velocity_fn(labels, cfg, cfg_interval), x, ts, sampler))

    @torch.no_grad()
    def sample(
        self,
        labels: torch.Tensor,
        cfg: float = 1.0,
        steps: int = 50,
        sampler: str = "heun",
        generator: Optional[torch.Generator] = None,
        shift: float = 1.0,
        cfg_interval: tuple[float, float] = (0.0, 1.0),
    ) -> torch.Tensor:
        """Raw latents (B, C, h, w) for class ids `labels` (B,), integrated from pure noise at t = 1."""
        check_guidance(cfg)
        c = self.config
        dev = self.out.weight.device
        labels = labels.to(dev).long()
        self.check_inputs(labels=labels)
        noise = _randn((labels.shape[0], c.latent_channels, *c.grid), generator, dev, self.out.weight.dtype)
        x = integrate(self.velocity_fn(labels, cfg, cfg_interval), noise, time_grid(steps, 1.0, shift), sampler)
        return self.denormalize(x)

    # ---- the generator protocol (robustok.generator.base) ------------------------------------------------
    @classmethod
    def model_options(cls, options: GeneratorModelConfig) -> DiffusionModelOptions:
        return convert(options, cls.options_class, "model", cls.kind)

    @classmethod
    def objective(cls, options: ObjectiveConfig) -> DiffusionObjective:
        return convert(options, cls.objective_class, "objective", cls.kind)

    @classmethod
    def sampling(cls, options: Optional[SamplingOptions] = None, **values: Any) -> DiffusionSampling:
        return sampling_options(cls.sampling_class, cls.kind, options, values)

    @classmethod
    def build(cls, model_cfg: DiffusionModelOptions, store: Any) -> "DiffusionGenerator":
        from robustok.generator.presets import DIFFUSION_PRESETS, resolve

        mc = cls.model_options(model_cfg)
        dim, depth, heads, ratio = resolve(DIFFUSION_PRESETS, mc.preset)
        mean, std = store.latent_stats
        return cls(
            DiffusionConfig(
                latent_channels=int(store.manifest["latent_channels"]),
                grid=list(store.grid),
                patch_size=mc.patch_size,
                num_classes=store.num_classes,
                dim=mc.dim or dim,
                depth=mc.depth or depth,
                heads=mc.heads or heads,
                mlp_ratio=mc.mlp_ratio or ratio,
                qk_norm=mc.qk_norm,
                latent_mean=mean,
                latent_std=std,
                tokenizer_fingerprint=store.fingerprint,
                preset=mc.preset,
            )
        )

    def fit_problems(self, store: Any) -> list[str]:
        problems = super().fit_problems(store)
        channels = store.manifest.get("latent_channels")
        if store.kind == "latents" and self.config.latent_channels != int(channels):
            problems.append(f"{self.config.latent_channels} latent channels vs the store's {channels}")
        return problems

    def check_objective(self, objective: ObjectiveConfig) -> None:
        sample_times(1, self.objective(objective).time_sampling, torch.device("cpu"))  # validates time_sampling

    def training_loss(
        self, model: nn.Module, tokens: Tensor, labels: Tensor, step: int, total_steps: int, objective: ObjectiveConfig
    ) -> dict[str, Tensor]:
        o = self.objective(objective)
        return {"loss": flow_loss(model, self, tokens, labels, o.label_dropout, o.time_sampling)}

    def sample_codes(self, labels: Tensor, opts: Any, generator: Optional[torch.Generator] = None) -> Tensor:
        o = self.sampling(opts)
        return self.sample(labels, cfg=o.cfg, steps=o.steps, sampler=o.sampler, generator=generator, shift=o.shift)

    def paired(
        self, real: Tensor, labels: Tensor, sigma: float, opts: Any, rng: torch.Generator, mask_rng: torch.Generator
    ) -> Tensor:
        """SDEdit: the real latents noised to t = 1 - sigma and denoised (sigma = 1: the real latents)."""
        o = self.sampling(opts)
        if sigma >= 1.0:
            return real
        return self.denoise_from(real, 1.0 - sigma, labels, cfg=o.cfg, steps=o.steps, sampler=o.sampler, generator=rng)


def sample_times(batch: int, mode: str, device: torch.device) -> torch.Tensor:
    """Training times t in (0, 1): `uniform` or `logit-normal` (SD3; more weight on the middle of the path)."""
    if mode == "logit-normal":
        return torch.sigmoid(torch.randn(batch, device=device))
    if mode == "uniform":
        return torch.rand(batch, device=device)
    raise ConfigError(f"objective.time_sampling must be 'uniform' or 'logit-normal', got {mode!r}")


def flow_loss(
    model: nn.Module,
    inner: DiffusionGenerator,
    latents: torch.Tensor,
    labels: torch.Tensor,
    label_dropout: float = 0.0,
    time_sampling: str = "uniform",
) -> torch.Tensor:
    """The flow-matching loss, calling `model` (possibly a DDP/compiled wrapper of `inner`) for the forward pass."""
    x0 = inner.normalize(latents)
    labels = inner.prepare_labels(labels, label_dropout)
    t = sample_times(x0.shape[0], time_sampling, x0.device)
    noise = torch.randn_like(x0)
    v = model(interpolate(x0, noise, t), t, labels)
    return F.mse_loss(v.float(), (noise - x0).float())
