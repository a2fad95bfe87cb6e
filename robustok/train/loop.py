"""The one training loop. A stage supplies a `robustok.train.task.Task`; the loop owns everything else.

The task contract (required members, optional hooks and their defaults) is stated in `robustok.train.task`.
The loop owns: torch.distributed (torchrun; DDP on the model, averaged gradients for the discriminator),
the precision (`train.amp`: fp32 | bf16 autocast | auto, see `robustok.train.precision`; printed at the start,
recorded in config.yaml), gradient clipping, warm-up + cosine learning rate (a function of the step), EMA,
per-step seeding (so `--resume` gives the same subsequent losses; no RNG state needs saving; data order and
augmentation derive from the step too), atomic checkpoints holding each rank's own buffers under torchrun,
metrics.jsonl + TensorBoard, a tqdm bar, sample grids, and a lock on `run.dir` (one run at a time). Only finite
weights are checkpointed; rows logged after the checkpoint a run resumes from are dropped from the logs.
The final model goes to `<run.dir>/<kind>/` (`robustok.train.export` reads runs without knowing this layout).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, cast

import torch
from torch import nn
from tqdm import tqdm

from robustok import distributed as rdist
from robustok.config import BatchOptions, RunConfig, TrainConfig, save_config
from robustok.errors import CheckpointError, ConfigError, RobustokError
from robustok.hub import Pretrained
from robustok.seeding import step_seed
from robustok.train.checkpoint import (
    clean_stale,
    last_finite_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    load_rank_buffers,
    prune,
    rank_buffers,
    save_checkpoint,
)
from robustok.train.estimate import ThroughputProbe
from robustok.train.faults import fault_point
from robustok.train.lock import run_lock
from robustok.train.logging import MetricsLogger, save_grid
from robustok.train.precision import autocast, resolve_precision
from robustok.train.reproducible import make_deterministic
from robustok.train.task import Task


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to `min_ratio` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with warm-up, min(decay, (1 + step) / (10 + step)): early averages are not dominated by the
    random initialisation (with a plain 0.999, 67% of the step-400 average would still be the init)."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for eb, b in zip(ema.buffers(), model.buffers()):
        eb.copy_(b)


def train(
    task: Task,
    run: RunConfig,
    cfg: TrainConfig,
    data: BatchOptions,
    full_config: Any = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Run `cfg.steps` optimisation steps of `task`; return the exported model directory. `log` takes the
    main rank's status lines (precision, resume); metrics go to the run's logger."""
    if not isinstance(task, Task):
        raise TypeError(f"train(): the task must subclass robustok.train.task.Task, got {type(task).__name__}")
    if cfg.steps < 1:
        raise ConfigError(f"train.steps must be at least 1, got {cfg.steps}")
    info = rdist.setup()
    if run.deterministic:
        make_deterministic()
    with run_lock(run.dir, enabled=info.is_main):
        return _train_locked(task, run, cfg, data, full_config, resume, info, log)


def _restore(
    task: Task,
    run_dir: Path,
    modules: dict[str, nn.Module],
    opts: dict[str, Any],
    resume: bool,
    keep: int,
    info: rdist.DistInfo,
    log: Callable[[str], None],
) -> int:
    """Refuse to overwrite an existing run without `resume`; load the latest checkpoint; return its step.

    Checkpoints of earlier versions also hold an `rng` entry; it is not needed (every step reseeds) and ignored.
    """
    if info.is_main:
        clean_stale(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if not resume:
        if ckpt is not None:
            raise RobustokError(
                f"{run_dir} already holds checkpoints ({ckpt.name}); pass --resume to continue "
                "that run, or choose a new run.dir (nothing was overwritten)"
            )
        return 0
    if ckpt is None:
        if info.is_main:
            log(f"--resume: no checkpoint in {run_dir / 'checkpoints'}; starting from step 0")
        return 0
    state = load_checkpoint(ckpt, modules)
    if info.rank > 0 and not load_rank_buffers(ckpt, modules, info.rank):
        print(
            f"note: {ckpt} holds no state of rank {info.rank} (saved by another number of processes or an "
            "earlier version): this rank continues from rank 0's buffers, not bitwise as an uninterrupted run",
            file=sys.stderr,
        )
    for key, o in opts.items():
        if o is not None and key in state:
            o.load_state_dict(state[key])
    if "task" in state:
        task.load_checkpoint_state(state["task"])
    if info.is_main:
        prune(run_dir, keep)  # a run killed between saving a checkpoint and pruning the old ones
        log(f"resumed from {ckpt} (step {int(state['step'])})")
    return int(state["step"])


def _diverged(run_dir: Path, what: str, step: int, out: dict) -> RobustokError:
    values = {k: float(v.detach().float().mean()) if torch.is_tensor(v) else v for k, v in out.items()}
    return RobustokError(
        f"{what} at step {step} ({values}); nothing was saved for this step; last good (finite) "
        f"checkpoint: {last_finite_checkpoint(run_dir)}. Lower train.lr or check the data."
    )


def _save(
    task: Task,
    run: RunConfig,
    run_dir: Path,
    done: int,
    modules: dict[str, nn.Module],
    opts: dict[str, Any],
    ranks: Optional[list] = None,
) -> None:
    state = {"step": done, **{k: o.state_dict() for k, o in opts.items() if o is not None}}
    extra = task.checkpoint_state()
    if extra is not None:
        state["task"] = extra
    try:
        save_checkpoint(run_dir, done, modules, state, run.keep_checkpoints, ranks)
    except CheckpointError as err:
        raise RobustokError(
            f"training diverged: {err}; last good (finite) checkpoint: "
            f"{last_finite_checkpoint(run_dir)}. Lower train.lr or check the data."
        ) from None


def _optimisers(task: Task, model: nn.Module, disc: Optional[nn.Module], cfg: TrainConfig):
    """The trained parameters, AdamW for them (and for the discriminator, if any)."""
    chosen = task.trainable_parameters()
    params = list(chosen) if chosen is not None else [p for p in model.parameters() if p.requires_grad]
    betas = _betas(cfg)
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
    disc_opt = None
    if disc is not None:
        disc_lr = task.disc_lr if task.disc_lr is not None else cfg.lr
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=disc_lr, betas=betas, weight_decay=task.disc_weight_decay)
    return params, opt, disc_opt


def _betas(cfg: TrainConfig) -> tuple[float, float]:
    """AdamW's (beta1, beta2) from `train.betas`."""
    if len(cfg.betas) != 2:
        raise ConfigError(f"train.betas must hold 2 values (beta1, beta2), got {list(cfg.betas)}")
    return cfg.betas[0], cfg.betas[1]


@dataclass
class _Run:
    """What one training run holds while it steps: the modules, their optimisers and the logging state."""

    task: Task
    run: RunConfig
    cfg: TrainConfig
    info: rdist.DistInfo
    run_dir: Path
    model: Pretrained  # the unwrapped model (what the task's `inner` is)
    disc: Optional[nn.Module]
    ema: Optional[Pretrained]
    shown: Pretrained  # previews, evaluation, export: the EMA unless the task's eval_ema is False
    params: list
    opt: torch.optim.Optimizer
    disc_opt: Optional[torch.optim.Optimizer]
    base_lrs: list  # (optimiser, its configured lr), read before a resume restores its state

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {
            "model": self.model,
            **({"ema": self.ema} if self.ema is not None else {}),
            **({"disc": self.disc} if self.disc is not None else {}),
        }

    @property
    def opts(self) -> dict[str, Any]:
        return {"opt": self.opt, "disc_opt": self.disc_opt}


def _setup(task: Task, run: RunConfig, cfg: TrainConfig, info: rdist.DistInfo) -> _Run:
    """Move the task's modules to the device, build optimisers and the EMA."""
    model = task.model.to(info.device)
    if not isinstance(model, Pretrained):  # exported with save_pretrained at the end
        raise ConfigError(
            f"task '{task.kind}': its model ({type(model).__name__}) must be a robustok.hub.Pretrained model"
        )
    disc = task.disc
    if disc is not None:
        disc.to(info.device)
    params, opt, disc_opt = _optimisers(task, model, disc, cfg)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
    shown = ema if ema is not None and task.eval_ema else model
    base_lrs = [(o, o.param_groups[0]["lr"]) for o in (opt, disc_opt) if o is not None]
    return _Run(task, run, cfg, info, Path(run.dir), model, disc, ema, shown, params, opt, disc_opt, base_lrs)


def _train_locked(
    task: Task,
    run: RunConfig,
    cfg: TrainConfig,
    data: BatchOptions,
    full_config: Any,
    resume: bool,
    info: rdist.DistInfo,
    log: Callable[[str], None],
) -> Path:
    cfg.amp, why = resolve_precision(cfg.amp, info.device)  # config.yaml records the choice: bf16 | fp32
    if info.is_main:
        log(f"precision: {cfg.amp} ({why})")
    r = _setup(task, run, cfg, info)
    start = _restore(task, r.run_dir, r.modules, r.opts, resume, run.keep_checkpoints, info, log)
    if info.is_main and full_config is not None:  # only now: a refused run leaves the folder as it was
        save_config(full_config, r.run_dir / "config.yaml")
    if start >= cfg.steps:
        if info.is_main:
            log(f"nothing to do: already at step {start} of {cfg.steps}")
        return _export(task, r.shown, r.run_dir, info)
    wrapped: nn.Module = r.model
    if info.world > 1:
        device = info.device
        wrapped = nn.parallel.DistributedDataParallel(
            r.model, device_ids=[device.index] if device.type == "cuda" else None
        )
    # cast: torch.compile of a Module returns an OptimizedModule (an nn.Module); its stubs say only "callable"
    forward_model = cast(nn.Module, torch.compile(wrapped)) if cfg.compile else wrapped
    batches = task.batches(data.batch_size, run.seed, info.rank, info.world, start, data.num_workers)
    batches = ThroughputProbe(cfg.steps, start, info.device, info.world, enabled=info.is_main).wrap(batches)
    _steps(r, forward_model, batches, start)
    return _export(task, r.shown, r.run_dir, info)


def _steps(r: _Run, forward_model: nn.Module, batches, start: int) -> None:
    """Steps `start` .. `cfg.steps - 1`: update, log, preview, evaluate, checkpoint."""
    task, run, cfg, info, device = r.task, r.run, r.cfg, r.info, r.info.device
    min_ratio = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
    logger = MetricsLogger(r.run_dir, enabled=info.is_main, start_step=start)
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        disable=not (info.is_main and run.progress),
        dynamic_ncols=True,
        desc=f"train {task.kind}",
    )
    acc: dict[str, float] = {}
    n_acc, t0, images = 0, time.time(), 0
    r.model.train()
    for step in range(start, cfg.steps):
        torch.manual_seed(step_seed(run.seed, step, info.rank))
        factor = lr_factor(step, cfg.warmup_steps, cfg.steps, min_ratio)
        for o, base in r.base_lrs:
            for group in o.param_groups:
                group["lr"] = base * factor
        batch = [b.to(device, non_blocking=True) if torch.is_tensor(b) else b for b in next(batches)]
        out, grad_norm = _update(r, forward_model, batch, step)
        images += batch[0].shape[0] * info.world
        for k, v in out.items():
            acc[k] = acc.get(k, 0.0) + (float(v.detach().float().mean()) if torch.is_tensor(v) else float(v))
        acc["grad_norm"] = acc.get("grad_norm", 0.0) + float(grad_norm)
        n_acc += 1
        bar.update(1)
        done = step + 1
        if done % run.log_every == 0 or done == cfg.steps:
            values = rdist.mean_over_ranks({k: v / n_acc for k, v in acc.items()}, device)
            values.update(lr=r.opt.param_groups[0]["lr"], images_per_s=images / max(time.time() - t0, 1e-9))
            logger.log(done, values)
            bar.set_postfix(loss=f"{values['loss']:.4f}", img_s=f"{values['images_per_s']:.0f}")
            acc, n_acc, t0, images = {}, 0, time.time(), 0
        _after_step(r, logger, batch, done)
        fault_point("step")
    bar.close()
    logger.close()


def _update(r: _Run, forward_model: nn.Module, batch: list, step: int) -> tuple[dict, torch.Tensor]:
    """One optimisation step (model, discriminator, EMA); returns the task's outputs and the gradient norm."""
    cfg = r.cfg
    with autocast(cfg.amp, r.info.device):
        out = r.task.step(forward_model, batch, step, r.model)
    loss = out["loss"]
    if not torch.isfinite(loss.detach()).all():
        raise _diverged(r.run_dir, "non-finite loss", step, out)
    r.opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(r.params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
    if not torch.isfinite(grad_norm):  # the update would write NaN/inf into the weights
        raise _diverged(r.run_dir, "non-finite gradient", step, out)
    r.opt.step()
    if r.disc is not None and "disc_loss" in out:
        if r.disc_opt is None:
            raise RobustokError("internal: a discriminator without an optimiser")
        _disc_update(r.disc, r.disc_opt, out["disc_loss"], cfg.grad_clip)
    if r.ema is not None:
        update_ema(r.ema, r.model, ema_decay_at(step, cfg.ema_decay) if r.task.ema_warmup else cfg.ema_decay)
    return out, grad_norm


def _after_step(r: _Run, logger: MetricsLogger, batch: list, done: int) -> None:
    """Preview, evaluation and checkpoint after step `done` when they are due."""
    run, last = r.run, done == r.cfg.steps
    if r.info.is_main and run.sample_every > 0 and (done % run.sample_every == 0 or last):
        _preview(r.task, r.shown, batch, r.run_dir / "samples" / f"step-{done:07d}.png")
    every = r.task.eval_every
    if every and (done % every == 0 or last):
        logger.log(done, r.task.evaluate(r.shown, done))  # every rank: its shard
    if (run.ckpt_every > 0 and done % run.ckpt_every == 0) or last:
        rdist.barrier()
        ranks = rdist.gather_to_main(rank_buffers(r.modules)) if r.info.world > 1 else None  # each rank's own
        if r.info.is_main:
            _save(r.task, run, r.run_dir, done, r.modules, r.opts, ranks)
        rdist.barrier()


def _disc_update(disc: nn.Module, disc_opt: torch.optim.Optimizer, disc_loss: torch.Tensor, clip: float) -> None:
    disc_opt.zero_grad(set_to_none=True)
    if disc_loss.requires_grad:
        disc_loss.backward()
        rdist.average_gradients(disc.parameters())
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(disc.parameters(), clip)
        disc_opt.step()


def _preview(task: Task, model: nn.Module, batch: Any, path: Path) -> None:
    with torch.no_grad():
        grid = task.preview(model, batch)
    if grid is not None:
        save_grid(grid, path, nrow=task.preview_nrow, scale=2 if grid.shape[-1] <= 64 else 1)


def _export(task: Task, final: Pretrained, run_dir: Path, info: rdist.DistInfo) -> Path:
    """Save the final weights (the EMA if enabled, unless the task's `eval_ema` is False) to `<run_dir>/<kind>/`
    and any task extras."""
    from robustok.train.export import final_model_dir

    out = final_model_dir(run_dir, task.kind)
    if info.is_main:
        final.save_pretrained(out)
        fault_point("export")
        task.export(out, final)
    rdist.barrier()
    return out
