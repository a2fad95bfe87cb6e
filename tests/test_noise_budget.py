"""experiments/noise_budget.py: the power formulas on known cases, and the budget from the committed results."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("noise_budget", ROOT / "experiments" / "noise_budget.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mde_matches_the_normal_formula_for_large_df_and_grows_for_small_df():
    nb = _module()
    assert nb.mde_t(1.0, 10_000) == pytest.approx(1.96 + 0.8416, rel=0.01)  # z_0.975 + z_0.8
    assert nb.mde_t(1.0, 2) > nb.mde_t(1.0, 4) > nb.mde_t(1.0, 100)
    assert nb.posttrain_mde(0.1, 3, 0.0) == pytest.approx(nb.mde_t(0.1 / np.sqrt(3), 2))
    assert nb.posttrain_mde(0.1, 3, 0.01) > nb.posttrain_mde(0.1, 3, 0.01, shared=False)


def test_spearman_difference_power_needs_members_and_reliability():
    nb = _module()
    sd_small, mde_small = nb.spearman_mde(12, 1.0, 0.7, reps=800)
    sd_big, mde_big = nb.spearman_mde(96, 1.0, 0.7, reps=800)
    assert sd_big < sd_small / 2 and mde_big < 0.4 and mde_big < mde_small
    assert nb.spearman_mde(96, 0.05, 0.7, reps=800)[1] > mde_big  # noisy gFID hides the difference


def test_budget_from_the_committed_results():
    b = _module().budget(reps=100)
    fam = b["family"]["gfid_cfg"]
    assert fam["set_pairs"] == 12 and 0 < fam["sd_set"] < fam["seed_pooled_sd"]
    assert b["family"]["gfid_cfg"]["seed_pooled_sd"] == pytest.approx(3.97, abs=0.01)  # README: pooled sd 3.97
    assert b["posttrain"]["holdout_pairs"] == 6 and b["posttrain"]["sd_e2"] < b["posttrain"]["sd_dose_far"]
    studies = b["perturbation_mde"][0]["mde"]
    assert all(v > 6.5 for v in studies.values())  # the studies' design cannot see the threshold they used
