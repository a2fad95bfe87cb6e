"""Semantic regularisation with a frozen DINOv2 teacher: a symmetric CLIP-style InfoNCE between tokenizer
latents and the teacher's global feature (RobusTok's L_sem; docs/method.md §1).

As in the authors' code: teacher = the final-norm **cls** feature of a frozen DINOv2 ViT-B re-gridded to the
tokenizer's resolution and patch size (input renormalised to ImageNet mean/std), projected by the tokenizer's
own trainable `quant_conv` (so the teacher width must equal `model.hidden_dim`); student = the spatial mean of
the decoder-input latents (quantised, and perturbed where perturbation applies). The loss is the mean of the
two cross-entropies of `logit_scale * s @ t.T` over the **global** batch (all-gather with gradients under
torch.distributed), `logit_scale` 1 and no feature normalisation by default (`clip_norm: false` upstream).
Losses are registered by name in `SEMANTIC_LOSSES` (`loss.semantic`).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustok.errors import ConfigError
from robustok.losses.frozen_vit import FrozenViT, load_frozen_vit

HOW_TO_GET = (
    "The semantic loss needs DINOv2 ViT-B/14 weights as a local file with timm key names, e.g. timm's "
    "vit_base_patch14_dinov2.lvd142m model.safetensors or dinov2_vitb14_pretrain.pth from the "
    "facebookresearch/dinov2 release; set loss.semantic_checkpoint=PATH (or loss.semantic=none)."
)


def _gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """(all ranks' rows concatenated, this rank's row offset); identity without torch.distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0), dist.get_rank() * x.shape[0]


def clip_infonce(student: Tensor, teacher: Tensor, logit_scale: float = 1.0, normalize: bool = False) -> Tensor:
    """Symmetric InfoNCE: row i of `student` (B, d) should match row i of `teacher` (B, d) among the global batch."""
    if student.shape != teacher.shape:
        raise ConfigError(
            f"semantic loss: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} features differ in shape"
        )
    s, t = student.float(), teacher.float()
    if normalize:
        s, t = F.normalize(s, dim=-1), F.normalize(t, dim=-1)
    all_s, offset = _gather_with_grad(s)
    all_t, _ = _gather_with_grad(t)
    labels = torch.arange(s.shape[0], device=s.device) + offset
    return 0.5 * (
        F.cross_entropy(logit_scale * s @ all_t.T, labels) + F.cross_entropy(logit_scale * t @ all_s.T, labels)
    )


class DinoSemanticLoss(nn.Module):
    """`weight * InfoNCE(mean_hw(latents), project(teacher_cls(x)))`; the teacher is frozen."""

    def __init__(self, teacher: FrozenViT, weight: float = 0.1, logit_scale: float = 1.0, normalize: bool = False):
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.weight, self.logit_scale, self.normalize = weight, logit_scale, normalize

    @property
    def dim(self) -> int:
        return self.teacher.dim

    def train(self, mode: bool = True) -> "DinoSemanticLoss":
        return super().train(False)  # the teacher always runs in eval mode

    def forward(self, x: Tensor, latents: Tensor, project: Callable[[Tensor], Tensor]) -> Tensor:
        """x: images in [-1, 1]; latents: decoder-input latents (B, d, h, w); project: (B, D, 1, 1) -> (B, d, 1, 1)."""
        size = self.teacher.image_size
        with torch.no_grad():
            img = x.float()
            if img.shape[1] == 1:
                img = img.expand(-1, 3, -1, -1)
            if img.shape[-1] != size or img.shape[-2] != size:
                img = F.interpolate(img, size=(size, size), mode="bicubic", align_corners=False)
            cls = self.teacher.cls_feature(img)
        t = project(cls[:, :, None, None].to(latents.dtype)).flatten(1)
        s = latents.mean(dim=(2, 3))
        return self.weight * clip_infonce(s, t, self.logit_scale, self.normalize)


def _dinov2(lc: Any, image_size: int, patch: int) -> nn.Module:
    teacher = load_frozen_vit(lc.semantic_checkpoint, image_size, patch, "semantic DINOv2 teacher", HOW_TO_GET)
    return DinoSemanticLoss(teacher, lc.semantic_weight, lc.semantic_logit_scale, lc.semantic_normalize)


SEMANTIC_LOSSES: dict[str, Callable[[Any, int, int], nn.Module]] = {"dinov2": _dinov2}


def build_semantic(lc: Any, image_size: int, patch: int) -> Optional[nn.Module]:
    """The semantic loss named by `lc.semantic` ('none': None), its teacher re-gridded to image_size / patch."""
    if lc.semantic == "none" or lc.semantic_weight == 0:
        return None
    if lc.semantic not in SEMANTIC_LOSSES:
        raise ConfigError(
            f"loss.semantic: unknown semantic loss {lc.semantic!r}; choose from {['none', *sorted(SEMANTIC_LOSSES)]}"
        )
    return SEMANTIC_LOSSES[lc.semantic](lc, image_size, patch)
