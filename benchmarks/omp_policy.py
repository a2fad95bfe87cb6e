"""Tokenizer training step time under OpenMP's default wait policy, OMP_WAIT_POLICY=PASSIVE, and a short spin
(GOMP_SPINCOUNT=1000, what the CLI sets).

    python benchmarks/omp_policy.py [--steps 20] [--rounds 3] [--threads 0] [--load 0] \
        [--policies default,PASSIVE,spin=1000]

A policy is `default` (nothing set), an OMP_WAIT_POLICY value (`PASSIVE`, `ACTIVE`) or `spin=N` (GOMP_SPINCOUNT=N).

libgomp reads the policy once, when torch loads, so every measurement runs in a fresh child process; the
policies alternate over `--rounds` rounds so that drift of the machine hits both alike. Each child times
`--steps` CPU training steps of configs/tokenizer/fmnist-robust.yaml on random images (after 3 warm-up steps).
`--load N` runs N busy-looping processes alongside (a shared machine); run with --load 0 on quiet cores.
Prints one markdown table: median and best ms/step per policy, and each policy's median relative to the first.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(steps: int, threads: int) -> None:
    """Time `steps` training steps in this process; print {"ms_per_step", "threads", "cpu"} as JSON."""
    import torch

    from robustok.config import load_config
    from robustok.tokenizer.train import TokenizerTask, TokenizerTrainConfig
    from robustok.train.estimate import device_name

    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(TokenizerTrainConfig, str(ROOT / "configs/tokenizer/fmnist-robust.yaml"), [])
    task = TokenizerTask(cfg, dataset=[])
    model = task.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b, c, s = cfg.data.batch_size, cfg.model.channels, cfg.model.image_size
    x = torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def one_step(step: int) -> None:
        loss = task.step(model, (x, None), step, model)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    for i in range(3):
        one_step(i)
    t = time.perf_counter()
    for i in range(steps):
        one_step(i)
    ms = (time.perf_counter() - t) * 1000 / steps
    print(
        json.dumps(
            {"ms_per_step": ms, "threads": torch.get_num_threads(), "batch": b, "cpu": device_name(torch.device("cpu"))}
        )
    )


def _burn() -> None:
    while True:
        pass


def measure(policy: str, steps: int, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    if policy.startswith("spin="):
        env["GOMP_SPINCOUNT"] = policy.split("=", 1)[1]
    elif policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    cmd = [sys.executable, __file__, "--child", "--steps", str(steps), "--threads", str(threads)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if r.returncode:
        raise SystemExit(f"child for policy {policy} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in the children (0: torch's default)")
    ap.add_argument("--load", type=int, default=0, help="busy-looping processes running alongside")
    ap.add_argument(
        "--policies",
        default="default,PASSIVE,spin=1000",
        help="comma-separated: default (unset), an OMP_WAIT_POLICY value, or spin=N (GOMP_SPINCOUNT)",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.steps, a.threads)
    policies = a.policies.split(",")
    burners = [mp.Process(target=_burn, daemon=True) for _ in range(a.load)]
    for p in burners:
        p.start()
    times: dict[str, list[float]] = {p: [] for p in policies}
    info = {}
    try:
        for _ in range(a.rounds):
            for policy in policies:
                info = measure(policy, a.steps, a.threads)
                times[policy].append(info["ms_per_step"])
    finally:
        for p in burners:
            p.terminate()
    print(
        f"fmnist-robust tokenizer training step, batch {info['batch']}, {info['threads']} torch threads, "
        f"{info['cpu']}, {os.cpu_count()} logical CPUs, {a.load} busy processes alongside, "
        f"{a.rounds} rounds x {a.steps} steps"
    )
    print()
    print("| policy | median ms/step | best ms/step | img/s (median) | time vs first row |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(times[policies[0]])
    for policy in policies:
        med = statistics.median(times[policy])
        print(
            f"| {policy} | {med:.1f} | {min(times[policy]):.1f} | {info['batch'] * 1000 / med:.1f} "
            f"| {med / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
