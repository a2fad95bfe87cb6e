"""The command line sets a short OpenMP spin (GOMP_SPINCOUNT=1000) before torch loads (libgomp reads it then),
unless the user set a policy or spin count."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = {
    "console script": ["-c", "import sys; from robustok.entry import main; sys.exit(main())"],
    "python -m robustok": ["-m", "robustok"],
    "python -m robustok.cli": ["-m", "robustok.cli"],
}


def run(args: list[str], policy=None, spin=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(OMP_DISPLAY_ENV="verbose", PYTHONPATH=str(ROOT))
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    if spin is not None:
        env["GOMP_SPINCOUNT"] = spin
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def spin_count(stderr: str) -> str:
    """libgomp's own report of how long idle threads spin (0 exactly when the policy is PASSIVE)."""
    m = re.search(r"GOMP_SPINCOUNT = '(\d+)'", stderr)
    if m is None:
        pytest.skip("torch's OpenMP runtime is not libgomp (no OMP_DISPLAY_ENV report)")
    return m.group(1)


def test_the_console_script_is_the_entry_module():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["robustok"] == "robustok.entry:main"


def test_importing_robustok_does_not_load_torch():
    code = "import sys, robustok, robustok.entry; print('torch' in sys.modules); print(robustok.Tokenizer.__name__)"
    r = run(["-c", code])
    assert r.returncode == 0 and r.stdout.split() == ["False", "Tokenizer"], r.stderr


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_cli_entries_shorten_libgomp_spinning(entry):
    r = run([*ENTRIES[entry], "--help"])
    assert r.returncode == 0 and "train-tokenizer" in r.stdout, r.stderr
    assert spin_count(r.stderr) == "1000"


def test_a_policy_set_by_the_user_wins():
    r = run([*ENTRIES["python -m robustok.cli"], "--help"], policy="ACTIVE")
    assert r.returncode == 0 and spin_count(r.stderr) not in ("0", "1000", "300000")  # ACTIVE: spin (very long)
    r = run([*ENTRIES["python -m robustok.cli"], "--help"], policy="PASSIVE")
    assert r.returncode == 0 and spin_count(r.stderr) == "0"
    r = run([*ENTRIES["python -m robustok.cli"], "--help"], spin="5")
    assert r.returncode == 0 and spin_count(r.stderr) == "5"


def test_the_policy_reaches_child_processes_and_not_after_torch():
    code = (
        "import os, subprocess, sys; from robustok.entry import choose_omp_policy; print(choose_omp_policy()); "
        "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"GOMP_SPINCOUNT\"])'], "
        "capture_output=True, text=True).stdout.strip())"
    )
    assert run(["-c", code]).stdout.split() == ["True", "1000"]
    late = "import torch; from robustok.entry import choose_omp_policy; print(choose_omp_policy())"
    assert run(["-c", late]).stdout.split() == ["False"]  # too late to matter: left alone
