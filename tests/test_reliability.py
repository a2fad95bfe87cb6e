"""Nothing is lost: refused runs change nothing, run folders are locked, only complete and finite checkpoints
are listed, logs hold each step once, post-training resumes its best score, curve and best decoder."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustok.cli import main
from robustok.errors import CheckpointError, ConfigError, RobustokError
from robustok.hub import load_tensors, save_tensors
from robustok.tokenizer.train import TokenizerTask
from robustok.train.checkpoint import (
    MARKER,
    checkpoint_step,
    clean_stale,
    latest_checkpoint,
    list_checkpoints,
    non_finite,
    save_checkpoint,
)
from robustok.train.lock import RunLockedError, run_lock
from robustok.train.logging import MetricsLogger, read_metrics
from robustok.train.loop import train
from tests.helpers import ROOT, needs_fmnist, tiny_tokenizer, tiny_train_config

REPO = Path(__file__).resolve().parents[1]


def _run(cfg, resume=False):
    return train(TokenizerTask(cfg), cfg.run, cfg.train, cfg.data, full_config=cfg, resume=resume)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --- refused runs leave the folder as it was ----------------------------------------------------------------
@needs_fmnist
def test_refused_fresh_run_and_refused_resume_keep_config_yaml(tmp_path):
    _run(tiny_train_config(tmp_path / "r", "train.steps=2"))
    before = (tmp_path / "r" / "config.yaml").read_text()
    with pytest.raises(RobustokError, match="nothing was overwritten"):
        _run(tiny_train_config(tmp_path / "r", "train.steps=3", "train.lr=0.5"))
    assert (tmp_path / "r" / "config.yaml").read_text() == before
    with pytest.raises(CheckpointError, match="another architecture"):
        _run(tiny_train_config(tmp_path / "r", "train.steps=3", "model.hidden_dim=8"), resume=True)
    assert (tmp_path / "r" / "config.yaml").read_text() == before


@needs_fmnist
def test_zero_steps_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(ConfigError, match="train.steps"):
        _run(tiny_train_config(tmp_path / "r", "train.steps=0"))
    assert not (tmp_path / "r").exists()


def test_post_train_data_refuses_an_existing_out_folder(tmp_path, capsys):
    out = tmp_path / "finished"
    (out / "tokenizer").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    args = [
        "post-train-data",
        str(tmp_path / "no-generator"),
        "--tokenizer",
        str(tmp_path / "no-tok"),
        "--sigma",
        "0.7",
        "--out",
        str(out),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "notes.txt" in err and "Traceback" not in err
    assert (out / "notes.txt").read_text() == "keep me"


@needs_fmnist
def test_make_pairs_overwrite_replaces_only_when_asked(tmp_path):
    from robustok.data import build_dataset
    from robustok.posttrain.pairs import PairsSpec, make_pairs
    from tests.helpers import tiny_ar as _ar

    tok = tiny_tokenizer(channel_mult=[1, 2, 2]).eval()
    gen = _ar(tok)
    ds = build_dataset("fashion-mnist:test")
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "notes.txt").write_text("x")
    spec = PairsSpec(sigma=0.7, num_pairs=8, num_eval=4, data="fashion-mnist:test", batch_size=8)
    with pytest.raises(RobustokError, match="--overwrite"):
        make_pairs(gen, tok, ds, spec, out, progress=False)
    assert (out / "notes.txt").is_file()
    make_pairs(gen, tok, ds, spec, out, progress=False, overwrite=True)
    assert (out / "manifest.json").is_file() and not (out / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs"]  # no temp or old folder left


# --- run lock -----------------------------------------------------------------------------------------------
def test_run_lock_names_the_holder_and_is_taken_over_when_it_dies(tmp_path):
    code = (
        "import sys, time; from robustok.train.lock import run_lock\n"
        f"with run_lock({str(tmp_path / 'r')!r}):\n    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            with run_lock(tmp_path / "r"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path / "r"):  # the dead holder's lock is free again
        with run_lock(tmp_path / "r"):  # re-entrant in one process
            pass
        assert (tmp_path / "r" / ".lock").read_text().startswith(f"pid {os.getpid()}")
    assert not (tmp_path / "r" / ".lock").exists()


def test_a_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path):
    (tmp_path / ".lock").write_text(f"pid {_dead_pid()} on elsewhere\n")
    with run_lock(tmp_path):
        assert (tmp_path / ".lock").read_text().startswith(f"pid {os.getpid()}")


@needs_fmnist
def test_training_into_a_locked_run_dir_is_refused(tmp_path):
    cfg = tiny_train_config(tmp_path / "r", "train.steps=1")
    code = (
        "import time; from robustok.train.lock import run_lock\n"
        f"with run_lock({str(tmp_path / 'r')!r}):\n    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match="in use by another run"):
            _run(cfg)
        assert not (tmp_path / "r" / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()


# --- checkpoints: complete, finite ----------------------------------------------------------------------------
def test_only_complete_checkpoints_are_listed_and_stale_ones_are_cleaned(tmp_path):
    m = torch.nn.Linear(2, 2)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"model": m}, {"step": step}, keep=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000001", "step-0000002", "step-0000003"]
    (tmp_path / "checkpoints" / "step-0000003" / MARKER).write_text("{")  # a marker cut short
    (tmp_path / "checkpoints" / "step-0000002" / "model.safetensors").unlink()  # a file the marker lists
    (tmp_path / "checkpoints" / ".tmp-step-0000004-1").mkdir()  # a kill while writing
    (tmp_path / "checkpoints" / ".trash-step-0000000-1").mkdir()  # a kill while pruning
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000001"]
    clean_stale(tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-0000001"]
    (tmp_path / "checkpoints" / "step-0000001" / MARKER).unlink()  # written before markers existed: still listed
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000001"]


def test_checkpoint_step_reads_the_folder_name(tmp_path):
    assert checkpoint_step(tmp_path / "step-0000042") == 42
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        checkpoint_step(tmp_path / "step-42")


def test_non_finite_weights_or_optimizer_state_are_never_checkpointed(tmp_path):
    m = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path, 1, {"model": m}, {"step": 1})
    with torch.no_grad():
        m.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="model.weight"):
        save_checkpoint(tmp_path, 2, {"model": m}, {"step": 2})
    good = torch.nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match="opt.state.0.exp_avg"):
        save_checkpoint(
            tmp_path, 2, {"model": good}, {"step": 2, "opt": {"state": {0: {"exp_avg": torch.tensor([float("inf")])}}}}
        )
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000001"]


@needs_fmnist
def test_divergence_names_a_finite_checkpoint_that_resumes(tmp_path):
    cfg = tiny_train_config(
        tmp_path / "r",
        "train.lr=1e6",
        "train.grad_clip=0",
        "train.steps=30",
        "train.warmup_steps=0",
        "run.ckpt_every=1",
        "run.keep_checkpoints=30",
    )
    with pytest.raises(RobustokError, match="non-finite") as err:
        _run(cfg)
    ckpts = list_checkpoints(tmp_path / "r")
    for ckpt in ckpts:
        for f in ckpt.glob("*.safetensors"):
            assert non_finite(load_tensors(f)) is None, f
        assert non_finite(torch.load(ckpt / "trainer.pt", weights_only=True)) is None
    last = latest_checkpoint(tmp_path / "r")
    assert last is not None and f"checkpoint: {last}." in str(err.value)


@needs_fmnist
def test_a_non_finite_gradient_stops_before_it_reaches_the_weights(tmp_path):
    cfg = tiny_train_config(tmp_path / "r", "run.ckpt_every=1", "train.steps=4")
    task = TokenizerTask(cfg)
    real_step = task.step

    def bad_gradient_at_step_2(model, batch, step, inner):
        out = real_step(model, batch, step, inner)
        if step == 2:  # finite loss, infinite gradient: d sqrt(x)/dx at x = 0
            out["loss"] = out["loss"] + torch.sqrt(next(task.model.parameters()).flatten()[0] * 0)
        return out

    task.step = bad_gradient_at_step_2
    with pytest.raises(RobustokError, match="non-finite gradient at step 2") as err:
        train(task, cfg.run, cfg.train, cfg.data)
    assert f"checkpoint: {tmp_path / 'r' / 'checkpoints' / 'step-0000002'}." in str(err.value)
    assert all(torch.isfinite(p).all() for p in task.model.parameters())


# --- logs and exports ---------------------------------------------------------------------------------------
def test_metrics_rows_after_the_resumed_step_are_dropped(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    for step in (1, 2, 3, 4):
        log.log(step, {"loss": float(step)})
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "lo')  # a row cut short by a kill
    MetricsLogger(tmp_path, tensorboard=False, start_step=2).log(3, {"loss": 30.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_tensorboard_rows_after_the_resumed_step_are_purged(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLogger(tmp_path)
    for step in (1, 2, 3):
        log.log(step, {"loss": float(step)})
    log.close()
    # TensorBoard orders event files by name (time in seconds, host, pid, a per-process writer counter): a resumed
    # run is a new process started later; in one process within one second, counter 10 would sort before 9
    time.sleep(1.1)
    log = MetricsLogger(tmp_path, start_step=1)
    for step in (2, 3):
        log.log(step, {"loss": 10.0 * step})
    log.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 1.0), (2, 20.0), (3, 30.0)]


def test_a_temp_file_left_by_a_killed_export_is_removed(tmp_path):
    tok = tiny_tokenizer()
    stale = tmp_path / f".model.safetensors.pid{_dead_pid()}.abc123.tmp"
    stale.write_bytes(b"half")
    live = tmp_path / ".config.json.pid1.xyz.tmp"  # pid 1 is alive: another process's write in progress
    live.write_bytes(b"")
    tok.save_pretrained(tmp_path)
    assert not stale.exists() and live.exists()
    save_tensors({"a": torch.zeros(1)}, tmp_path / "x.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == [live.name]


# --- post-training resume -------------------------------------------------------------------------------------
@pytest.fixture()
def post_setup(tmp_path):
    from robustok.data import build_dataset
    from robustok.posttrain.pairs import PairsSpec, make_pairs
    from tests.helpers import tiny_ar as _ar

    tok = tiny_tokenizer(channel_mult=[1, 2, 2]).eval()
    tok.save_pretrained(tmp_path / "tok")
    spec = PairsSpec(sigma=0.7, num_pairs=24, num_eval=16, data="fashion-mnist:test", batch_size=24)
    make_pairs(_ar(tok), tok, build_dataset("fashion-mnist:test"), spec, tmp_path / "pairs", progress=False)
    return tmp_path


def post_overrides(t, run_dir, *extra):
    return [
        f"tokenizer={t / 'tok'}",
        f"pairs={t / 'pairs'}",
        f"run.dir={run_dir}",
        "run.progress=false",
        "train.steps=4",
        "data.batch_size=8",
        "eval_every=1",
        "eval_features=random",
        "eval_num_reference=32",
        "run.log_every=1",
        *extra,
    ]


@needs_fmnist
def test_resume_of_a_finished_post_training_is_a_clean_no_op(post_setup, capsys):
    t = post_setup
    args = ["post-train", "fmnist", *post_overrides(t, t / "post")]
    assert main(args) == 0
    first = json.loads((t / "post" / "posttrain.json").read_text())
    best = load_tensors(t / "post" / "tokenizer-best" / "model.safetensors")
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out and "n/a" not in out
    again = json.loads((t / "post" / "posttrain.json").read_text())
    assert again == first and len(first["curve"]) == 4 and first["gfid_proxy_best"] is not None
    assert all(
        torch.equal(v, load_tensors(t / "post" / "tokenizer-best" / "model.safetensors")[k]) for k, v in best.items()
    )
    # killed after the last checkpoint, before the exports and the summary: resume rebuilds them all
    import shutil

    for name in ("tokenizer", "tokenizer-best"):
        shutil.rmtree(t / "post" / name)
    (t / "post" / "posttrain.json").unlink()
    assert main(args + ["--resume"]) == 0
    assert json.loads((t / "post" / "posttrain.json").read_text()) == first
    assert all(
        torch.equal(v, load_tensors(t / "post" / "tokenizer-best" / "model.safetensors")[k]) for k, v in best.items()
    )


@needs_fmnist
def test_resume_prunes_what_a_killed_run_had_not_pruned_yet(tmp_path):
    _run(tiny_train_config(tmp_path / "r", "train.steps=3", "run.ckpt_every=1", "run.keep_checkpoints=5"))
    assert len(list_checkpoints(tmp_path / "r")) == 3
    _run(tiny_train_config(tmp_path / "r", "train.steps=3", "run.ckpt_every=1", "run.keep_checkpoints=2"), resume=True)
    assert [p.name for p in list_checkpoints(tmp_path / "r")] == ["step-0000002", "step-0000003"]


def test_pid_file_lock_fallback_without_fcntl(tmp_path):
    from robustok.train.lock import _acquire_pidfile

    path = tmp_path / ".lock"
    path.write_text(f"pid {_dead_pid()} on host\n")
    os.close(_acquire_pidfile(path))  # stale: taken over
    path.write_text(f"pid {os.getpid()} on host\n")
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        _acquire_pidfile(path)


# --- exact resume in every world size: each rank's own buffers are kept -----------------------------------------
def test_checkpoints_keep_each_rank_s_buffers(tmp_path):
    """Under torchrun a rank's buffers can differ from rank 0's (the LeCam EMAs follow each rank's own logits):
    a checkpoint keeps ranks 1..'s in ranks.safetensors and each resumed rank takes its own back. A 1-process
    checkpoint is as before (no extra file). The 2-process kill-and-resume run: tests/test_distributed.py."""
    from robustok.losses.gan import LeCam
    from robustok.train.checkpoint import RANKS, load_rank_buffers, rank_buffers

    disc = LeCam()
    disc.ema_real.fill_(0.25)
    mine = rank_buffers({"disc": disc})
    assert sorted(mine) == ["disc/ema_fake", "disc/ema_real"]
    other = {k: v + 1 for k, v in mine.items()}
    ckpt = save_checkpoint(tmp_path, 1, {"disc": disc}, {"step": 1}, ranks=[mine, other])
    assert RANKS in json.loads((ckpt / MARKER).read_text())["files"]
    fresh = LeCam()
    assert load_rank_buffers(ckpt, {"disc": fresh}, 1)
    assert float(fresh.ema_real) == 1.25 and float(fresh.ema_fake) == 1.0
    assert not load_rank_buffers(ckpt, {"disc": fresh}, 2)  # saved by 2 processes, resumed by 3: rank 0's
    one = save_checkpoint(tmp_path, 2, {"disc": disc}, {"step": 2}, ranks=[mine])
    assert not (one / RANKS).exists() and not load_rank_buffers(one, {"disc": fresh}, 1)


# --- file modes follow the umask --------------------------------------------------------------------------------
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_new_files_follow_the_umask(tmp_path, umask, mode):
    import stat

    from robustok.config import save_config

    old = os.umask(umask)
    try:
        tiny_tokenizer().save_pretrained(tmp_path / "tok")
        save_checkpoint(tmp_path / "run", 1, {"model": torch.nn.Linear(2, 2)}, {"step": 1})
        save_config(tiny_train_config(tmp_path / "run"), tmp_path / "run" / "config.yaml")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 6
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(mode) for p in files}


# --- saved configs: every key of the format is required; keys added later are listed with their reason ----------
def test_committed_models_and_configs_without_later_keys_load(tmp_path):
    from robustok.generator import load_generator
    from robustok.tokenizer import Tokenizer, TokenizerConfig
    from robustok.tokenizer.loading import load_tokenizer

    models = REPO / "experiments" / "models" / "baseline-s0"
    tok = load_tokenizer(models / "tokenizer")
    assert load_generator(models / "generator-ar2000").config.tokenizer_fingerprint == tok.fingerprint()
    assert set(TokenizerConfig.ADDED_KEYS) == {"dinov2_init_decoder"}
    small = tiny_tokenizer()
    small.save_pretrained(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    del meta["config"]["dinov2_init_decoder"]  # a file written before the key existed
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    old = Tokenizer.from_pretrained(tmp_path / "old")
    assert old.config.dinov2_init_decoder is False and old.fingerprint() == small.fingerprint()
    del meta["config"]["l2_norm"]  # a key every robustok/1 file holds
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"old/config\.json: key 'l2_norm' of TokenizerConfig is missing"):
        Tokenizer.from_pretrained(tmp_path / "old")
