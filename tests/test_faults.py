"""Crash tests: SIGKILL a training process at named points (`ROBUSTOK_FAULT_AT`, see robustok.train.faults) or
at random times, `--resume` until it finishes, and require the result to be bitwise the uninterrupted run's:
final weights, logged metrics, post-training's curve, best score and best decoder.

The default suite kills each stage once (tiny configs); `--runslow` runs the thorough version (every site,
chained kills, random-time kills). Subprocesses run with OMP_NUM_THREADS=1 for bitwise determinism.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustok.hub import load_tensors
from robustok.train.checkpoint import list_checkpoints
from robustok.train.faults import ENV as FAULT_ENV
from robustok.train.logging import read_metrics
from tests.helpers import TINY_MODEL, gray_class_folder, needs_fmnist, tiny16_tokenizer, tiny_tokenizer

ROOT = Path(__file__).resolve().parent.parent
KILLED = -signal.SIGKILL


def _env(fault: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    if fault:
        env[FAULT_ENV] = fault
    return env


def _cmd(args: list[str], resume: bool) -> list[str]:
    return [sys.executable, "-m", "robustok.cli", *args, *(["--resume"] if resume else [])]


def run_with_faults(args: list[str], faults: list[str]) -> None:
    """One process per fault (each must be killed by it), resuming each time; then a last resume to the end."""
    for i, fault in enumerate(faults):
        r = subprocess.run(_cmd(args, i > 0), env=_env(fault), cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == KILLED, f"fault {fault} was not reached (rc {r.returncode}): {r.stderr[-2000:]}"
    r = subprocess.run(_cmd(args, bool(faults)), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def run_with_random_kills(args: list[str], rng: random.Random, kills: int, horizon: float) -> int:
    """Start, SIGKILL after a random time (up to `horizon` s), resume ... `kills` times; return the kills done."""
    done = 0
    for attempt in range(kills + 1):
        p = subprocess.Popen(
            _cmd(args, attempt > 0), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        if attempt < kills:
            try:
                p.wait(timeout=rng.uniform(0.2, horizon))
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                done += 1
        err = p.communicate(timeout=300)[1]
        assert p.returncode in (0, KILLED), err[-3000:]
    assert p.returncode == 0  # the last attempt ran to the end
    return done


def assert_same_weights(a: Path, b: Path) -> None:
    files = sorted(p.name for p in a.glob("*.safetensors"))
    assert files and files == sorted(p.name for p in b.glob("*.safetensors")), (a, b)
    for name in files:
        ta, tb = load_tensors(a / name), load_tensors(b / name)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), f"{name}:{k} differs between {a} and {b}"
    assert not [p.name for p in b.iterdir() if p.name.endswith(".tmp")], f"stray temp files in {b}"


def assert_same_run(ref: Path, run: Path, kind: str) -> None:
    assert_same_weights(ref / kind, run / kind)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "images_per_s"} for r in rows]  # noqa: E731
    assert strip(read_metrics(run)) == strip(read_metrics(ref))  # every step logged once, same values
    assert [c.name for c in list_checkpoints(run)] == [c.name for c in list_checkpoints(ref)]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp")]


# --- the three stages -------------------------------------------------------------------------------------------
def tokenizer_args(run_dir: Path) -> list[str]:
    return [
        "train-tokenizer",
        "configs/tokenizer/fmnist-robust.yaml",
        f"run.dir={run_dir}",
        "run.progress=false",
        "run.log_every=1",
        "run.sample_every=0",
        "run.ckpt_every=2",
        "run.keep_checkpoints=2",
        "train.steps=6",
        "train.warmup_steps=1",
        "data.batch_size=8",
        "loss.disc_weight=0.5",
        "loss.disc_start=2",
        *TINY_MODEL,
    ]


@pytest.fixture(scope="module")
def token_store(tmp_path_factory) -> Path:
    from robustok.cli import main

    t = tmp_path_factory.mktemp("store")
    gray_class_folder(t / "imgs", [6, 6])
    tiny16_tokenizer().save_pretrained(t / "vq")
    assert (
        main(["pretokenize", str(t / "vq"), "--data", str(t / "imgs"), "--out", str(t / "tokens"), "--no-progress"])
        == 0
    )
    return t / "tokens"


def generator_args(run_dir: Path, store: Path) -> list[str]:
    return [
        "train-generator",
        "configs/generator/fmnist-ar.yaml",
        f"data.tokens={store}",
        f"run.dir={run_dir}",
        "train.steps=6",
        "run.ckpt_every=2",
        "run.keep_checkpoints=1",
        "run.log_every=1",
        "run.sample_every=0",
        "run.progress=false",
        "data.batch_size=4",
        "model.dim=32",
        "model.depth=1",
        "model.heads=2",
        "model.random_order=true",
    ]


@pytest.fixture(scope="module")
def post_inputs(tmp_path_factory) -> Path:
    from robustok.data import build_dataset
    from robustok.posttrain.pairs import PairsSpec, make_pairs
    from tests.helpers import tiny_ar as _ar

    t = tmp_path_factory.mktemp("post")
    tok = tiny_tokenizer(channel_mult=[1, 2, 2]).eval()
    tok.save_pretrained(t / "tok")
    spec = PairsSpec(sigma=0.7, num_pairs=24, num_eval=16, data="fashion-mnist:test", batch_size=24)
    make_pairs(_ar(tok), tok, build_dataset("fashion-mnist:test"), spec, t / "pairs", progress=False)
    return t


def post_args(run_dir: Path, inputs: Path, *extra: str) -> list[str]:
    return [
        "post-train",
        "configs/posttrain/fmnist.yaml",
        f"tokenizer={inputs / 'tok'}",
        f"pairs={inputs / 'pairs'}",
        f"run.dir={run_dir}",
        "run.progress=false",
        "run.log_every=1",
        "run.ckpt_every=3",
        "run.keep_checkpoints=1",
        "train.steps=6",
        "train.warmup_steps=1",
        "data.batch_size=8",
        "eval_every=2",
        "eval_features=random",
        "eval_num_reference=32",
        "loss.disc_weight=0.1",
        *extra,
    ]


def assert_same_post(ref: Path, run: Path) -> None:
    assert_same_run(ref, run, "tokenizer")
    assert_same_weights(ref / "tokenizer-best", run / "tokenizer-best")
    a, b = (json.loads((d / "posttrain.json").read_text()) for d in (ref, run))
    for key in (
        "gfid_proxy_before",
        "gfid_proxy_after",
        "gfid_proxy_best",
        "curve",
        "gfid_proxy_control",
        "gfid_proxy_control_best",
        "control_curve",
    ):
        assert a.get(key) == b.get(key), key
    assert [c["step"] for c in b["curve"]] == [2, 4, 6]
    if (ref / "control").is_dir():
        assert_same_run(ref / "control", run / "control", "tokenizer")


@pytest.fixture(scope="module")
def references(tmp_path_factory, token_store, post_inputs):
    """Uninterrupted runs: the three default stages in one subprocess (one start-up), others on demand."""
    t = tmp_path_factory.mktemp("ref")
    stages = {
        "tok": tokenizer_args(t / "tok"),
        "gen": generator_args(t / "gen", token_store),
        "post": post_args(t / "post", post_inputs),
    }
    code = "import json, sys\nfrom robustok.cli import main\nfor a in json.loads(sys.argv[1]): assert main(a) == 0"
    r = subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(stages.values()))],
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]

    def get(name: str, args_of) -> Path:
        if not (t / name).is_dir():
            run_with_faults(args_of(t / name), [])
        return t / name

    return get


# --- default suite: one kill per stage ---------------------------------------------------------------------
@needs_fmnist
def test_tokenizer_killed_while_writing_a_checkpoint_resumes_bitwise(tmp_path, references):
    ref = references("tok", tokenizer_args)
    run_with_faults(tokenizer_args(tmp_path / "run"), ["ckpt-file:6"])  # 2nd checkpoint, 2 of its 4 files
    assert_same_run(ref, tmp_path / "run", "tokenizer")


def test_generator_killed_while_pruning_resumes_bitwise(tmp_path, references, token_store):
    args_of = lambda d: generator_args(d, token_store)  # noqa: E731
    ref = references("gen", args_of)
    run_with_faults(args_of(tmp_path / "run"), ["ckpt-prune:1"])  # step-2 half pruned after step 4 was saved
    assert_same_run(ref, tmp_path / "run", "generator")


@needs_fmnist
def test_post_training_killed_after_an_evaluation_resumes_bitwise(tmp_path, references, post_inputs):
    args_of = lambda d: post_args(d, post_inputs)  # noqa: E731
    ref = references("post", args_of)
    run_with_faults(args_of(tmp_path / "run"), ["eval:2"])  # the step-4 evaluation, after the step-3 checkpoint
    assert_same_post(ref, tmp_path / "run")


# --- a full disk while checkpointing: exit 1, one line, the previous checkpoint intact, resume exact ------------
@pytest.mark.parametrize("action", ["enospc", "eio"])
def test_full_or_failing_disk_while_checkpointing_fails_cleanly_and_resumes_bitwise(
    tmp_path, references, token_store, action
):
    args_of = lambda d: generator_args(d, token_store)  # noqa: E731
    ref = references("gen", args_of)
    files = len(list((ref / "checkpoints" / "step-0000006").glob("*.safetensors"))) + 1  # + trainer.pt
    run = tmp_path / "run"
    fault = f"ckpt-file:{files + 1}:{action}"  # the first file of the step-4 checkpoint
    r = subprocess.run(
        _cmd(args_of(run), False), env=_env(fault), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 1, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"error: {run / 'checkpoints' / 'step-0000004'}: " in lines[0], lines
    assert (
        "no space left on the device" in lines[0] and " needed)" in lines[0]
        if action == "enospc"
        else "input/output error" in lines[0]
    )
    assert [c.name for c in list_checkpoints(run)] == ["step-0000002"]
    assert not [p.name for p in (run / "checkpoints").rglob("*") if p.name.startswith(".")]  # no temp left
    r = subprocess.run(_cmd(args_of(run), True), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_run(ref, run, "generator")


# --- thorough: every site, chained kills, random-time kills -------------------------------------------------
SITES = ["step:1", "step:3", "ckpt-file:1", "ckpt-file:3", "ckpt-rename:1", "ckpt-rename:2", "ckpt-prune:1", "export:1"]


def _stages(token_store, post_inputs, control: bool):
    return {
        "tokenizer": (lambda d: tokenizer_args(d), "tokenizer", assert_same_run),
        "generator": (lambda d: generator_args(d, token_store), "generator", assert_same_run),
        "post": (
            lambda d: post_args(d, post_inputs, *(["--control"] if control else [])),
            "tokenizer",
            lambda ref, run, kind: assert_same_post(ref, run),
        ),
    }


@pytest.mark.slow
@needs_fmnist
@pytest.mark.parametrize("stage", ["tokenizer", "generator", "post"])
def test_killed_at_every_site_resumes_bitwise(tmp_path, references, token_store, post_inputs, stage):
    args_of, kind, check = _stages(token_store, post_inputs, control=stage == "post")[stage]
    ref = references({"tokenizer": "tok", "generator": "gen", "post": "post-control"}[stage], args_of)
    sites = SITES + (["eval:1", "eval:3"] if stage == "post" else [])
    for site in sites:
        run_dir = tmp_path / site.replace(":", "-")
        run_with_faults(args_of(run_dir), [site])
        check(ref, run_dir, kind)
    run_dir = tmp_path / "chained"  # a kill in every resumed process too
    run_with_faults(args_of(run_dir), ["ckpt-file:2", "step:1", "ckpt-rename:1", "export:1"])
    check(ref, run_dir, kind)


@pytest.mark.slow
@needs_fmnist
@pytest.mark.parametrize("stage", ["tokenizer", "generator", "post"])
def test_killed_at_random_times_resumes_bitwise(tmp_path, references, token_store, post_inputs, stage):
    args_of, kind, check = _stages(token_store, post_inputs, control=stage == "post")[stage]
    ref = references({"tokenizer": "tok", "generator": "gen", "post": "post-control"}[stage], args_of)
    t0 = time.time()  # kill times are drawn over the length of one uninterrupted run (also checked)
    run_with_faults(args_of(tmp_path / "uninterrupted"), [])
    horizon = time.time() - t0
    check(ref, tmp_path / "uninterrupted", kind)
    rng = random.Random(f"robustok-{stage}")
    for trial in range(5):
        run_dir = tmp_path / f"trial{trial}"
        run_with_random_kills(args_of(run_dir), rng, kills=3, horizon=horizon)
        check(ref, run_dir, kind)
