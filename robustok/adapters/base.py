"""Shared machinery of the off-the-shelf tokenizer adapters.

`ExternalTokenizer` implements robustok's tokenizer protocol (the one of `robustok.tokenizer.model.Tokenizer`:
encode/lookup/decode, codebook, latents, training forward, frozen parts) on top of three per-family hooks:
`_pre_quant(x)` (images in [-1, 1] -> raw pre-quantisation latents), `decode_codes(z)` (code vectors ->
images in [-1, 1]) and the `grid_size` property. `ExternalVQ` is a plain nearest-neighbour codebook without
buffers or dead-code restarts, so a frozen codebook stays bit-identical in post-training.

`read_checkpoint` opens an original weight file safely (safetensors, or `torch.load(weights_only=True)` with
`argparse.Namespace` as the only extra allowed class, because the LlamaGen/RobusTok training scripts store
their argparse arguments next to the weights) and `convert_state` maps its keys onto an adapter with strict
checks.
"""
from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustok.errors import CheckpointError, ConfigError
from robustok.hub import Pretrained, load_state_checked, load_tensors
from robustok.tokenizer.model import TokenizerOutput


# --------------------------------------------------------------------------------------------------------
# checkpoint files
# --------------------------------------------------------------------------------------------------------
def _torch_load_safe(path: Path) -> Any:
    """`torch.load(weights_only=True)`, allowing `argparse.Namespace` (training args stored beside weights)."""
    ctx = getattr(torch.serialization, "safe_globals", None)
    try:
        if ctx is not None:
            with ctx([argparse.Namespace]):
                return torch.load(str(path), map_location="cpu", weights_only=True)
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        msg = str(err)
        if "Unsupported operand" in msg or "WeightsUnpickler" not in msg and "Unsupported global" not in msg:
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (invalid pickle data: "
                                  f"{msg.splitlines()[0][:200]})") from None
        m = re.search(r"Unsupported global: GLOBAL \S+", msg) or re.search(r"WeightsUnpickler error: [^\n.]+", msg)
        detail = m.group(0) if m else msg.splitlines()[0][:200]
        raise CheckpointError(
            f"{path}: refused to load: the file needs full unpickling ({detail}); only weights-only "
            "checkpoints (tensors, plain containers, argparse.Namespace) or safetensors files are accepted. "
            "If you trust the file, re-save just its state dict as safetensors") from None
    except (RuntimeError, OSError, EOFError, ValueError, AttributeError, ImportError, KeyError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from None


def read_checkpoint(path: str | Path, entry: Optional[str] = None,
                    entries: tuple[str, ...] = ("model",)) -> tuple[dict[str, Tensor], str]:
    """Read a state dict from an original weight file. Returns `(state, description of where it came from)`.

    `.safetensors` files are read directly. Pickled files (`.pt`, `.bin`, `.pth`, ...) go through
    `torch.load(weights_only=True)`; if the object is a dict of dicts, `entry` (or the first of `entries`
    present) selects the state dict, e.g. "ema" or "model" of a training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        obj: Any = load_tensors(path)
    else:
        obj = _torch_load_safe(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict or checkpoint dict")
    where = str(path)
    if entry is not None:
        if entry not in obj or not isinstance(obj[entry], dict):
            raise CheckpointError(f"{path}: has no state dict under {entry!r} (top-level keys: "
                                  f"{sorted(map(str, obj))[:8]})")
        obj, where = obj[entry], f"{path}[{entry!r}]"
    elif not all(isinstance(v, Tensor) for v in obj.values()):   # a training checkpoint, not a bare state dict
        pick = next((e for e in entries if isinstance(obj.get(e), dict)), None)
        if pick is None:
            raise CheckpointError(f"{path}: a checkpoint dict without any of the entries {list(entries)} "
                                  f"(top-level keys: {sorted(map(str, obj))[:8]})")
        obj, where = obj[pick], f"{path}[{pick!r}]"
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad or not obj:
        raise CheckpointError(f"{where}: not a state dict of tensors (e.g. {bad[:3]!r})" if bad
                              else f"{where}: empty state dict")
    return dict(obj), where


def check_kind(state: dict[str, Tensor], source: str, family: str, signature: tuple[str, ...]) -> None:
    """Raise if `state` lacks a key that every original checkpoint of `family` has."""
    missing = [s for s in signature if s not in state]
    if missing:
        sample = sorted(state)[:4]
        raise CheckpointError(f"{source}: not a {family} checkpoint (no {missing[0]!r}; it has keys like {sample})")


def convert_state(module: nn.Module, state: dict[str, Tensor], source: str, *,
                  rename: tuple[tuple[str, str], ...] = (),
                  ignore_prefixes: tuple[str, ...] = (), aux: Optional[dict[str, Optional[Tensor]]] = None,
                  ) -> list[str]:
    """Map an original state dict onto `module` and load it strictly. Returns the ignored keys.

    - `rename`: (old prefix, new prefix) pairs, applied in order to the first match.
    - `ignore_prefixes`: training-only parts that inference does not use (dropped, reported back).
    - `aux`: auxiliary buffers of the original (usage counters, index buffers): key -> expected value (checked
      when not None) or None (any value); dropped when present, never required.
    Every other key must match the module's state dict exactly (names and shapes).
    """
    out: dict[str, Tensor] = {}
    ignored: list[str] = []
    for k, v in state.items():
        if any(k.startswith(p) for p in ignore_prefixes):
            ignored.append(k)
            continue
        for old, new in rename:
            if k.startswith(old):
                k = new + k[len(old):]
                break
        if k in out:
            raise CheckpointError(f"{source}: key {k!r} occurs twice after renaming (old and new key names mixed?)")
        out[k] = v
    for k, expect in (aux or {}).items():
        if k in out:
            v = out.pop(k)
            if expect is not None and (v.shape != expect.shape or not torch.equal(v.to(expect.dtype), expect)):
                raise CheckpointError(f"{source}: buffer {k!r} {tuple(v.shape)} differs from the layout this "
                                      f"adapter assumes {tuple(expect.shape)}: is the config (token counts) right?")
            ignored.append(k)
    load_state_checked(module, out, source)
    return ignored


# --------------------------------------------------------------------------------------------------------
# quantiser
# --------------------------------------------------------------------------------------------------------
class ExternalVQ(nn.Module):
    """K x d codebook `embedding` with nearest-neighbour lookup (squared L2; cosine when `l2_norm`).

    No buffers and no dead-code restarts: the only state is `embedding.weight`.
    """

    def __init__(self, codebook_size: int, dim: int, l2_norm: bool, commit_weight: float = 0.25):
        super().__init__()
        self.codebook_size, self.dim, self.l2_norm, self.commit_weight = codebook_size, dim, l2_norm, commit_weight
        self.embedding = nn.Embedding(codebook_size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    @property
    def codebook(self) -> Tensor:
        w = self.embedding.weight
        return F.normalize(w, dim=1) if self.l2_norm else w

    def normalize(self, z: Tensor) -> Tensor:
        return F.normalize(z, dim=1) if self.l2_norm else z

    def nearest(self, z_flat: Tensor) -> Tensor:
        e, z_flat = self.codebook.float(), z_flat.float()
        d = z_flat.pow(2).sum(1, keepdim=True) - 2 * z_flat @ e.t() + e.pow(2).sum(1)[None]
        return d.argmin(1)

    def lookup(self, ids: Tensor) -> Tensor:
        """ids (B, h, w) -> code vectors (B, d, h, w); ids outside [0, K) are an error."""
        if ids.is_floating_point():
            raise ValueError(f"token ids must be integers, got {ids.dtype}")
        ids = ids.long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise ValueError(f"token ids must lie in [0, {self.codebook_size}); got range "
                             f"[{int(ids.min())}, {int(ids.max())}]")
        return F.embedding(ids, self.codebook).permute(0, 3, 1, 2).contiguous()

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Raw latents (B, d, h, w) -> (straight-through code vectors, ids (B, h, w), losses and stats)."""
        z = self.normalize(h.float())
        b, d, hh, ww = z.shape
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        ids = self.nearest(z_flat.detach())
        z_q = self.codebook[ids].view(b, hh, ww, d).permute(0, 3, 1, 2)
        counts = torch.bincount(ids, minlength=self.codebook_size).float()
        probs = counts / counts.sum().clamp_min(1)
        aux = {"vq": F.mse_loss(z_q, z.detach()), "commit": self.commit_weight * F.mse_loss(z, z_q.detach()),
               "perplexity": torch.exp(-(probs * probs.clamp_min(1e-10).log()).sum()),
               "batch_usage": (counts > 0).float().mean()}
        return z + (z_q - z).detach(), ids.view(b, hh, ww), aux


# --------------------------------------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------------------------------------
class ExternalTokenizer(Pretrained):
    """Base of the adapters: robustok's tokenizer protocol over `_pre_quant` / `decode_codes` / `grid_size`.

    Subclasses set `family` (a readable name), `frozen_prefixes`, and build `self.quantizer` (an `ExternalVQ`,
    or None for a continuous model). Images are float in [-1, 1], (B, 3, H, W).
    """

    family: ClassVar[str] = "external"
    signature: ClassVar[tuple[str, ...]] = ()      # original key names every checkpoint of the family has
    frozen_prefixes: ClassVar[tuple[str, ...]] = ()
    quantizer: Optional[ExternalVQ]

    # --- hooks ------------------------------------------------------------------------------------------
    def _pre_quant(self, x: Tensor) -> Tensor:
        """Images [-1, 1] -> raw pre-quantisation latents (B, d, h, w), before any normalisation."""
        raise NotImplementedError

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

    # --- conversion of original files -------------------------------------------------------------------
    @classmethod
    def infer_config(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        """Config fields that can be read off the tensor shapes of an original state dict."""
        return {}

    def load_original(self, state: dict[str, Tensor], source: str) -> list[str]:
        """Load an original (upstream-named) state dict strictly; returns the ignored training-only keys."""
        raise NotImplementedError

    # --- protocol ---------------------------------------------------------------------------------------
    def frozen_part_names(self) -> list[str]:
        """State-dict prefixes of the encoding side (frozen in post-training)."""
        return list(self.frozen_prefixes)

    @property
    def is_discrete(self) -> bool:
        return self.quantizer is not None

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size if self.quantizer is not None else 0

    def _discrete(self, what: str) -> ExternalVQ:
        if self.quantizer is None:
            raise ConfigError(f"{type(self).__name__} is a continuous tokenizer: {what} needs discrete tokens; use "
                              "encode_latents() / decode_latents()")
        return self.quantizer

    @property
    def codebook(self) -> Tensor:
        """(K, d) code vectors as used for lookup (l2-normalised where the model normalises)."""
        return self._discrete("codebook").codebook

    def _check_images(self, x: Tensor) -> None:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.channels or x.shape[2] != c.image_size or x.shape[3] != c.image_size:
            raise ValueError(f"expected images (B, {c.channels}, {c.image_size}, {c.image_size}), got "
                             f"{tuple(x.shape)}")

    def encode_latents(self, x: Tensor) -> Tensor:
        """Pre-quantisation latents (B, d, h, w), normalised as the model does before the lookup (float32)."""
        self._check_images(x)
        h = self._pre_quant(x).float()
        return self.quantizer.normalize(h) if self.quantizer is not None else h

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Raw latents -> (straight-through code vectors, ids (B, h, w), losses/stats)."""
        return self._discrete("quantize()")(z)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Images [-1, 1] (B, 3, H, W) -> token ids (B, h, w) long."""
        q = self._discrete("encode()")
        z = self.encode_latents(x)
        b, d, h, w = z.shape
        return q.nearest(z.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)

    def lookup(self, ids: Tensor) -> Tensor:
        """Token ids (B, h, w) or (B, h*w) -> code vectors (B, d, h, w)."""
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
        """Token ids -> images in [-1, 1] (clamped)."""
        return self.decode_codes(self.lookup(ids)).clamp(-1, 1)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Encode and decode (clean), clamped to [-1, 1]."""
        if self.quantizer is None:
            return self.decode_latents(self.encode_latents(x)).clamp(-1, 1)
        return self.decode(self.encode(x))

    def forward(self, x: Tensor, perturb: Optional[dict] = None,
                generator: Optional[torch.Generator] = None) -> TokenizerOutput:
        """Training forward like robustok's Tokenizer: VQ/commit losses on the clean code; `perturb`
        ({beta, alpha, delta, neighbours}) replaces tokens of some images by near codes in training mode only.
        """
        if not self.training:
            perturb = None
        from robustok.tokenizer.perturbation import perturb_codes_st

        q = self._discrete("forward()")
        self._check_images(x)
        h = self._pre_quant(x).float()
        z_q, ids, aux = q(h)
        losses = {"vq": aux.pop("vq"), "commit": aux.pop("commit")}
        stats: dict[str, Tensor] = dict(aux)
        z_dec = z_q
        if perturb is not None and perturb.get("beta", 0) > 0 and perturb.get("alpha", 0) > 0:
            z = q.normalize(h)
            z_dec, new_ids, mask = perturb_codes_st(z, ids, q.codebook, perturb["beta"], perturb["alpha"],
                                                    perturb["delta"], perturb.get("neighbours", "code"), generator)
            stats["perturbed_images"] = mask.float().mean()
            stats["changed_tokens"] = (new_ids != ids).float().mean()
        return TokenizerOutput(self.decode_codes(z_dec), ids, losses, stats)


def check_channels(config: Any, name: str) -> None:
    if config.channels != 3:
        raise ConfigError(f"{name}: channels must be 3 (RGB), got {config.channels}")
    if config.image_size < 1:
        raise ConfigError(f"{name}: image_size must be positive, got {config.image_size}")


def level_indices(state: dict[str, Tensor], prefix: str) -> list[int]:
    """Sorted integer indices i of keys `prefix{i}.…` in `state`."""
    found = set()
    for k in state:
        if k.startswith(prefix):
            head = k[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)
