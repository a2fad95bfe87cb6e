"""Perceptual loss by name (`loss.perceptual`): none, lpips (LPIPS-VGG from the user's weight files) or aux.

Offline, the embedded default trains without a perceptual term: no pretrained network can be downloaded, and
using the FID feature network (Inception, or the project's Fashion-MNIST classifier) as a training loss would
bias exactly the FID it is judged by. With `loss.perceptual=lpips`, give `loss.lpips_vgg` (torchvision VGG16
weights) and `loss.lpips_lin` (the LPIPS linear heads, e.g. `vgg.pth` from the `lpips` package). With
`loss.perceptual=aux`, give `loss.aux_perceptual_weights`: a small network trained here on another objective than
the FID network (`robustok.losses.aux_perceptual`).
"""

from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor, nn

from robustok.errors import ConfigError


def _lpips(vgg_path: Optional[str], lin_path: Optional[str], aux_path: Optional[str]) -> nn.Module:
    from robustok.metrics.lpips import LPIPS

    return LPIPS(vgg_path, lin_path)  # frozen, eval mode, differentiable w.r.t. its inputs


def _aux(vgg_path: Optional[str], lin_path: Optional[str], aux_path: Optional[str]) -> nn.Module:
    from robustok.losses.aux_perceptual import load_aux_perceptual

    return load_aux_perceptual(aux_path)


PERCEPTUALS: dict[str, Callable[[Optional[str], Optional[str], Optional[str]], nn.Module]] = {
    "lpips": _lpips,
    "aux": _aux,
}


def build_perceptual(
    kind: str, vgg_path: Optional[str] = None, lin_path: Optional[str] = None, aux_path: Optional[str] = None
) -> Optional[nn.Module]:
    """Return a module `f(x, y) -> per-image distance` (float [-1,1] images), or None for `kind="none"`."""
    if kind == "none":
        return None
    if kind not in PERCEPTUALS:
        raise ConfigError(f"loss.perceptual must be one of {['none', *sorted(PERCEPTUALS)]}, got {kind!r}")
    return PERCEPTUALS[kind](vgg_path, lin_path, aux_path)


def perceptual_distance(net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Mean perceptual distance over the batch (gray images are handled by the network)."""
    return net(x, y).mean()
