"""The distributed path: 2 CPU processes (gloo) under torchrun give the same run as 1 process."""

import os
import subprocess
import sys

import pytest

from robustok.train.logging import read_metrics
from tests.helpers import TINY_MODEL, needs_fmnist


def _cmd(run_dir, nproc, *extra):
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_port",
        str(29500 + nproc + os.getpid() % 1000),
    ]
    return launcher + [
        "-m",
        "robustok.cli",
        "train-tokenizer",
        "fmnist-baseline",
        f"run.dir={run_dir}",
        "train.steps=3",
        "run.progress=false",
        "run.log_every=1",
        "data.batch_size=8",
        "model.dead_code_threshold=0",
        "train.amp=fp32",  # equal to 1 process up to fp32 rounding; bf16 (auto on CPUs with bf16 units) rounds more
        *TINY_MODEL,
        *extra,
    ]


@needs_fmnist
def test_two_gloo_processes_match_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes, also on a GPU machine
    runs = {"w1": (1,), "w2": (2,), "gan": (2, "loss.disc_weight=0.5", "loss.disc_start=1")}
    for name, (n, *extra) in runs.items():
        r = subprocess.run(_cmd(tmp_path / name, n, *extra), capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    one, two = read_metrics(tmp_path / "w1"), read_metrics(tmp_path / "w2")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):  # same global batch, averaged gradients: the same optimisation
        for k in ("loss", "rec", "vq", "commit"):
            assert a[k] == pytest.approx(b[k], rel=1e-4), (k, a["step"], a[k], b[k])
    assert (tmp_path / "w2" / "tokenizer" / "model.safetensors").is_file()
    gan = read_metrics(tmp_path / "gan")  # the discriminator path (averaged gradients, adaptive weight) runs
    assert "disc_loss" in gan[-1] and (tmp_path / "gan" / "tokenizer" / "discriminator" / "model.safetensors").is_file()


def test_eval_tokenizer_on_two_gloo_processes_matches_one(tmp_path):
    """Distributed evaluation: 2 ranks take strided shards and gather statistics once; the numbers equal 1 rank's."""
    import json

    import numpy as np
    from PIL import Image

    from robustok import Tokenizer, TokenizerConfig

    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(37):  # an odd count: the ranks' shards differ in size
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(tmp_path / "imgs" / f"{i:02d}.png")
    Tokenizer(
        TokenizerConfig(
            image_size=16, channels=1, base_channels=8, channel_mult=[1, 2], hidden_dim=8, codebook_size=32, code_dim=4
        )
    ).save_pretrained(tmp_path / "tok")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes, also on a GPU machine
    res = {}
    for n in (1, 2):
        cmd = _cmd(tmp_path, n)[:7] + [
            "-m",
            "robustok.cli",
            "eval-tokenizer",
            str(tmp_path / "tok"),
            "--data",
            str(tmp_path / "imgs"),
            "--features",
            "random",
            "--batch-size",
            "5",
            "--metrics",
            "psnr,ssim,rfid,pfid,usage",
            "--json",
            str(tmp_path / f"{n}.json"),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        res[n] = json.loads((tmp_path / f"{n}.json").read_text())
    assert res[2]["num_images"] == res[1]["num_images"] == 37
    for k in ("psnr", "ssim", "rfid", "codebook_usage", "perplexity"):
        assert res[2][k] == pytest.approx(res[1][k], rel=1e-6), k
    # pFID's perturbations are drawn per (seed, cell, rank): another valid draw, not the same numbers
    assert len(res[2]["pfid_grid"]) == 15 and np.isfinite(res[2]["pfid"])


def test_more_local_ranks_than_gpus_is_a_clear_error(monkeypatch):
    from robustok import distributed as dist
    from robustok.errors import RobustokError

    monkeypatch.setattr(dist.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(dist.torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(RobustokError, match="LOCAL_RANK 1, but only 1 CUDA device"):
        dist.setup()


@pytest.mark.slow
@needs_fmnist
def test_a_killed_rank_resumes_bitwise_on_two_gloo_processes(tmp_path):
    """Rank 1 of 2 is SIGKILLed after step 5 (torchrun stops rank 0 too); `--resume` with 2 processes from the
    step-3 checkpoint must give the uninterrupted 2-process run bitwise: every logged value and the final
    weights. The GAN phase is on, so the ranks' LeCam EMAs (their own logits) differ and must be restored per
    rank (fast check of the mechanism: tests/test_reliability.py::test_checkpoints_keep_each_rank_s_buffers)."""
    import torch

    from robustok.hub import load_tensors
    from robustok.train.faults import ENV

    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop(ENV, None)
    extra = [
        "fmnist-robust",
        "run.sample_every=0",
        "run.ckpt_every=3",
        "train.steps=8",
        "train.warmup_steps=1",
        "loss.disc_weight=0.5",
        "loss.disc_start=2",
    ]

    def launch(name: str, fault: str | None = None, resume: bool = False) -> subprocess.CompletedProcess:
        cmd = _cmd(tmp_path / name, 2, *extra[1:], *(["--resume"] if resume else []))
        cmd[cmd.index("fmnist-baseline")] = extra[0]
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=600, env={**env, **({ENV: fault} if fault else {})}
        )

    assert (r := launch("ref")).returncode == 0, r.stderr[-3000:]
    assert launch("run", fault="step:5@1").returncode != 0  # rank 1 killed, the run stopped
    assert (r := launch("run", resume=True)).returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout and "step-0000003" in r.stdout
    strip = lambda rows: [{k: v for k, v in row.items() if k != "images_per_s"} for row in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "run")) == strip(read_metrics(tmp_path / "ref"))
    a, b = (load_tensors(tmp_path / n / "tokenizer" / "model.safetensors") for n in ("ref", "run"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
