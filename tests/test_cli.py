import argparse
import subprocess
import sys

import pytest

from robustok.cli import build_parser, main, parse_args


def test_every_subcommand_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "train-tokenizer" in sub.choices
    for name, p in sub.choices.items():
        assert p.format_help().startswith("usage: robustok " + name), name


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "robustok.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "train-tokenizer" in r.stdout


def test_errors_are_one_line_without_traceback(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "robustok.cli", "train-tokenizer", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr


def test_overrides_may_follow_flags(capsys):
    args = parse_args(["post-train", "c.yaml", "a=1", "--control", "b.c=2", "d=x=y"])
    assert args.control and args.overrides == ["a=1", "b.c=2", "d=x=y"]
    assert parse_args(["train-tokenizer", "c.yaml", "--resume", "run.dir=r"]).overrides == ["run.dir=r"]
    for argv in (
        ["post-train", "c.yaml", "--control", "--nope"],
        ["post-train", "c.yaml", "--control", "stray"],
        ["fid", "a", "b", "x=1"],
    ):
        with pytest.raises(argparse.ArgumentError, match="unrecognized arguments"):
            parse_args(argv)
        assert main(argv) == 2 and "unrecognized arguments" in capsys.readouterr().err
