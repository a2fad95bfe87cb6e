"""The documentation site builds with `mkdocs build --strict`: broken links, missing pages and API targets that do
not exist fail; the generated reference pages hold every command and every config key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_site_builds_strict_with_generated_reference(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-q",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    cli = (tmp_path / "site/reference/cli/index.html").read_text()
    for command in ("train-tokenizer", "eval-tokenizer", "post-train-data", "diagnose", "convert"):
        assert f"robustok {command}" in cli
    config = (tmp_path / "site/reference/config/index.html").read_text()
    for key in ("perturb.alpha", "perturb.delta", "train.steps", "ema_keep"):
        assert key in config
