"""The built wheel works outside the checkout: shipped presets, `--version`, training and the demo from any folder.

The wheel is built from a copy of the package sources (the checkout stays untouched) and installed without
dependencies into a fresh venv that sees this interpreter's packages (torch, numpy, ...), so nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A venv with the freshly built robustok wheel installed (--no-deps), and its `bin/` folder."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "robustok", src / "robustok", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(work / "dist"),
            str(src),
        ],
        check=True,
    )
    wheel = next((work / "dist").glob("robustok-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "robustok/configs/tokenizer/fmnist-robust.yaml" in names
    assert "robustok/metrics/weights/fmnist-features-v1.safetensors" in names
    env_dir = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)], check=True)
    subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    return env_dir / "bin"


def _run(bin_dir: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True)


def test_installed_wheel_runs_a_preset_from_an_unrelated_folder(venv, tmp_path):
    where = _run(venv, ["python", "-c", "import robustok; print(robustok.__file__, robustok.__version__)"], tmp_path)
    assert where.returncode == 0, where.stderr
    path, version = where.stdout.split()
    assert Path(path).is_relative_to(venv.parent), path  # the wheel's copy, not the checkout
    assert version != "0+unknown"
    assert _run(venv, ["robustok", "--version"], tmp_path).stdout.strip() == f"robustok {version}"

    run = _run(
        venv,
        [
            "robustok",
            "train-tokenizer",
            "fmnist-robust",
            "train.steps=2",
            "train.warmup_steps=1",
            "data.batch_size=8",
            "run.dir=runs/tok",
            "run.progress=false",
            "run.sample_every=0",
        ],
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "runs/tok/tokenizer/model.safetensors").is_file()

    bad = _run(venv, ["robustok", "train-tokenizer", "fmnist-robustt"], tmp_path)
    assert bad.returncode == 2
    assert (
        "fmnist-robustt" in bad.stderr and "tokenizer preset: fmnist-baseline, fmnist-kl, fmnist-robust" in bad.stderr
    )


@pytest.mark.slow
def test_installed_wheel_runs_the_quick_demo_from_an_unrelated_folder(venv, tmp_path):
    run = _run(venv, ["robustok", "demo", "--quick", "--out", "runs/quick"], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "runs/quick/report.html").is_file()
    assert (tmp_path / "runs/quick/results.json").is_file()
