"""experiments/study.py and the diffusion study's summary: the t interval on a known case, the design's test kept
to the design's units with the extension beside."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_unit_test_interval_and_calls():
    study = _module("study")
    t = study.unit_test([1.0, 2.0, 3.0])  # mean 2, sd 1, se 1/sqrt(3), t(0.975, 2) = 4.303
    assert t["mean_delta"] == 2.0 and t["pair_set_sd"] == pytest.approx(1.0)
    assert t["ci95"] == pytest.approx([2 - 4.3027 / np.sqrt(3), 2 + 4.3027 / np.sqrt(3)], abs=1e-3)
    assert t["verdict"] == "no call" and study.unit_test([-3.0, -2.9, -3.1])["verdict"] == "beats its control"
    assert study.unit_test([3.0, 2.9, 3.1])["verdict"] == "loses" and t["realised_mde"] > 0


def test_diffusion_summary_tests_the_designed_sets_and_puts_the_rest_beside(tmp_path, monkeypatch):
    import json

    diffusion = _module("posttrain_diffusion")
    row = json.loads(next(diffusion.PER_SET.glob("set1.json")).read_text())
    (tmp_path / "tokenizer.json").write_text(json.dumps({"rfid": 0.85, "psnr": 29.3}))
    for k, delta in zip(range(1, 7), (-1.0, -1.2, -0.8, -1.1, 5.0, 6.0)):
        (tmp_path / f"set{k}.json").write_text(json.dumps({**row, "pairs_seed": k, "gfid_proxy_after": 10.0 + delta,
                                                            "gfid_proxy_control": 10.0}))  # fmt: skip
    monkeypatch.setattr(diffusion, "PER_SET", tmp_path)
    r = diffusion.build()
    assert r["verdict"] == "beats its control" and r["beats_control_every_set"]  # sets 1-4 only
    assert r["extension"]["sets"] == [1, 2, 3, 4, 5, 6] and r["extension"]["verdict"] == "no call"
    assert "Extension, all 6 sets" in diffusion.markdown(r)
