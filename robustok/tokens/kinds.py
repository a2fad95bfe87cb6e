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
    """What one kind of tokens means: how a tokenizer encodes images to it and decodes it, and its storage."""

    name: str
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


TOKEN_KINDS: dict[str, TokenKind] = {k.name: k for k in (Ids(), Latents())}


def token_kind(name: str, where: str = "kind") -> TokenKind:
    """The `TokenKind` called `name` ("ids" | "latents"); `DataError` naming `where` otherwise."""
    if name not in TOKEN_KINDS:
        raise DataError(f"{where}: kind must be one of {sorted(TOKEN_KINDS)}, got {name!r}")
    return TOKEN_KINDS[name]


def kind_of_tokenizer(tokenizer: Any) -> str:
    """"ids" for a discrete tokenizer, "latents" for a continuous one (`TokenizerBase.is_discrete`)."""
    return "ids" if tokenizer.is_discrete else "latents"


def id_dtype(codebook_size: int) -> type:
    """The storage dtype of token ids in [0, codebook_size)."""
    return np.uint16 if codebook_size <= 65536 else np.int32


def check_fingerprint(made_by: str, expected: str, where: str, error: type[Exception] = DataError) -> None:
    """Refuse tokens made by another tokenizer than `expected` (an empty fingerprint on either side: unknown,
    accepted). `where` names the file or option; `error` is the exception type to raise."""
    if made_by and expected and made_by != expected:
        raise error(f"{where}: tokens come from tokenizer {made_by}, not from the expected tokenizer {expected}")
