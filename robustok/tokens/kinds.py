"""The two kinds of tokens a tokenizer gives a generator, and what each means for encoding, decoding and storage.

- "ids": discrete token ids, (n, h, w) integers in [0, K) (stored uint16, int32 if K > 65536);
- "latents": continuous latents, (n, C, h, w) floats (stored float16).

Token stores, post-training pairs and held-out samples all use this one vocabulary; a generator names the kind
it models in its `token_kind`. Pairs written before this vocabulary said "ar" / "diffusion" (`LEGACY_KINDS`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from robustok.errors import DataError

LEGACY_KINDS = {"ar": "ids", "diffusion": "latents"}  # pairs folders written before robustok.tokens


class TokenKind:
    """What one kind of tokens means: how a tokenizer encodes images to it and decodes it, and its storage
    (dtype, validation, the manifest fields of a token store and their statistics)."""

    name: str  # also the file stem of its arrays (`ids-00000.npy`, `latents.npy` in a tar)
    description: str

    def encode(self, tokenizer: Any, images: Tensor) -> Tensor:
        raise NotImplementedError

    def decode_raw(self, tokenizer: Any, codes: Tensor) -> Tensor:
        """Images (unclamped, differentiable: post-training's forward pass)."""
        raise NotImplementedError

    def decode(self, tokenizer: Any, codes: Tensor) -> Tensor:
        """Images in [-1, 1] (clamped, no gradient), in the tokenizer's output dtype."""
        raise NotImplementedError

    def to_array(self, codes: Tensor, codebook_size: int = 0) -> np.ndarray:
        raise NotImplementedError

    def to_tensor(self, arr: np.ndarray) -> Tensor:
        raise NotImplementedError

    # ---- token stores ------------------------------------------------------------------------------------
    def encode_batch(self, tokenizer: Any, images: Tensor) -> dict[str, np.ndarray]:
        """`x`: the stored array of a batch of images, plus the sums its statistics need (`add_sums`)."""
        raise NotImplementedError

    def grid(self, x: np.ndarray) -> list[int]:
        """The token grid (h, w) of a stored batch."""
        return list(x.shape[-2:])

    def channels(self, x: np.ndarray) -> int:
        """Latent channels of a stored batch (0 for ids)."""
        return 0

    def codebook_field(self, codebook_size: int) -> int:
        """The manifest's `codebook_size` (0 where the kind has no codebook)."""
        return 0

    def add_sums(self, sums: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Accumulate a batch's statistic sums (from `encode_batch`) into `sums`."""

    def statistics(self, sums: dict[str, Any], entries: int) -> dict[str, Any]:
        """The manifest's statistic fields of a store of `entries` grid positions (summed over entries)."""
        return {}

    def entry_shape(self, grid: list[int], manifest: dict) -> tuple[int, ...]:
        """The shape of one stored entry."""
        return tuple(grid)

    def check_rows(self, where: str, x: np.ndarray, codebook_size: int) -> None:
        """Raise `DataError` naming `where` for stored values this kind cannot hold."""

    def round_trip(self, tokenizer: Any, codes: Tensor) -> Tensor:
        """encode(uint8(decode(codes))): the codes of the decoded image after rounding it to 8 bits (a PNG)."""
        from robustok.data.transforms import from_uint8, to_uint8

        with torch.no_grad():
            images = from_uint8(to_uint8(self.decode(tokenizer, codes))).to(codes.device)
            return self.encode(tokenizer, images).view_as(codes)


class Ids(TokenKind):
    name, description = "ids", "token ids"

    def encode(self, tokenizer: Any, images: Tensor) -> Tensor:
        return tokenizer.encode(images)

    def decode_raw(self, tokenizer: Any, codes: Tensor) -> Tensor:
        return tokenizer.decode_codes(tokenizer.lookup(codes))

    def decode(self, tokenizer: Any, codes: Tensor) -> Tensor:
        return tokenizer.decode(codes)

    def to_array(self, codes: Tensor, codebook_size: int = 0) -> np.ndarray:
        return codes.cpu().numpy().astype(id_dtype(codebook_size or int(codes.max()) + 1))

    def to_tensor(self, arr: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(arr).astype(np.int64))

    def encode_batch(self, tokenizer: Any, images: Tensor) -> dict[str, np.ndarray]:
        K = int(tokenizer.codebook_size)
        ids = tokenizer.encode(images)
        if ids.dim() != 3:
            raise DataError(f"tokenizer.encode returned shape {tuple(ids.shape)}, expected (B, h, w)")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= K:
            raise DataError(f"tokenizer produced ids in [{lo}, {hi}], outside [0, {K})")
        return {"x": ids.cpu().numpy().astype(id_dtype(K))}

    def codebook_field(self, codebook_size: int) -> int:
        return int(codebook_size)

    def check_rows(self, where: str, x: np.ndarray, codebook_size: int) -> None:
        """Token ids: integers in [0, K)."""
        if not np.issubdtype(x.dtype, np.integer):
            raise DataError(f"{where}: token ids must be integers, got dtype {x.dtype}")
        if x.size and int(x.max()) >= codebook_size:
            raise DataError(f"{where}: token id {int(x.max())} >= codebook size {codebook_size}")
        if x.size and int(x.min()) < 0:
            raise DataError(f"{where}: negative token id {int(x.min())}")


class Latents(TokenKind):
    name, description = "latents", "continuous latents"

    def encode(self, tokenizer: Any, images: Tensor) -> Tensor:
        return tokenizer.encode_latents(images)

    def decode_raw(self, tokenizer: Any, codes: Tensor) -> Tensor:
        return tokenizer.decode_latents(codes)

    def decode(self, tokenizer: Any, codes: Tensor) -> Tensor:
        with torch.no_grad():
            return tokenizer.decode_latents(codes).clamp(-1, 1)

    def to_array(self, codes: Tensor, codebook_size: int = 0) -> np.ndarray:
        return codes.cpu().numpy().astype(np.float16)

    def to_tensor(self, arr: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(arr).astype(np.float32))

    def encode_batch(self, tokenizer: Any, images: Tensor) -> dict[str, np.ndarray]:
        """float16 latents, and the per-channel sums of z and z^2 (float64) for the store's mean and std."""
        z = tokenizer.encode_latents(images).float()
        zd = z.double()
        return {
            "s1": zd.sum((0, 2, 3)).cpu().numpy(),
            "s2": (zd**2).sum((0, 2, 3)).cpu().numpy(),
            "x": z.cpu().numpy().astype(np.float16),
        }

    def channels(self, x: np.ndarray) -> int:
        return int(x.shape[1])

    def add_sums(self, sums: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        sums["s1"], sums["s2"] = sums.get("s1", 0.0) + arrays["s1"], sums.get("s2", 0.0) + arrays["s2"]

    def statistics(self, sums: dict[str, Any], entries: int) -> dict[str, Any]:
        """Per-channel `latent_mean` and `latent_std` over every stored position."""
        mean = torch.from_numpy(sums["s1"] / entries)
        return {
            "latent_mean": mean.tolist(),
            "latent_std": (torch.from_numpy(sums["s2"] / entries) - mean**2).clamp_min(1e-12).sqrt().tolist(),
        }

    def entry_shape(self, grid: list[int], manifest: dict) -> tuple[int, ...]:
        return (int(manifest["latent_channels"]), *grid)


TOKEN_KINDS: dict[str, TokenKind] = {k.name: k for k in (Ids(), Latents())}


def token_kind(name: str, where: str = "kind") -> TokenKind:
    """The `TokenKind` called `name` ("ids" | "latents"); `DataError` naming `where` otherwise."""
    if name not in TOKEN_KINDS:
        raise DataError(f"{where}: kind must be one of {sorted(TOKEN_KINDS)}, got {name!r}")
    return TOKEN_KINDS[name]


def kind_of_tokenizer(tokenizer: Any) -> str:
    """ "ids" for a discrete tokenizer, "latents" for a continuous one (`TokenizerBase.is_discrete`)."""
    return "ids" if tokenizer.is_discrete else "latents"


def id_dtype(codebook_size: int) -> type:
    """The storage dtype of token ids in [0, codebook_size)."""
    return np.uint16 if codebook_size <= 65536 else np.int32


def check_fingerprint(made_by: str, expected: str, where: str, error: type[Exception] = DataError) -> None:
    """Refuse tokens made by another tokenizer than `expected` (an empty fingerprint on either side: unknown,
    accepted). `where` names the file or option; `error` is the exception type to raise."""
    if made_by and expected and made_by != expected:
        raise error(f"{where}: tokens come from tokenizer {made_by}, not from the expected tokenizer {expected}")
