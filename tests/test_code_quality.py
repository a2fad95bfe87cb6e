"""Habits CI keeps: ruff (lint and format) and mypy pass on the package, with the settings in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_lint_and_format_pass():
    lint = _run("ruff", "check", "robustok", "tests", "experiments", "benchmarks", "docs/_hooks")
    assert lint.returncode == 0, lint.stdout[-4000:]
    fmt = _run("ruff", "format", "--check", "robustok")
    assert fmt.returncode == 0, fmt.stdout[-4000:]


def test_mypy_passes_on_the_package():
    run = _run("mypy")
    assert run.returncode == 0, run.stdout[-4000:]
