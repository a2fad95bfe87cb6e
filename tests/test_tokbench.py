"""`robustok benchmark-tokenizers` on three tiny tokenizers (tiny budgets), its cache, its errors and its
statistics."""

import json
import math

import pytest
import torch

from robustok.cli import main
from robustok.tokbench.stats import compare_predictors, pair_ordering
from tests.helpers import needs_fmnist, tiny_tokenizer

TINY = [
    "--gen-steps",
    "3",
    "--pretok-images",
    "48",
    "--eval-images",
    "32",
    "--gen-images",
    "24",
    "--features",
    "random",
    "--bootstrap",
    "50",
    "--gen-override",
    "model.dim=32",
    "--gen-override",
    "model.depth=1",
    "--gen-override",
    "model.heads=2",
    "--gen-override",
    "data.batch_size=16",
]


def _tokenizers(root, sizes=(64, 64, 64)):
    paths = []
    for i, k in enumerate(sizes):
        torch.manual_seed(i)
        paths.append(str(tiny_tokenizer(codebook_size=k).save_pretrained(root / f"tok{i}")))
    return paths


@needs_fmnist
def test_benchmark_end_to_end_and_cached(tmp_path, capsys):
    toks = _tokenizers(tmp_path)
    out = tmp_path / "bench"
    assert main(["benchmark-tokenizers", *toks, "--out", str(out), *TINY, "--json", str(tmp_path / "r.json")]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in res["tokenizers"]] == ["tok0", "tok1", "tok2"]
    for r in res["tokenizers"]:
        assert len(r["pfid_grid"]) == 15 and r["gfid_cfg"] > 0 and r["gfid_nocfg"] > 0
        assert len(r["per_seed"]) == 1 and len(r["per_seed"][0]["gfid_cfg_sets"]) == 2
    group = res["by_codebook_size"]["64"]
    assert group["tokenizers"] == ["tok0", "tok1", "tok2"] and group["gfid_cfg"]["ordering"]["pairs"] <= 3
    assert (out / "scatter.png").stat().st_size > 1000 and (tmp_path / "r.json").is_file()
    assert "pairs ordered as gFID" in capsys.readouterr().out
    gen = out / "runs" / "gen-tok0-seed0" / "generator" / "model.safetensors"
    stamp = gen.stat().st_mtime_ns
    assert main(["benchmark-tokenizers", *toks, "--out", str(out), *TINY]) == 0  # all cached
    assert gen.stat().st_mtime_ns == stamp
    assert json.loads((out / "results.json").read_text())["tokenizers"] == res["tokenizers"]


def test_bad_input_is_refused_before_anything_is_written(tmp_path, capsys):
    toks = _tokenizers(tmp_path, (64, 32, 64))
    out = tmp_path / "bench"
    cases = [
        ([*toks], "different codebook sizes"),
        ([toks[0], str(tmp_path / "nope")], "not a tokenizer directory"),
        ([toks[0], str(tmp_path)], "config.json"),
        ([toks[0]], "at least two"),
    ]
    for paths, message in cases:
        assert main(["benchmark-tokenizers", *paths, "--out", str(out), *TINY]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    from robustok.tokenizer.model import Tokenizer, TokenizerConfig

    kl = Tokenizer(TokenizerConfig(base_channels=8, channel_mult=[1, 2], hidden_dim=16, bottleneck="kl", code_dim=4))
    kl.save_pretrained(tmp_path / "kl")
    assert main(["benchmark-tokenizers", toks[0], str(tmp_path / "kl"), "--out", str(out), *TINY]) == 2
    assert "no codebook" in capsys.readouterr().err and not out.exists()
    assert main(["benchmark-tokenizers", *toks[:1], toks[2], "--out", str(out), *TINY, "--gen-seeds", "a"]) == 2


def test_statistics_on_known_cases():
    g = [1.0, 2.0, 3.0, 4.0, 5.0]
    perfect, reversed_ = [10.0, 20.0, 30.0, 40.0, 50.0], [5.0, 4.0, 3.0, 2.0, 1.0]
    c = compare_predictors(perfect, reversed_, g, samples=200)
    assert c["spearman"]["a"] == pytest.approx(1.0) and c["spearman"]["b"] == pytest.approx(-1.0)
    assert c["spearman"]["difference"] == pytest.approx(2.0)
    lo, hi = c["spearman"]["ci95"]
    assert lo <= 2.0 + 1e-9 and hi == pytest.approx(2.0)
    o = pair_ordering(perfect, reversed_, g)
    assert o == {
        "pairs": 10,
        "a_accuracy": 1.0,
        "b_accuracy": 0.0,
        "disagreeing_pairs": 10,
        "a_accuracy_on_disagreeing": 1.0,
        "b_accuracy_on_disagreeing": 0.0,
    }
    # one swapped pair: the metrics disagree only there, and rFID is right about it
    o = pair_ordering([1, 3, 2], [1, 2, 3], [1, 2, 3])
    assert (
        o["disagreeing_pairs"] == 1 and o["a_accuracy_on_disagreeing"] == 0.0 and o["b_accuracy_on_disagreeing"] == 1.0
    )
    assert math.isnan(compare_predictors([1, 2], [1, 2], [1, 2])["spearman"]["a"])
