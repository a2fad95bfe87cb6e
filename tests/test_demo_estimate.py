"""Demo time estimates: the cost model reproduces the measured demos, budgets pick or refuse profiles."""

import pytest

from robustok.cli import main
from robustok.demo.estimate import REFERENCE_IMAGES_PER_S, parse_duration, plan_demo, stage_seconds
from robustok.demo.profiles import PROFILES
from robustok.errors import ConfigError


@pytest.mark.parametrize("name,measured_s", [("default", 28 * 60 + 55), ("full", 75 * 60 + 23)])
def test_cost_model_matches_the_measured_demos(name, measured_s):
    assert sum(stage_seconds(PROFILES[name]).values()) == pytest.approx(measured_s, rel=0.05)


def test_parse_duration():
    assert parse_duration("30m") == parse_duration("30 min") == parse_duration("30") == 1800
    assert parse_duration("1h30m") == parse_duration("1.5h") == 5400
    assert parse_duration("90s") == 90
    for bad in ("", "soon", "30x", "m"):
        with pytest.raises(ConfigError, match="--budget"):
            parse_duration(bad)


def test_budget_picks_the_largest_profile_that_fits():
    logs = []
    fast, slow = REFERENCE_IMAGES_PER_S, REFERENCE_IMAGES_PER_S / 4.3  # the ~300 vs ~70 img/s CPUs
    assert plan_demo(None, "31m", images_per_s=fast, log=logs.append) == "default"
    assert plan_demo(None, "31m", images_per_s=slow, log=logs.append) == "quick"
    assert plan_demo(None, "2h", images_per_s=fast, log=logs.append) == "full"
    assert plan_demo(None, None, images_per_s=slow, log=logs.append) == "default"  # no budget: the default
    assert plan_demo("full", None, estimate_only=True, images_per_s=fast, log=logs.append) is None
    assert any("fits the budget" in line for line in logs) and any("2 h" in line for line in logs)
    with pytest.raises(ConfigError, match="'default' needs ~2 h .* fits: quick"):
        plan_demo("default", "31m", images_per_s=slow, log=logs.append)
    with pytest.raises(ConfigError, match="every profile needs more"):
        plan_demo(None, "10s", images_per_s=slow, log=logs.append)


def test_demo_estimate_calibrates_and_runs_nothing(tmp_path, capsys):
    assert main(["demo", "--estimate", "--budget", "45m", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "calibration: robust tokenizer training at" in out and "img/s on" in out and "default" in out
    assert not (tmp_path / "d").exists()
