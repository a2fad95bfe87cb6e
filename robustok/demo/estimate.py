"""How long the demo will take here, from a few seconds of calibration, and which profile fits a time budget.

A stage-by-stage cost model in seconds of the reference machine (2 free cores that train the robust tokenizer at
`REFERENCE_IMAGES_PER_S`), fitted to the measured default (28 min 55 s) and full (75 min 23 s) demos (docs/measured.md,
"Measured numbers"), is scaled by the speed of this machine: the same tokenizer training step, timed on the
device the demo will use. A rough guide (within ~10% on the reference machine; stages whose mix of work differs
from a conv training step scale less exactly, most of all on a GPU), and for a run from scratch: stages already
on disk are skipped and cost nothing.
"""

from __future__ import annotations

import re
import time
from typing import Callable, Optional, cast

import torch

from robustok.demo.profiles import PROFILES, DemoProfile
from robustok.errors import ConfigError
from robustok.train.estimate import device_name, format_duration

REFERENCE_IMAGES_PER_S = 301.0  # benchmarks/train_tokenizer.py, fmnist-robust, on the reference machine
FIXED_S = 20.0  # start-up, feature networks, grids and report

# seconds per unit of work on the reference machine (fitted to the measured default and full demos)
TOKENIZER_STEP_S = 0.2555  # one main-training step (half of them with the GAN loss)
EVAL_IMAGE_S = 0.029  # PSNR/SSIM/rFID/pFID grid/usage, per evaluation image and point
GEN_STEP_S = 0.16  # one AR generator training step
PRETOKENIZE_IMAGE_S = 0.00133  # one image pretokenized for the generators
GFID_IMAGE_S = 0.0054  # one sampled + decoded + featurised image for gFID
POST_STEP_S = 0.2  # one post-training (or control) step
PAIR_IMAGE_S = 0.009  # one post-training pair (or held-out evaluation sample) made


def _batch_ratio(overrides: list[str], base: int = 64) -> float:
    """A profile's training batch size relative to the configs' 64 (a step's cost scales about with it)."""
    sizes = [int(o.split("=", 1)[1]) for o in overrides if o.startswith("data.batch_size=")]
    return sizes[-1] / base if sizes else 1.0


def stage_seconds(p: DemoProfile) -> dict[str, float]:
    """Reference-machine seconds of each demo stage for profile `p`."""
    points = 2 * len(p.tok_checkpoints)
    return {
        "tokenizers": 2 * p.tok_steps * TOKENIZER_STEP_S * _batch_ratio(p.tok_overrides),
        "evaluation": points * p.eval_images * EVAL_IMAGE_S,
        "generators": points
        * (p.gen_steps * GEN_STEP_S * _batch_ratio(p.gen_overrides) + p.pretok_images * PRETOKENIZE_IMAGE_S),
        "gFID": points * 2 * p.gen_images * GFID_IMAGE_S,
        "post-training": 2
        * (
            len(p.post_seeds) * 2 * p.post_steps * POST_STEP_S * _batch_ratio(p.post_overrides)
            + (p.num_pairs + p.gen_images) * PAIR_IMAGE_S
        ),
        "other": FIXED_S,
    }


def calibrate(device: torch.device, min_seconds: float = 2.0, max_steps: int = 30) -> float:
    """Images/s of the robust tokenizer's training step here (2 warm-up steps, then >= 3 timed steps and
    >= `min_seconds`), in bf16 autocast on CUDA as the training loop runs it. The global RNG is left as it was."""
    from robustok.config import load_config
    from robustok.demo.stages import config_file
    from robustok.tokenizer.model import Tokenizer
    from robustok.tokenizer.train import TokenizerTask, TokenizerTrainConfig

    cfg = load_config(TokenizerTrainConfig, config_file("tokenizer/fmnist-robust.yaml"), [])
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        task = TokenizerTask(cfg, dataset=[])
        model = cast(Tokenizer, task.model).to(device).train()  # TokenizerTask's model (typed nn.Module by Task)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        b, c, s = cfg.data.batch_size, cfg.model.channels, cfg.model.image_size
        x = torch.rand(b, c, s, s, device=device) * 2 - 1
        amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

        def step(i: int) -> None:
            with amp:
                loss = task.step(model, (x, None), i, model)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            float(loss.detach())  # wait for the device

        step(0)
        step(1)
        t0, n = time.perf_counter(), 0
        while n < 3 or (time.perf_counter() - t0 < min_seconds and n < max_steps):
            step(2 + n)
            n += 1
        return b * n / (time.perf_counter() - t0)


def parse_duration(text: str, what: str = "--budget") -> float:
    """Seconds in '30m', '30 min', '1h30m', '1.5h', '90s' or a bare number of minutes."""
    m = re.fullmatch(
        r"\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*", text.lower()
    )
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", text):
        return float(text) * 60
    if not text.strip() or m is None or not any(m.groups()):
        raise ConfigError(f"{what}: cannot read {text!r} as a duration; use e.g. 30m, 1h30m, 1.5h or 90s")
    h, mins, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mins * 60 + s


def estimates(images_per_s: float) -> dict[str, dict[str, float]]:
    """Per profile (fastest first), this machine's expected seconds per stage, given its calibration rate."""
    slowdown = REFERENCE_IMAGES_PER_S / images_per_s
    table = {name: {k: v * slowdown for k, v in stage_seconds(p).items()} for name, p in PROFILES.items()}
    return dict(sorted(table.items(), key=lambda kv: sum(kv[1].values())))


def plan_demo(
    requested: Optional[str],
    budget: Optional[str] = None,
    estimate_only: bool = False,
    log: Callable[[str], None] = print,
    images_per_s: Optional[float] = None,
) -> Optional[str]:
    """Calibrate, log the expected wall time of every profile, and return the profile to run (None: don't run).

    `requested`: a profile name, or None (the largest that fits `budget`, else "default"). A budget that the
    chosen profile exceeds is an error naming the profiles that fit.
    """
    if requested is not None and requested not in PROFILES:
        raise ConfigError(f"unknown demo profile {requested!r}; choose {', '.join(PROFILES)}")
    budget_s = parse_duration(budget) if budget else None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rate = images_per_s if images_per_s is not None else calibrate(device)
    table = estimates(rate)
    totals = {name: sum(stages.values()) for name, stages in table.items()}
    fits = [n for n in totals if budget_s is None or totals[n] <= budget_s]
    if requested is None:
        requested = (fits[-1] if fits else None) if budget_s is not None else "default"
    log(
        f"calibration: robust tokenizer training at {rate:.0f} img/s on {device_name(device)} "
        f"(reference machine {REFERENCE_IMAGES_PER_S:.0f} img/s); expected demo wall time from scratch:"
    )
    for name, total in totals.items():
        mark = " <- fits the budget" if budget_s is not None and name in fits else ""
        log(f"  {name:8s} ~{format_duration(total)}{mark}")
    if estimate_only:
        return None
    if requested is None or (budget_s is not None and totals[requested] > budget_s):  # None: only with a budget
        what = (
            f"profile {requested!r} needs ~{format_duration(totals[requested])}"
            if requested
            else f"every profile needs more (quickest: ~{format_duration(min(totals.values()))})"
        )
        raise ConfigError(f"--budget {budget}: {what}; fits: {', '.join(fits) or 'none'}")
    stages = ", ".join(f"{k} {format_duration(v)}" for k, v in table[requested].items())
    log(f"running profile {requested}: expected ~{format_duration(totals[requested])} ({stages})")
    return requested
