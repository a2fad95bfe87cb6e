"""The distributed path: 2 CPU processes (gloo) under torchrun give the same run as 1 process."""
import os
import subprocess
import sys

import pytest

from robustok.train.logging import read_metrics
from tests.helpers import TINY_MODEL
from tests.test_data import needs_fmnist


def _cmd(run_dir, nproc, *extra):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                "--master_port", str(29500 + nproc + os.getpid() % 1000)]
    return launcher + ["-m", "robustok.cli", "train-tokenizer", "configs/tokenizer/fmnist-baseline.yaml",
                       f"run.dir={run_dir}", "train.steps=3", "run.progress=false", "run.log_every=1",
                       "data.batch_size=8", "model.dead_code_threshold=0", *TINY_MODEL, *extra]


@needs_fmnist
def test_two_gloo_processes_match_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
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
    assert "disc_loss" in gan[-1] and (tmp_path / "gan" / "tokenizer" / "discriminator.safetensors").is_file()
