"""docs/extending.md as written: its four plug-in files and its command-line walk-through (ROBUSTOK_PLUGINS)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robustok.errors import ConfigError
from robustok.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "extending.md").read_text()


def plugin_files(lang: str = "python") -> dict[str, str]:
    blocks = re.findall(rf"```{lang}\n(.*?)```", PAGE, re.S)
    return {re.match(r"# file: (\S+)\n", b).group(1): b for b in blocks}


def commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", PAGE, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_the_page_has_four_plugins_and_uses_them_all():
    files = plugin_files()
    assert sorted(files) == ["patch_backbone.py", "pixel_features.py", "stripes_data.py", "table_generator.py"]
    first = commands()[0]
    assert first.startswith("export ROBUSTOK_PLUGINS=") and set(first.split("=", 1)[1].split(",")) == set(files)


def test_walkthrough_runs_from_outside_the_package(tmp_path):
    for name, text in {**plugin_files(), **plugin_files("yaml")}.items():
        (tmp_path / name).write_text(text)
    cmds = commands()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROBUSTOK_PLUGINS": cmds[0].split("=", 1)[1], "PYTHONPATH": str(ROOT)}
    for cmd in cmds[1:]:
        args = cmd.replace("configs/", f"{ROOT}/configs/").split()
        assert args[0] == "robustok"
        r = subprocess.run(
            [sys.executable, "-m", "robustok.cli", *args[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, f"{cmd}\n{r.stderr[-2000:]}"
    runs = tmp_path / "runs"
    config = json.loads((runs / "stripes-tok" / "tokenizer" / "config.json").read_text())
    assert "patch" in json.dumps(config)
    generator = json.loads((runs / "stripes-gen" / "generator" / "config.json").read_text())
    assert generator["class"] == "TableGenerator" and generator["config"]["label_smoothing"] == 0.05
    images = np.load(runs / "stripes-samples" / "samples.npz")["arr_0"]
    assert images.shape == (256, 32, 32, 1)
    manifest = json.loads((runs / "stripes-pairs" / "manifest.json").read_text())
    assert manifest["generator"] == "table" and manifest["sigma"] == 0.7
    assert manifest["sampling"] == {"cfg": 1.0, "precision": "fp32", "temperature": 1.0}


def test_plugin_errors_name_the_variable(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="ROBUSTOK_PLUGINS.*not found"):
        load_plugins(str(tmp_path / "missing.py"))
    with pytest.raises(ConfigError, match="ROBUSTOK_PLUGINS.*no_such_module"):
        load_plugins("no_such_module")
    monkeypatch.setenv("ROBUSTOK_PLUGINS", "no_such_module")
    r = subprocess.run(
        [sys.executable, "-m", "robustok.cli", "fid", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 2 and "no_such_module" in r.stderr and "Traceback" not in r.stderr
