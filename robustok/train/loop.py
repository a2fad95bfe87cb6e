"""The one training loop. A stage supplies a `Task`; the loop owns everything else.

A task provides:
- `kind` ("tokenizer", "generator", ...): the final model is exported to `<run.dir>/<kind>/`;
- `model`: a `robustok.hub.Pretrained` module (DDP-wrapped, EMA'd, optimised with AdamW);
- `dataset`: what `robustok.data.train_batches` reads (or override `batches(...)`);
- `step(model, batch, step) -> dict[str, Tensor]` with `"loss"` (and `"disc_loss"` if it has a discriminator);
  every other entry is logged as a scalar;
- optional: `disc` (a module trained by `disc_loss` with its own AdamW: `disc_lr`, `disc_weight_decay`),
  `preview(model, batch) -> images` for sample grids, `export(directory, model)` to save extra files,
  `trainable_parameters()` to train a subset of `model`'s parameters, `eval_every` + `evaluate(model, step)
  -> dict` for periodic evaluation, called on every rank (logged; the task may keep its best model),
  `checkpoint_state() -> dict` / `load_checkpoint_state(dict)` for task state that a resume must restore
  (tensors, numbers, strings, lists and dicts: it is stored in `trainer.pt`, loaded with weights_only=True),
  `ema_warmup` (default True: `ema_decay_at`'s warm-up; False: the plain decay from step 0, for a model that
  starts from trained weights) and `eval_ema` (default True: previews, `evaluate` and the export use the EMA
  when there is one; False: the online model).

The loop owns: torch.distributed (torchrun; DDP on the model, averaged gradients for the discriminator),
bf16 autocast on CUDA, gradient clipping, warm-up + cosine learning rate (a function of the step), EMA, per-step seeding (so `--resume` gives
the same subsequent losses), atomic checkpoints, metrics.jsonl + TensorBoard, a tqdm bar, sample grids, and a
lock on `run.dir` (one run at a time). Only finite weights are checkpointed; rows logged after the checkpoint a
run resumes from are dropped from the logs.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from robustok.config import DataConfig, RunConfig, TrainConfig, save_config
from robustok.data import train_batches
from robustok.errors import CheckpointError, ConfigError, RobustokError
from robustok.train import dist as rdist
from robustok.train.checkpoint import (clean_stale, last_finite_checkpoint, latest_checkpoint, load_checkpoint,
                                       prune, save_checkpoint)
from robustok.train.estimate import ThroughputProbe
from robustok.train.faults import fault_point
from robustok.train.lock import run_lock
from robustok.train.reproducible import make_deterministic
from robustok.train.logging import MetricsLogger, save_grid


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to `min_ratio` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def step_seed(seed: int, step: int, rank: int) -> int:
    """The RNG seed of one step on one rank: resuming at step s replays exactly the same randomness."""
    return (seed * 1_000_003 + step * 4099 + rank * 7919) % (2**63 - 1)


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with warm-up, min(decay, (1 + step) / (10 + step)): early averages are not dominated by the
    random initialisation (with a plain 0.999, 67% of the step-400 average would still be the init)."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _autocast(cfg: TrainConfig, device: torch.device):
    use = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
    if cfg.amp not in ("auto", "bf16", "off"):
        raise RobustokError(f"train.amp must be auto, bf16 or off, got {cfg.amp!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use else contextlib.nullcontext()


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(
        np.frombuffer(np.random.get_state()[1].tobytes(), dtype=np.uint8).copy())}


def train(task: Any, run: RunConfig, cfg: TrainConfig, data: DataConfig, full_config: Any = None,
          resume: bool = False) -> Path:
    """Run `cfg.steps` optimisation steps of `task`; return the exported model directory."""
    if cfg.steps < 1:
        raise ConfigError(f"train.steps must be at least 1, got {cfg.steps}")
    info = rdist.setup()
    if run.deterministic:
        make_deterministic()
    with run_lock(run.dir, enabled=info.is_main):
        return _train_locked(task, run, cfg, data, full_config, resume, info)


def _restore(task: Any, run_dir: Path, modules: dict[str, nn.Module], opts: dict[str, Any], resume: bool,
             keep: int, info: rdist.DistInfo) -> int:
    """Refuse to overwrite an existing run without `resume`; load the latest checkpoint; return its step."""
    if info.is_main:
        clean_stale(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if not resume:
        if ckpt is not None:
            raise RobustokError(f"{run_dir} already holds checkpoints ({ckpt.name}); pass --resume to continue "
                                "that run, or choose a new run.dir (nothing was overwritten)")
        return 0
    if ckpt is None:
        if info.is_main:
            print(f"--resume: no checkpoint in {run_dir / 'checkpoints'}; starting from step 0")
        return 0
    state = load_checkpoint(ckpt, modules)
    for key, o in opts.items():
        if o is not None and key in state:
            o.load_state_dict(state[key])
    if hasattr(task, "load_checkpoint_state") and "task" in state:
        task.load_checkpoint_state(state["task"])
    if info.is_main:
        prune(run_dir, keep)  # a run killed between saving a checkpoint and pruning the old ones
        print(f"resumed from {ckpt} (step {int(state['step'])})")
    return int(state["step"])


def _diverged(run_dir: Path, what: str, step: int, out: dict) -> RobustokError:
    values = {k: float(v.detach().float().mean()) if torch.is_tensor(v) else v for k, v in out.items()}
    return RobustokError(f"{what} at step {step} ({values}); nothing was saved for this step; last good (finite) "
                         f"checkpoint: {last_finite_checkpoint(run_dir)}. Lower train.lr or check the data.")


def _save(task: Any, run: RunConfig, run_dir: Path, done: int, modules: dict[str, nn.Module],
          opts: dict[str, Any]) -> None:
    state = {"step": done, "rng": _rng_state(), **{k: o.state_dict() for k, o in opts.items() if o is not None}}
    if hasattr(task, "checkpoint_state"):
        state["task"] = task.checkpoint_state()
    try:
        save_checkpoint(run_dir, done, modules, state, run.keep_checkpoints)
    except CheckpointError as err:
        raise RobustokError(f"training diverged: {err}; last good (finite) checkpoint: "
                            f"{last_finite_checkpoint(run_dir)}. Lower train.lr or check the data.") from None


def _optimisers(task: Any, model: nn.Module, disc: Optional[nn.Module], cfg: TrainConfig):
    """The trained parameters, AdamW for them (and for the discriminator, if any)."""
    params = list(task.trainable_parameters()) if hasattr(task, "trainable_parameters") else \
        [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    disc_opt = None
    if disc is not None:
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=getattr(task, "disc_lr", cfg.lr), betas=tuple(cfg.betas),
                                     weight_decay=getattr(task, "disc_weight_decay", 0.0))
    return params, opt, disc_opt


def _train_locked(task: Any, run: RunConfig, cfg: TrainConfig, data: DataConfig, full_config: Any, resume: bool,
                  info: rdist.DistInfo) -> Path:
    device = info.device
    run_dir = Path(run.dir)
    model: nn.Module = task.model.to(device)
    disc: Optional[nn.Module] = getattr(task, "disc", None)
    if disc is not None:
        disc.to(device)
    params, opt, disc_opt = _optimisers(task, model, disc, cfg)
    min_ratio = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
    base_lrs = [(o, o.param_groups[0]["lr"]) for o in (opt, disc_opt) if o is not None]
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
    ema_warmup = getattr(task, "ema_warmup", True)
    shown = ema if ema is not None and getattr(task, "eval_ema", True) else model  # previews, evaluation, export

    modules = {"model": model, **({"ema": ema} if ema is not None else {}), **({"disc": disc} if disc else {})}
    opts = {"opt": opt, "disc_opt": disc_opt}
    start = _restore(task, run_dir, modules, opts, resume, run.keep_checkpoints, info)
    if info.is_main and full_config is not None:  # only now: a refused run leaves the folder as it was
        save_config(full_config, run_dir / "config.yaml")
    if start >= cfg.steps:
        if info.is_main:
            print(f"nothing to do: already at step {start} of {cfg.steps}")
        return _export(task, shown, run_dir, info)

    wrapped: nn.Module = model
    if info.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                      else None)
    forward_model = torch.compile(wrapped) if cfg.compile else wrapped
    batches = (task.batches(data.batch_size, run.seed, info.rank, info.world, start)
               if hasattr(task, "batches") else
               train_batches(task.dataset, data.batch_size, run.seed, info.rank, info.world, start,
                             data.num_workers))
    batches = ThroughputProbe(cfg.steps, start, device, info.world, enabled=info.is_main).wrap(batches)
    logger = MetricsLogger(run_dir, enabled=info.is_main, start_step=start)
    bar = tqdm(total=cfg.steps, initial=start, disable=not (info.is_main and run.progress), dynamic_ncols=True,
               desc=f"train {task.kind}")
    acc: dict[str, float] = {}
    n_acc, t0, images = 0, time.time(), 0
    model.train()
    for step in range(start, cfg.steps):
        torch.manual_seed(step_seed(run.seed, step, info.rank))
        factor = lr_factor(step, cfg.warmup_steps, cfg.steps, min_ratio)
        for o, base in base_lrs:
            for group in o.param_groups:
                group["lr"] = base * factor
        batch = [b.to(device, non_blocking=True) if torch.is_tensor(b) else b for b in next(batches)]
        with _autocast(cfg, device):
            out = task.step(forward_model, batch, step)
        loss = out["loss"]
        if not torch.isfinite(loss.detach()).all():
            raise _diverged(run_dir, "non-finite loss", step, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        if not torch.isfinite(grad_norm):  # the update would write NaN/inf into the weights
            raise _diverged(run_dir, "non-finite gradient", step, out)
        opt.step()
        if disc is not None and "disc_loss" in out:
            _disc_update(disc, disc_opt, out["disc_loss"], cfg.grad_clip)
        if ema is not None:
            update_ema(ema, model, ema_decay_at(step, cfg.ema_decay) if ema_warmup else cfg.ema_decay)
        images += batch[0].shape[0] * info.world
        for k, v in out.items():
            acc[k] = acc.get(k, 0.0) + (float(v.detach().float().mean()) if torch.is_tensor(v) else float(v))
        acc["grad_norm"] = acc.get("grad_norm", 0.0) + float(grad_norm)
        n_acc += 1
        bar.update(1)
        done = step + 1
        if done % run.log_every == 0 or done == cfg.steps:
            values = rdist.mean_over_ranks({k: v / n_acc for k, v in acc.items()}, device)
            dt = time.time() - t0
            values.update(lr=opt.param_groups[0]["lr"], images_per_s=images / max(dt, 1e-9))
            logger.log(done, values)
            bar.set_postfix(loss=f"{values['loss']:.4f}", img_s=f"{values['images_per_s']:.0f}")
            acc, n_acc, t0, images = {}, 0, time.time(), 0
        if info.is_main and run.sample_every > 0 and (done % run.sample_every == 0 or done == cfg.steps) \
                and hasattr(task, "preview"):
            _preview(task, shown, batch, run_dir / "samples" / f"step-{done:07d}.png")
        eval_every = getattr(task, "eval_every", 0)
        if eval_every and (done % eval_every == 0 or done == cfg.steps):
            values = task.evaluate(shown, done)  # every rank: its shard
            logger.log(done, values)
        if (run.ckpt_every > 0 and done % run.ckpt_every == 0) or done == cfg.steps:
            rdist.barrier()
            if info.is_main:
                _save(task, run, run_dir, done, modules, opts)
            rdist.barrier()
        fault_point("step")
    bar.close()
    logger.close()
    return _export(task, shown, run_dir, info)


def _disc_update(disc: nn.Module, disc_opt: torch.optim.Optimizer, disc_loss: torch.Tensor, clip: float) -> None:
    disc_opt.zero_grad(set_to_none=True)
    if disc_loss.requires_grad:
        disc_loss.backward()
        rdist.average_gradients(disc.parameters())
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(disc.parameters(), clip)
        disc_opt.step()


def _preview(task: Any, model: nn.Module, batch: Any, path: Path) -> None:
    with torch.no_grad():
        grid = task.preview(model, batch)
    if grid is not None:
        save_grid(grid, path, nrow=getattr(task, "preview_nrow", None), scale=2 if grid.shape[-1] <= 64 else 1)


def _export(task: Any, final: nn.Module, run_dir: Path, info: rdist.DistInfo) -> Path:
    """Save the final weights (the EMA if enabled, unless the task's `eval_ema` is False) to `<run_dir>/<kind>/`
    and any task extras."""
    out = run_dir / task.kind
    if info.is_main:
        final.save_pretrained(out)
        fault_point("export")
        if hasattr(task, "export"):
            task.export(out, final)
    rdist.barrier()
    return out
