import subprocess
import sys


from robustok.cli import build_parser


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
    r = subprocess.run([sys.executable, "-m", "robustok.cli", "train-tokenizer", str(tmp_path / "none.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
