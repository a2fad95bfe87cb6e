"""docs/reproduce.md: its tiny stand-in walk-through runs as written, every other command in it parses with the
CLI's own parser (flags, kinds and preset names exist), and its table of published rows matches the presets."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robustok.cli import main, parse_args
from robustok.generator.published import PRESETS

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "reproduce.md"
WALKTHROUGH = "## 6. Walk-through on tiny stand-ins"


def commands(text: str) -> list[list[str]]:
    """argv of every command in the bash blocks of `text` (torchrun launchers dropped: the robustok part)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] == "torchrun":
                argv = ["robustok"] + argv[argv.index("robustok.cli") + 1 :]
            if argv:
                out.append(argv)
    return out


def test_every_command_parses_and_names_real_presets():
    text = GUIDE.read_text()
    seen = set()
    for argv in commands(text.split(WALKTHROUGH)[0]):
        assert argv[0] == "robustok", argv
        args = parse_args(argv[1:])
        seen.add(getattr(args, "preset", None))
    assert {"rar-l", "llamagen-xxl-384", "robustok-rar-b"} <= seen


def test_table_rows_match_the_presets():
    rows = re.findall(
        r"^\| [^|]+ \| [^|]+ \| [^|]+ \| `--preset ([\w-]+)` \| ([\d.]+) \| ([\d]+) \+ ([\d]+) \|",
        GUIDE.read_text(),
        re.M,
    )
    assert len(rows) == 15
    published = {(n, p.fid) for n, p in PRESETS.items()} | {(n, p.fid_post) for n, p in PRESETS.items()}
    for name, fid, _, _ in rows:
        assert (name, float(fid)) in published, name
    assert {r[0] for r in rows} == set(PRESETS)


def test_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    steps = commands(GUIDE.read_text().split(WALKTHROUGH)[1])
    assert steps[0][:2] == ["python", "tests/released_standins.py"]
    subprocess.run(
        [sys.executable, str(REPO / steps[0][1]), *steps[0][2:]], check=True, cwd=tmp_path, capture_output=True
    )
    for argv in steps[1:]:
        assert argv[0] == "robustok", argv
        assert main(argv[1:]) == 0, argv
    for name, n, side in (("samples-rar-b", 20, 64), ("samples-llamagen", 8, 256), ("samples-post", 10, 32)):
        assert np.load(tmp_path / "tiny" / name / "samples.npz")["arr_0"].shape == (n, side, side, 3)
    assert (tmp_path / "tiny" / "post" / "control" / "tokenizer").is_dir()
    capsys.readouterr()
    assert (
        main(
            [
                "sample",
                "tiny/rar-b",
                "--tokenizer",
                "tiny/robustok-main",
                "--num-images",
                "2",
                "--out",
                "x",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "vocabulary" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_table_costs_come_from_the_flop_counter():
    """The GFLOP column is what benchmarks/released_generators.py counts (three rows; the script prints all)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("released_generators", REPO / "benchmarks/released_generators.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    text = GUIDE.read_text()
    for name in ("llamagen-b", "rar-l", "robustok-rar-b"):
        f = bench.flops_per_image(PRESETS[name])
        cell = f"`--preset {name}` | {PRESETS[name].fid:.2f} | {f['generator'] / 1e9:.0f} + {f['decoder'] / 1e9:.0f} |"
        assert cell in text, cell
