"""LPIPS (Zhang et al. 2018), VGG16 variant, loaded from local files only.

Backbone weights: a torchvision VGG16 state dict (`features.<i>.weight/bias`, e.g. `vgg16-397923af.pth`) or an
LPIPS file that embeds it (`net.slice<k>.<i>.weight`). Linear heads: the `lpips` package's `vgg.pth`
(`lin<k>.model.1.weight`). `forward(x, y)` takes float images in [-1, 1] and returns per-image distances (B,);
it is differentiable with respect to the inputs (the network itself is frozen), so it serves as a training loss.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from robustok.errors import CheckpointError
from robustok.hf_hub import resolve_weights

# torchvision vgg16 `features` indices of the 13 convolutions; LPIPS taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CONV_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
TAP_AFTER = (2, 7, 14, 21, 28)  # feature index of the last conv before each tap
POOL_BEFORE = (5, 10, 17, 24)  # a max pool precedes these convs
TAP_CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
HOW_TO_GET = (
    "LPIPS needs two local files: the torchvision VGG16 weights (vgg16-397923af.pth, usually in "
    "~/.cache/torch/hub/checkpoints) and the lpips package's linear heads (lpips/weights/v0.1/vgg.pth). "
    "Pass them with --lpips-vgg PATH --lpips-heads PATH."
)


def _load(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    p = resolve_weights(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: {what} file not found. {HOW_TO_GET}")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure
        raise CheckpointError(f"{p}: cannot read {what} weights ({err})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{p}: {what} file is not a state dict")
    return sd


def vgg_weights(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Pick `features.<i>.weight/bias` (torchvision names; LPIPS `net.slice<k>.<i>` names are mapped)."""
    out = {}
    for key, value in sd.items():
        m = re.fullmatch(r"(?:.*\.)?(?:features|slice\d)\.(\d+)\.(weight|bias)", key)
        if m and int(m.group(1)) in CONV_INDICES:
            out[f"features.{m.group(1)}.{m.group(2)}"] = value
    missing = [f"features.{i}.{f}" for i in CONV_INDICES for f in ("weight", "bias") if f"features.{i}.{f}" not in out]
    if missing:
        raise CheckpointError(f"{source}: not a VGG16 state dict (missing {missing[:3]}...). {HOW_TO_GET}")
    return out


def head_weights(sd: dict[str, torch.Tensor], source: str) -> list[torch.Tensor]:
    """The five 1x1 linear heads (1, C, 1, 1) from `lin<k>.model.<j>.weight` (or `lins.<k>.model.<j>.weight`)."""
    heads: dict[int, torch.Tensor] = {}
    for key, value in sd.items():
        m = re.fullmatch(r"(?:.*\.)?lins?\.?(\d)\.model\.\d\.weight", key)
        if m:
            heads[int(m.group(1))] = value
    if sorted(heads) != [0, 1, 2, 3, 4]:
        raise CheckpointError(
            f"{source}: expected LPIPS heads lin0..lin4 (`lin<k>.model.1.weight`), found {sorted(heads)}. {HOW_TO_GET}"
        )
    for k, c in enumerate(TAP_CHANNELS):
        if tuple(heads[k].shape) != (1, c, 1, 1):
            raise CheckpointError(f"{source}: head lin{k} has shape {tuple(heads[k].shape)}, expected (1, {c}, 1, 1)")
    return [heads[k] for k in range(5)]


class LPIPS(nn.Module):
    """LPIPS-VGG distance: `forward(x, y)` on float [-1, 1] (B, 1|3, H, W) -> (B,)."""

    shift: torch.Tensor  # buffers
    scale: torch.Tensor

    def __init__(
        self,
        vgg_path: str | Path | None = None,
        heads_path: str | Path | None = None,
        vgg_state: dict | None = None,
        head_state: dict | None = None,
    ):
        super().__init__()
        convs = [nn.Conv2d(cin, cout, 3, padding=1) for cin, cout in zip((3,) + CONV_CHANNELS[:-1], CONV_CHANNELS)]
        self.convs = nn.ModuleList(convs)
        self.heads = nn.ParameterList(nn.Parameter(torch.zeros(1, c, 1, 1)) for c in TAP_CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        if vgg_state is None and vgg_path is not None:
            vgg_state = _load(vgg_path, "VGG16")
        if head_state is None and heads_path is not None:
            head_state = _load(heads_path, "LPIPS heads")
        if vgg_state is None or head_state is None:
            raise CheckpointError(f"LPIPS weights not given. {HOW_TO_GET}")
        vgg = vgg_weights(vgg_state, str(vgg_path or "vgg state"))
        heads = head_weights(head_state, str(heads_path or "head state"))
        with torch.no_grad():
            for conv, i in zip(convs, CONV_INDICES):
                conv.weight.copy_(vgg[f"features.{i}.weight"])
                cast(torch.Tensor, conv.bias).copy_(vgg[f"features.{i}.bias"])  # built with a bias
            for p, h in zip(self.heads, heads):
                p.copy_(h)
        self.requires_grad_(False)
        self.eval()

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for conv, i in zip(self.convs, CONV_INDICES):
            if i in POOL_BEFORE:
                x = F.max_pool2d(x, 2, 2)
            x = F.relu(conv(x))
            if i in TAP_AFTER:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        n = x.shape[0]
        feats = self.taps((torch.cat([x, y]) - self.shift) / self.scale)
        total = x.new_zeros(n)
        for f, w in zip(feats, self.heads):
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = (f[:n] - f[n:]).pow(2)
            total = total + F.conv2d(d, w).mean((1, 2, 3))
        return total
