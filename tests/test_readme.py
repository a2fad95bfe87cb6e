"""The README: its test command is the one CI runs, it fits on a screen, and its links lead somewhere."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci/run").read_text().strip().splitlines()
    assert any("pytest" in line and line in README for line in ci)


def test_readme_is_short():
    assert len(README.splitlines()) <= 150


def test_readme_links_point_to_files_of_the_checkout():
    links = [m for m in re.findall(r"\]\(([^)#]+)\)", README) if "://" not in m]
    assert links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing
