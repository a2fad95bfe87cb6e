"""The contract between a stage and the one training loop (`robustok.train.loop.train`).

A stage subclasses `Task`, sets `kind`, `model` and `dataset` and implements `step`; every other member has a
default here, so the loop never probes for optional hooks.

Required:
- `kind` ("tokenizer", "generator", ...): the final model is exported to `<run.dir>/<kind>/`;
- `model`: a `robustok.hub.Pretrained` module (DDP-wrapped, EMA'd, optimised with AdamW by the loop);
- `dataset`: what `robustok.data.train_batches` reads (or override `batches`);
- `step(model, batch, step, inner) -> dict[str, Tensor]` with `"loss"` (and `"disc_loss"` with a discriminator);
  `model` is what to call forward on (maybe DDP-wrapped or compiled), `inner` the unwrapped module (for its
  attributes and methods). Every other entry is logged as a scalar.

Optional (defaults below): `disc` (a module trained by `disc_loss` with its own AdamW, `disc_lr` and
`disc_weight_decay`), `preview(model, batch)` and `preview_nrow` for sample grids, `export(directory, model)`
for extra files, `trainable_parameters()` to train a subset, `eval_every` + `evaluate(model, step)` for periodic
evaluation on every rank, `checkpoint_state()` / `load_checkpoint_state(state)` for task state a resume must
restore (tensors, numbers, strings, lists and dicts: stored in `trainer.pt`, loaded with weights_only=True),
`ema_warmup`, `eval_ema` and `batches(...)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Generic, Iterator, Optional, TypeVar

from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)


class Task(Generic[M]):
    """Base class of a training task: the optional hooks with their defaults (see the module docstring).
    `Task[Tokenizer]`: a task whose `model` (and the `inner` / `model` its hooks get) is a `Tokenizer`."""

    kind: str
    model: M
    dataset: Any = None
    disc: Optional[nn.Module] = None  # a discriminator trained on `disc_loss` (None: none)
    disc_lr: Optional[float] = None  # its learning rate (None: train.lr)
    disc_weight_decay: float = 0.0
    preview_nrow: Optional[int] = None  # images per row of the preview grid (None: save_grid's default)
    eval_every: int = 0  # steps between `evaluate` calls (0: never)
    ema_warmup: bool = True  # False: the plain EMA decay from step 0 (a model starting trained)
    eval_ema: bool = True  # False: previews, `evaluate` and the export use the online model

    def step(self, model: nn.Module, batch: Any, step: int, inner: M) -> dict[str, Tensor]:
        """One training step's losses: `{"loss": ..., ["disc_loss": ...], other scalars to log}`."""
        raise NotImplementedError(f"{type(self).__name__} must implement step(model, batch, step, inner)")

    def batches(self, batch_size: int, seed: int, rank: int, world: int, start: int, num_workers: int = 0) -> Iterator:
        """This rank's endless training batches from global step `start` (default: `train_batches(dataset)`)."""
        from robustok.data import train_batches

        return train_batches(self.dataset, batch_size, seed, rank, world, start, num_workers)

    def trainable_parameters(self) -> Optional[list[nn.Parameter]]:
        """The parameters to optimise (None: every parameter of `model` that requires grad)."""
        return None

    def preview(self, model: M, batch: Any) -> Optional[Tensor]:
        """Images (N, C, H, W) in [-1, 1] for a sample grid, or None for no grid."""
        return None

    def evaluate(self, model: M, step: int) -> dict[str, float]:
        """Scalars to log every `eval_every` steps (called on every rank)."""
        return {}

    def checkpoint_state(self) -> Optional[dict]:
        """Task state a resume must restore (None: nothing)."""
        return None

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore what `checkpoint_state` returned."""

    def export(self, directory: Path, model: M) -> None:
        """Save extra files beside the exported model."""
