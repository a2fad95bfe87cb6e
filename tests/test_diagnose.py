"""`robustok diagnose`: token statistics on known cases, and the command on tiny models (ours and an adapter)."""
import json

import numpy as np
import pytest
import torch

from robustok.cli import main
from robustok.generator import ARConfig, ARGenerator, DiffusionConfig, DiffusionGenerator
from robustok.posttrain.diagnostics import image_statistics, token_statistics
from robustok.posttrain.evidence import EVIDENCE, Condition, estimate, nearby
from tests.helpers import tiny_tokenizer
from tests.test_data import needs_fmnist


def test_token_statistics_known_cases():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 8, size=(40, 4, 4))            # only codes 0..7 of 16
    same = token_statistics(real, real[20:40].copy(), 16)
    assert same["generated"] == same["real_floor"]        # the generated set is the floor set itself
    off = token_statistics(real, rng.integers(8, 16, size=(20, 4, 4)), 16)["generated"]
    assert off["unseen_tokens"] == 1.0 and off["unseen_horizontal_bigrams"] == 1.0
    assert off["position_js_bits"] == pytest.approx(1.0)  # disjoint supports: JS = 1 bit
    with pytest.raises(ValueError, match="real token grids"):
        token_statistics(real[:10], real[:10], 16)


def test_image_statistics_sharpness_and_contrast():
    flat = torch.zeros(2, 1, 16, 16)
    checker = (torch.arange(16).view(1, 16) + torch.arange(16).view(16, 1)) % 2 * 2.0 - 1
    sharp = checker.expand(2, 1, 16, 16)
    a, b = image_statistics(flat), image_statistics(sharp)
    assert a["laplacian_variance"] == 0 and b["laplacian_variance"] > 1000
    assert a["contrast"] == 0 and b["contrast"] == pytest.approx(127.5, rel=0.05)
    assert estimate(125.0, 5.0, "fmnist")["verdict"].startswith("likely to pay")
    assert estimate(12.0, 2.2, "fmnist")["verdict"].startswith("unlikely to pay")
    assert "fmnist-authors.yaml epochs=80 ema_keep=0.21 (3 of 3" in estimate(11.1, 3.67, "fmnist")["verdict"]
    assert "recipe" not in estimate(12.0, 1.0, "fmnist", [Condition("a", 10.0, 1.0, 4, 4, -1.0)])["verdict"]
    mixed = [Condition("a", 10.0, 1.0, 4, 2, 0.0)]
    assert "mixed" in estimate(12.0, 1.0, "fmnist", mixed)["verdict"]
    assert "unknown" in estimate(100.0, 1.0, "fmnist", mixed)["verdict"]
    assert "FID-inception" in estimate(125.0, 5.0, "inception")["verdict"]
    assert nearby(25.0) and all(0.5 <= c.ratio / 25.0 <= 2 for c in nearby(25.0))
    assert all(c.beat <= c.runs for c in EVIDENCE)


def test_evidence_rows_match_the_recorded_studies():
    """The dose-response and E2 rows of EVIDENCE hold the numbers of their committed results files."""
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "experiments" / "results"
    dose = {r["arm"]: r for r in json.loads((results / "posttrain-dose.json").read_text())["arms"]}
    authors = {r["arm"]: r for r in json.loads((results / "posttrain-authors.json").read_text())["arms"]}
    cfg5 = dose["gen2000-cfg5"]
    expected = {f"{r['generator_steps']}-step AR generator" + (", pairs at CFG 5 power 1.15" if r["cfg"] == 5 else "")
                + " (posttrain-dose)": (r, r) for r in dose.values()}
    expected["authors' recipe, 40 epochs, token-id pairs (posttrain-authors)"] = (cfg5, authors["ids"])
    expected["authors' recipe, 40 epochs, round-trip pairs (posttrain-authors)"] = (cfg5, authors["roundtrip"])
    long = json.loads((results / "posttrain-authors-long.json").read_text())["arms"][0]
    expected["authors' recipe, 80 epochs, token-id pairs (posttrain-authors-long)"] = (cfg5, long)
    longer = json.loads((results / "posttrain-authors-longer.json").read_text())["arms"][0]
    expected["authors' recipe, 160 epochs, token-id pairs (posttrain-authors-longer)"] = (cfg5, longer)
    rows = {c.where: c for c in EVIDENCE if c.where in expected}
    assert rows.keys() == expected.keys()
    for where, (gen, run) in expected.items():
        c, deltas = rows[where], run["delta_vs_control"]
        assert (round(c.gfid, 2), round(c.rfid, 2)) == (round(gen["gfid"], 2), round(gen["rfid"], 2)), where
        assert (c.runs, c.beat) == (len(deltas), sum(d < 0 for d in deltas)), where
        assert c.mean_delta == pytest.approx(sum(deltas) / len(deltas), abs=0.006), where


@needs_fmnist
def test_diagnose_command_on_tiny_models(tmp_path, capsys):
    tok = tiny_tokenizer(channel_mult=[1, 2, 2]).eval()
    tok.save_pretrained(tmp_path / "tok")
    torch.manual_seed(0)
    gen = ARGenerator(ARConfig(vocab_size=tok.codebook_size, grid=[8, 8], num_classes=10, dim=32, depth=1, heads=2,
                               tokenizer_fingerprint=tok.fingerprint()))
    gen.save_pretrained(tmp_path / "gen")
    args = ["diagnose", str(tmp_path / "gen"), "--tokenizer", str(tmp_path / "tok"), "--num-samples", "40",
            "--cfg", "1,3", "--features", "random", "--json", str(tmp_path / "d.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "unseen_tokens" in out and "cfg 3" in out and "post-training is" in out
    res = json.loads((tmp_path / "d.json").read_text())
    assert [r["cfg"] for r in res["generated"]] == [1.0, 3.0] and res["discrete"]
    for r in res["generated"]:  # an untrained generator's tokens are far from real ones
        assert r["position_js_bits"] > res["real"]["position_js_bits"]
        assert 0 <= r["roundtrip_change"] <= 1 and r["gfid"] > 0
    # a generator trained on another tokenizer, and too little data: clear errors
    other = tiny_tokenizer(channel_mult=[1, 2, 2], codebook_size=32)
    other.save_pretrained(tmp_path / "other")
    assert main(["diagnose", str(tmp_path / "gen"), "--tokenizer", str(tmp_path / "other"), "--features", "none"]) == 2
    assert "tokenizer" in capsys.readouterr().err
    assert main([*args[:4], "--num-samples", "20000", "--data", "fashion-mnist:test", "--features", "none"]) == 2
    assert "fashion-mnist:test" in capsys.readouterr().err


@needs_fmnist
def test_diagnose_continuous_tokenizer(tmp_path, capsys):
    tok = tiny_tokenizer(bottleneck="kl").eval()
    tok.save_pretrained(tmp_path / "tok")
    gen = DiffusionGenerator(DiffusionConfig(latent_channels=4, grid=[16, 16], num_classes=10, dim=32, depth=1,
                                             heads=2, tokenizer_fingerprint=tok.fingerprint()))
    gen.save_pretrained(tmp_path / "gen")
    assert main(["diagnose", str(tmp_path / "gen"), "--tokenizer", str(tmp_path / "tok"), "--num-samples", "8",
                 "--features", "none", "--json", str(tmp_path / "d.json")]) == 0
    res = json.loads((tmp_path / "d.json").read_text())
    assert not res["discrete"] and "mean_gap_sd" in res["generated"][0] and "gfid" not in res["generated"][0]


@needs_fmnist
def test_diagnose_with_an_adapter_tokenizer(tmp_path, capsys):
    """An off-the-shelf tokenizer (LlamaGen layout, tiny, random weights; gray images become RGB)."""
    from robustok.adapters import LlamaGenVQ, LlamaGenVQConfig
    tok = LlamaGenVQ(LlamaGenVQConfig(image_size=32, base_channels=8, z_channels=16, codebook_size=64,
                                      norm_groups=4)).eval()
    tok.save_pretrained(tmp_path / "tok")
    grid = list(tok.encode(torch.zeros(1, 3, 32, 32)).shape[1:])
    gen = ARGenerator(ARConfig(vocab_size=64, grid=grid, num_classes=10, dim=32, depth=1, heads=2))
    gen.save_pretrained(tmp_path / "gen")
    assert main(["diagnose", str(tmp_path / "gen"), "--tokenizer", str(tmp_path / "tok"), "--num-samples", "16",
                 "--features", "random", "--json", str(tmp_path / "d.json")]) == 0
    res = json.loads((tmp_path / "d.json").read_text())
    assert res["discrete"] and 0 <= res["generated"][0]["unseen_tokens"] <= 1
