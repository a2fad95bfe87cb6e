import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from robustok.errors import RobustokError
from robustok.tokenizer.model import Tokenizer
from robustok.tokenizer.train import TokenizerTask
from robustok.train.checkpoint import latest_checkpoint, list_checkpoints
from robustok.train.logging import read_metrics
from robustok.train.loop import lr_factor, train
from tests.helpers import needs_fmnist, tiny_train_config

pytestmark = needs_fmnist


def _run(cfg, resume=False):
    return train(TokenizerTask(cfg), cfg.run, cfg.train, cfg.data, full_config=cfg, resume=resume)


def test_short_run_writes_model_checkpoints_metrics_and_samples(tmp_path):
    cfg = tiny_train_config(tmp_path / "r", "run.sample_every=2", "run.ckpt_every=2")
    out = _run(cfg)
    tok = Tokenizer.from_pretrained(out)
    assert tok.encode(torch.zeros(1, 1, 32, 32)).shape == (1, 16, 16)
    rows = read_metrics(tmp_path / "r")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert {"loss", "rec", "vq", "commit", "perplexity", "alpha", "delta", "grad_norm", "lr"} <= set(rows[0])
    assert [p.name for p in list_checkpoints(tmp_path / "r")] == ["step-0000002", "step-0000004"]
    assert (tmp_path / "r" / "samples" / "step-0000004.png").is_file()
    assert (tmp_path / "r" / "config.yaml").is_file() and (tmp_path / "r" / "tb").is_dir()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, monkeypatch, precision):
    import robustok.train.precision as prec

    monkeypatch.setattr(prec, "cpu_bf16_instructions", lambda: "avx512_bf16")  # bf16 even where it is emulated
    extra = ("train.steps=6", "run.ckpt_every=3", "loss.disc_weight=0.5", "loss.disc_start=2", f"train.amp={precision}")
    _run(tiny_train_config(tmp_path / "full", *extra))
    cfg = tiny_train_config(tmp_path / "part", *extra)
    task = TokenizerTask(cfg)
    real_step = task.step

    def killed_at_step_4(model, batch, step, inner):
        if step == 4:
            raise KeyboardInterrupt  # the run dies in step 5, after the step-3 checkpoint and step 4
        return real_step(model, batch, step, inner)

    task.step = killed_at_step_4
    with pytest.raises(KeyboardInterrupt):
        train(task, cfg.run, cfg.train, cfg.data, full_config=cfg)
    assert latest_checkpoint(tmp_path / "part").name == "step-0000003"
    _run(cfg, resume=True)
    full, part = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "part")
    # step 4 was logged before the "kill": the resumed run drops that row and logs step 4 again, once
    assert [r["step"] for r in part] == [1, 2, 3, 4, 5, 6]
    assert "disc_loss" in full[-1]  # the GAN phase (from step 2) is covered
    for a, b in zip(full, part):
        assert a.keys() == b.keys()
        for k in [k for k in ("loss", "rec", "vq", "disc_loss", "g_adv") if k in a]:
            assert a[k] == b[k], (k, a["step"])  # bitwise: resume replays exactly
    assert (tmp_path / "part" / "tokenizer" / "discriminator" / "model.safetensors").is_file()
    a, b = (load_file(tmp_path / r / "tokenizer" / "model.safetensors") for r in ("full", "part"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert f"amp: {precision}" in (tmp_path / "part" / "config.yaml").read_text()


def test_existing_checkpoints_are_never_overwritten_without_resume(tmp_path):
    cfg = tiny_train_config(tmp_path / "r", "train.steps=2")
    _run(cfg)
    before = latest_checkpoint(tmp_path / "r")
    with pytest.raises(RobustokError, match="--resume"):
        _run(cfg)
    assert latest_checkpoint(tmp_path / "r") == before


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    cfg = tiny_train_config(
        tmp_path / "r", "train.lr=1e30", "train.grad_clip=0", "train.steps=30", "train.warmup_steps=0"
    )
    with pytest.raises(RobustokError, match="non-finite loss at step"):
        _run(cfg)


def test_gradient_clipping_really_clips():
    p = torch.nn.Parameter(torch.ones(10))
    p.grad = torch.full((10,), 100.0)
    total = torch.nn.utils.clip_grad_norm_([p], 1.0)
    assert total > 1 and p.grad.norm() == pytest.approx(1.0, rel=1e-4)


def test_lr_schedule():
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)


def test_cli_train_and_resume(tmp_path):
    args = [
        sys.executable,
        "-m",
        "robustok.cli",
        "train-tokenizer",
        "configs/tokenizer/fmnist-baseline.yaml",
        f"run.dir={tmp_path / 'c'}",
        "train.steps=2",
        "run.progress=false",
        "data.batch_size=8",
        "model.base_channels=8",
        "model.channel_mult=[1,2]",
        "model.hidden_dim=16",
        "model.codebook_size=64",
    ]
    subprocess.run(args, check=True, capture_output=True)
    r = subprocess.run(args[:-5] + ["train.steps=3"] + args[-4:] + ["--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout and latest_checkpoint(tmp_path / "c").name == "step-0000003"
    bad = subprocess.run(args + ["model.nope=1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "model.nope" in bad.stderr and "Traceback" not in bad.stderr


def test_lpips_perceptual_loss_from_local_files(tmp_path):
    """The training loss path with LPIPS weights in the torchvision / lpips layouts (random values here)."""
    from robustok.metrics.lpips import CONV_CHANNELS, CONV_INDICES, TAP_CHANNELS

    vgg = {}
    for cin, cout, i in zip((3,) + CONV_CHANNELS[:-1], CONV_CHANNELS, CONV_INDICES):
        vgg[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3) * 0.05
        vgg[f"features.{i}.bias"] = torch.zeros(cout)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(TAP_CHANNELS)}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(heads, tmp_path / "vgg.pth")
    cfg = tiny_train_config(
        tmp_path / "r",
        "train.steps=1",
        "loss.perceptual=lpips",
        f"loss.lpips_vgg={tmp_path / 'vgg16.pth'}",
        f"loss.lpips_lin={tmp_path / 'vgg.pth'}",
    )
    _run(cfg)
    assert read_metrics(tmp_path / "r")[0]["perceptual"] > 0


def test_ema_warm_up_forgets_the_initialisation():
    from robustok.train.loop import ema_decay_at, update_ema

    model, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        ema.weight.fill_(100.0)  # a stale start
        model.weight.fill_(1.0)
    for step in range(400):
        update_ema(ema, model, ema_decay_at(step, 0.999))
    assert ema.weight.max() < 1.5  # a plain 0.999 would leave 0.999**400 * 99 ≈ 66 of the offset
    assert ema_decay_at(10**6, 0.999) == 0.999


def test_deterministic_runs_are_bitwise_repeatable(tmp_path):
    """run.deterministic=true: two runs of one config and seed give identical weights, on 2 OpenMP threads asked."""
    import os

    args = [
        sys.executable,
        "-m",
        "robustok.cli",
        "train-tokenizer",
        "configs/tokenizer/fmnist-robust.yaml",
        "train.steps=6",
        "run.progress=false",
        "data.batch_size=8",
        "loss.disc_start=3",
        "run.deterministic=true",
        "model.base_channels=8",
        "model.channel_mult=[1,2]",
        "model.hidden_dim=16",
        "model.codebook_size=64",
        "perturb.delta=4",
        "perturb.beta=0.5",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    for name in ("a", "b"):
        subprocess.run(args + [f"run.dir={tmp_path / name}"], check=True, capture_output=True, env=env)
    a = load_file(str(tmp_path / "a" / "tokenizer" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "tokenizer" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    code = (
        "import torch; from robustok.train.reproducible import make_deterministic; make_deterministic(); "
        "print(torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert r.stdout.split() == ["1", "True"]
