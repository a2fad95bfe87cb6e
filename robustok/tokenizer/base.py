"""The tokenizer protocol, shared by robustok's `Tokenizer` and the off-the-shelf adapters.

A subclass builds `self.quantizer` (a `VectorQuantizer`, or None for continuous latents) and implements three
hooks: `_pre_quant(x)` (images in [-1, 1] -> raw pre-quantisation latents (B, d', h, w)), `decode_codes(z)`
(code vectors / latents -> images, unclamped) and `grid_size`; plus `last_layer` and `frozen_part_names()`.
Everything else — encode/lookup/decode, codebook access, input checks and the training forward with latent
perturbation — is written once here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from robustok.errors import ConfigError
from robustok.hub import Pretrained
from robustok.tokenizer.quantizer import VectorQuantizer


@dataclass
class TokenizerOutput:
    recon: Tensor  # decoded image, float [-1, 1] range (unclamped)
    ids: Optional[Tensor]  # clean token ids (B, h, w) for VQ, None for continuous latents
    losses: dict[str, Tensor]  # vq, commit (VQ) or kl (KL)
    stats: dict[str, Tensor]  # perplexity, batch_usage, perturbed_images, changed_tokens, ...
    latents: Optional[Tensor] = None  # the decoder's input latents (B, d, h, w): quantised / perturbed


class TokenizerBase(Pretrained):
    """encode / lookup / decode / codebook / training forward over the `_pre_quant` and `decode_codes` hooks."""

    quantizer: Optional[VectorQuantizer]

    # --- hooks ------------------------------------------------------------------------------------------
    def _pre_quant(self, x: Tensor) -> Tensor:
        """Images [-1, 1] -> raw pre-quantisation latents (B, d', h, w), before any normalisation."""
        raise NotImplementedError

    def _latent_mean(self, h: Tensor) -> Tensor:
        """Continuous models: the latents that `encode_latents` returns from `_pre_quant`'s output."""
        return h

    def decode_codes(self, z: Tensor) -> Tensor:
        """Code vectors / latents (B, d, h, w) -> images in [-1, 1] (not clamped)."""
        raise NotImplementedError

    @property
    def grid_size(self) -> int:
        raise NotImplementedError

    @property
    def last_layer(self) -> Tensor:
        """Weight of the decoder's final layer (for the adaptive GAN weight)."""
        raise NotImplementedError

    def frozen_part_names(self) -> list[str]:
        """State-dict prefixes of the encoding side (encoder, projection, codebook): frozen in post-training."""
        raise NotImplementedError

    # --- properties -------------------------------------------------------------------------------------
    @property
    def is_discrete(self) -> bool:
        return self.quantizer is not None

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size if self.quantizer is not None else 0

    def _discrete(self, what: str) -> VectorQuantizer:
        if self.quantizer is None:
            raise ConfigError(
                f"{type(self).__name__} is a continuous tokenizer: {what} needs a discrete tokenizer "
                "(token ids, a codebook); use encode_latents() / decode_latents()"
            )
        return self.quantizer

    @property
    def codebook(self) -> Tensor:
        """(K, d) code vectors as used for lookup (l2-normalised where the model normalises)."""
        return self._discrete("codebook").codebook

    def _check_images(self, x: Tensor) -> None:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.channels or x.shape[2] != c.image_size or x.shape[3] != c.image_size:
            raise ValueError(f"expected images (B, {c.channels}, {c.image_size}, {c.image_size}), got {tuple(x.shape)}")

    # --- encoding ---------------------------------------------------------------------------------------
    def encode_latents(self, x: Tensor) -> Tensor:
        """Pre-quantisation latents (B, d, h, w), float32: normalised as before the lookup for VQ models."""
        self._check_images(x)
        h = self._pre_quant(x).float()
        return self.quantizer.normalize(h) if self.quantizer is not None else self._latent_mean(h)

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Raw latents -> (straight-through code vectors, ids (B, h, w), losses/stats)."""
        return self._discrete("quantize()")(z)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Images float [-1, 1] (B, C, H, W) -> token ids (B, h, w) long."""
        q = self._discrete("encode()")
        z = self.encode_latents(x)
        b, d, h, w = z.shape
        return q.nearest(z.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)

    # --- decoding ---------------------------------------------------------------------------------------
    def lookup(self, ids: Tensor) -> Tensor:
        """Token ids (B, h, w) or (B, h*w) -> code vectors (B, d, h, w); ids outside [0, K) are an error."""
        q = self._discrete("lookup()")
        g = self.grid_size
        if ids.ndim == 2 and ids.shape[1] == g * g:
            ids = ids.reshape(-1, g, g)
        if ids.ndim != 3 or tuple(ids.shape[1:]) != (g, g):
            raise ValueError(f"expected token ids (B, {g}, {g}), got {tuple(ids.shape)}")
        return q.lookup(ids)

    def decode_latents(self, z: Tensor) -> Tensor:
        return self.decode_codes(z)

    @torch.no_grad()
    def decode(self, ids: Tensor) -> Tensor:
        """Token ids (B, h, w) (or (B, h*w)) -> images float [-1, 1] (clamped)."""
        return self.decode_codes(self.lookup(ids)).clamp(-1, 1)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Encode and decode (clean, no perturbation), clamped to [-1, 1]."""
        if self.quantizer is None:
            return self.decode_latents(self.encode_latents(x)).clamp(-1, 1)
        return self.decode(self.encode(x))

    # --- training forward -------------------------------------------------------------------------------
    def _continuous_forward(
        self, h: Tensor, perturb: Optional[dict], generator: Optional[torch.Generator]
    ) -> tuple[Tensor, dict, dict]:
        raise ConfigError(f"{type(self).__name__}: training forward needs a discrete tokenizer")

    def forward(
        self, x: Tensor, perturb: Optional[dict] = None, generator: Optional[torch.Generator] = None
    ) -> TokenizerOutput:
        """Training forward. `perturb`: None or {beta, alpha, delta, noise_std, neighbours} (latent perturbation).

        VQ/commit (or KL) losses use the clean latents; only the decoder input is perturbed. In eval mode the
        perturbation is never applied (pFID perturbs ids explicitly with `perturb_ids`).
        """
        from robustok.tokenizer.perturbation import perturb_codes_st

        if not self.training:
            perturb = None
        self._check_images(x)
        h = self._pre_quant(x).float()
        if self.quantizer is None:
            z_dec, losses, stats = self._continuous_forward(h, perturb, generator)
            return TokenizerOutput(self.decode_codes(z_dec), None, losses, stats, z_dec)
        z_q, ids, aux = self.quantizer(h)
        losses = {"vq": aux.pop("vq"), "commit": aux.pop("commit")}
        stats = dict(aux)
        z_dec = z_q
        if perturb is not None and perturb.get("beta", 0) > 0 and perturb.get("alpha", 0) > 0:
            z = self.quantizer.normalize(h)
            z_dec, new_ids, mask = perturb_codes_st(
                z,
                ids,
                self.codebook,
                perturb["beta"],
                perturb["alpha"],
                perturb["delta"],
                perturb.get("neighbours", "code"),
                generator,
            )
            stats["perturbed_images"] = mask.float().mean()
            stats["changed_tokens"] = (new_ids != ids).float().mean()
        return TokenizerOutput(self.decode_codes(z_dec), ids, losses, stats, z_dec)
