"""The README's test command is the one CI runs."""
from pathlib import Path


def test_ci_runs_the_readme_test_command():
    ci = Path(".ci/run").read_text().strip().splitlines()[-1]
    assert "pytest" in ci and ci in Path("README.md").read_text()
