"""Reading a training run's results without knowing the loop's file layout.

A run directory holds the exported final model (`final_model_dir(run_dir, kind)`, a `Pretrained` directory) and
intermediate checkpoints; `checkpoint_steps` lists them and `export_checkpoint` turns one into a model directory
(its EMA weights where the run kept an EMA). `train_or_resume` trains a task unless its final model exists,
continuing from the last checkpoint of an interrupted run.

    >>> from robustok.train.export import checkpoint_steps, export_checkpoint, final_model_dir
    >>> final_model_dir("runs/tok", "tokenizer")             # doctest: +SKIP
    PosixPath('runs/tok/tokenizer')
    >>> for step in checkpoint_steps("runs/tok"):            # doctest: +SKIP
    ...     export_checkpoint("runs/tok", step, Tokenizer(cfg.model), f"tokenizers/tok-{step}")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from robustok.errors import CheckpointError
from robustok.hub import WEIGHTS_NAME, Pretrained, load_state_checked, load_tensors
from robustok.train.checkpoint import checkpoint_step, list_checkpoints


def final_model_dir(run_dir: str | Path, kind: str) -> Path:
    """Where the loop exports a run's final `kind` model ("tokenizer", "generator", ...)."""
    return Path(run_dir) / kind


def is_finished(run_dir: str | Path, kind: str) -> bool:
    """True when the run's final `kind` model has been exported."""
    return (final_model_dir(run_dir, kind) / WEIGHTS_NAME).is_file()


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    """The steps of the run's complete checkpoints, oldest first."""
    return [checkpoint_step(p) for p in list_checkpoints(run_dir)]


def export_checkpoint(run_dir: str | Path, step: int, model: Pretrained, dest: str | Path, ema: bool = True) -> Path:
    """Load the step-`step` checkpoint's weights into `model` (the EMA's when `ema` and the run kept one) and
    save it as a model directory `dest`; return `dest`."""
    found = {s: p for s, p in zip(checkpoint_steps(run_dir), list_checkpoints(run_dir))}
    if step not in found:
        raise CheckpointError(f"{run_dir}: no complete checkpoint of step {step} (have: {sorted(found)})")
    path = found[step] / "ema.safetensors"
    if not (ema and path.is_file()):
        path = found[step] / "model.safetensors"
    load_state_checked(model, load_tensors(path), str(path))
    return model.save_pretrained(dest)


def train_or_resume(
    kind: str, make_task: Callable[[], Any], run: Any, cfg: Any, data: Any, full_config: Any = None
) -> Path:
    """Train the task `make_task()` builds (a `robustok.train.task.Task` of this `kind`) unless its run already
    exported the final model (then the task is not even built); an interrupted run continues from its last
    checkpoint. Returns the final model directory."""
    from robustok.train.loop import train

    if is_finished(run.dir, kind):
        return final_model_dir(run.dir, kind)
    return train(make_task(), run, cfg, data, full_config=full_config, resume=bool(list_checkpoints(run.dir)))
