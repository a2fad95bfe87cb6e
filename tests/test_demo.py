"""`robustok demo --quick` end to end (a few minutes on 2 cores), its resumability and its report."""

import json
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, needs_fmnist

KEYS = {"psnr", "rfid", "pfid", "gfid", "gfid_post", "gfid_control", "rfid_post", "rfid_control"}


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    r = subprocess.run(
        [sys.executable, "-m", "robustok.cli", "demo", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@needs_fmnist
def test_quick_demo_writes_results_and_report(quick_demo):
    res = json.loads((quick_demo / "results.json").read_text())
    for name in ("baseline", "robust"):
        assert KEYS <= set(res[name]), name
        assert len(res[name]["pfid_grid"]) == 15
    assert "spearman_pfid_gfid" in res and "spearman_rfid_gfid" in res and len(res["points"]) == 6
    for name in ("baseline", "robust"):  # the verdict gives both comparisons with their per-seed values
        per_seed = ", ".join(f"{x:+.2f}" for x in res[name]["delta_vs_control"])
        assert f"post − control per seed {per_seed}" in res["verdict"] and "post − untouched per seed" in res["verdict"]
    assert set(res["stage_time_s"]) == {"tokenizers", "evaluation", "generators", "gFID", "post-training", "report"}
    assert res["features"] == "random" and res["profile_config"]["name"] == "quick"
    page = (quick_demo / "report.html").read_text()
    assert "FID-random" in page and page.count("data:image/png;base64,") >= 6


@needs_fmnist
def test_rerun_skips_finished_stages_and_report_rebuilds(quick_demo):
    before = (quick_demo / "results.json").read_text()
    t = time.time()
    r = subprocess.run(
        [sys.executable, "-m", "robustok.cli", "demo", "--quick", "--out", str(quick_demo)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.time() - t < 120  # every stage came from its cache
    res = json.loads((quick_demo / "results.json").read_text())
    assert res["points"] == json.loads(before)["points"]
    (quick_demo / "report.html").unlink()
    subprocess.run([sys.executable, "-m", "robustok.cli", "report", str(quick_demo)], check=True, capture_output=True)
    assert (quick_demo / "report.html").is_file()


@needs_fmnist
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium absent (apt-get install chromium)")
def test_report_renders_in_headless_chromium(quick_demo, tmp_path):
    import numpy as np
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1600",
            f"--screenshot={shot}",
            (quick_demo / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.std() > 20  # not a blank page
    assert (img < 128).mean() > 0.02  # text, tables and figures drawn


@needs_fmnist
def test_posttrain_recipe_study_runs_on_a_finished_demo(quick_demo, tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "experiments/posttrain_recipes.py"),
        str(quick_demo),
        "--out",
        str(tmp_path),
        "--recipes",
        "paper",
        "--names",
        "robust",
        "--seeds",
        "0",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    [row] = json.loads((tmp_path / "summary.json").read_text())
    run = json.loads((tmp_path / "robust-paper-seed0" / "posttrain.json").read_text())
    assert run["reused_discriminator"] is True and run["steps"] == 6  # the quick profile's post-training steps
    assert row["delta"] == [run["gfid_proxy_after"] - run["gfid_proxy_control"]]
    assert "| robust | paper |" in r.stdout


@needs_fmnist
def test_authors_recipe_study_runs_on_the_quick_demo(quick_demo, tmp_path):
    from robustok.losses.aux_perceptual import train_aux_perceptual

    train_aux_perceptual(tmp_path / "aux-perceptual.safetensors", steps=2, log=lambda *_: None)  # reused
    cmd = [
        sys.executable,
        str(ROOT / "experiments/posttrain_authors.py"),
        "--tokenizer",
        str(quick_demo / "tokenizers" / "robust-00024"),
        "--generator",
        str(quick_demo / "runs" / "gen-robust-00024" / "generator"),
        "--out",
        str(tmp_path),
        "--budget",
        "quick",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["same_held_out"] and [a["arm"] for a in result["arms"]] == ["ids", "roundtrip"]
    run = json.loads((tmp_path / "roundtrip" / "post-seed2" / "posttrain.json").read_text())
    assert run["pair_input"] == "roundtrip" and run["ema"] and run["reused_discriminator"] is False
    assert run["steps"] == 4 and [c["epoch"] for c in run["curve"]] == [1.0, 2.0]  # quick: 32 pairs, batch 16
    assert run["config"]["loss"]["l1_weight"] == 0 and run["config"]["loss"]["perceptual"] == "aux"
    assert all("gfid_proxy_raw" in c for c in run["control_curve"])
    ids = result["arms"][0]
    assert ids["delta_vs_control"] == [p - c for p, c in zip(ids["post"], ids["control"])]
    assert len(ids["curve"]) == 2 and len(ids["curve"][1]["raw"]["delta_vs_control"]) == 3
    assert "| roundtrip | 4 (2) |" in r.stdout
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments/posttrain_authors.py"),
            "--plot",
            str(tmp_path / "results.json"),
            str(tmp_path / "curves.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and (tmp_path / "curves.png").stat().st_size > 5000, r.stderr[-2000:]
    result["inception"] = {
        "ids": {
            "untouched": 50.0,
            "post": [1.0, 2.0, 3.0],
            "control": [2.0, 2.0, 2.0],
            "delta_vs_control": ids["delta_vs_control"],
        }
    }  # the table of --inception-check
    (tmp_path / "with-inception.json").write_text(json.dumps(result))
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments/posttrain_authors.py"),
            "--markdown",
            str(tmp_path / "with-inception.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "| ids | 50.00 | 2.00 | 2.00 |" in r.stdout and "| 3 of 3 seeds |" in r.stdout
