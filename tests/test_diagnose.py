"""`robustok diagnose`: token statistics on known cases, and the command on tiny models (ours and an adapter)."""

import json

import numpy as np
import pytest
import torch

from robustok.cli import main
from robustok.generator import ARConfig, ARGenerator, DiffusionConfig, DiffusionGenerator
from robustok.posttrain.diagnostics import image_statistics, token_statistics
from robustok.posttrain.evidence import EVIDENCE, Condition, estimate, load_evidence, nearby
from tests.helpers import needs_fmnist, tiny_tokenizer


def test_token_statistics_known_cases():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 8, size=(40, 4, 4))  # only codes 0..7 of 16
    same = token_statistics(real, real[20:40].copy(), 16)
    assert same["generated"] == same["real_floor"]  # the generated set is the floor set itself
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
    # E2's recipe beat its control on E2's pairs, not on the pairs study's or most new pair sets: no longer named
    assert "recipe" not in estimate(11.1, 3.67, "fmnist")["verdict"]
    # with the masked generator it beat its control on every seed of one pair set, not on other pair sets
    assert "recipe" not in estimate(58.9, 3.67, "fmnist", generator="masked")["verdict"]
    assert "recipe" not in estimate(12.0, 1.0, "fmnist", [Condition("a", 10.0, 1.0, 4, 4, -1.0)])["verdict"]
    mixed = [Condition("a", 10.0, 1.0, 4, 2, 0.0)]
    assert "mixed" in estimate(12.0, 1.0, "fmnist", mixed)["verdict"]
    assert "unknown" in estimate(100.0, 1.0, "fmnist", mixed)["verdict"]
    assert "FID-inception" in estimate(125.0, 5.0, "inception")["verdict"]
    assert nearby(25.0) and all(0.5 <= c.ratio / 25.0 <= 2 for c in nearby(25.0))
    assert all(c.beat <= c.runs == len(c.deltas) for c in EVIDENCE)


def test_estimate_pools_one_generator_kind_and_names_a_recipe_only_if_it_won_everywhere():
    won = [
        Condition("x at 15", 15.0, 1.0, 3, 3, -1.0, "x.yaml", deltas=(-1.0, -1.0, -1.0)),
        Condition("x at 12", 12.0, 1.0, 3, 1, 0.5, "x.yaml", deltas=(1.0, 1.0, -0.5)),
        Condition("y at 14", 14.0, 1.0, 2, 2, -0.2, "y.yaml", deltas=(-0.1, -0.3)),
    ]
    verdict = estimate(15.0, 1.0, "fmnist", won)["verdict"]
    assert "x.yaml" not in verdict  # x lost 2 of 3 at 12, inside the window, so it is not named for 15
    assert "y.yaml (2 of 2, mean post - control -0.20)" in verdict and "6 of 8 runs" in verdict
    assert "x.yaml (3 of 3" in estimate(25.0, 1.0, "fmnist", won)["verdict"]  # 12 is outside 2x of 25
    masked = [Condition("m", 14.0, 1.0, 1, 0, 6.9, "x.yaml", generator="masked", deltas=(6.9,))]
    assert "3 of 3 runs" in estimate(15.0, 1.0, "fmnist", won[:1] + masked)["verdict"]  # not pooled with AR
    assert "0 of 1 runs" in estimate(15.0, 1.0, "fmnist", won[:1] + masked, generator="masked")["verdict"]
    assert estimate(15.0, 1.0, "fmnist", won, generator="diffusion")["verdict"].startswith("unknown: no post-")


def test_shipped_evidence_is_generated_from_the_committed_results():
    """evidence.json equals a fresh `experiments/build_evidence.py`; spot checks against the results files."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("build_evidence", root / "experiments" / "build_evidence.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    fresh = build.render(build.build())
    assert (root / "robustok" / "posttrain" / "evidence.json").read_text() == fresh
    assert load_evidence(fresh) == EVIDENCE
    results = root / "experiments" / "results"
    dose = {r["arm"]: r for r in json.loads((results / "posttrain-dose.json").read_text())["arms"]}
    gen100 = next(c for c in EVIDENCE if c.members == ("posttrain-dose.json:gen100",))
    assert (gen100.gfid, gen100.rfid) == (round(dose["gen100"]["gfid"], 4), round(dose["gen100"]["rfid"], 4))
    assert list(gen100.deltas) == [round(d, 4) for d in dose["gen100"]["delta_vs_control"]]
    # E2's token-id runs (first run, rerun, 80 and 160 epochs: the same seeds and pairs) are one condition of 3 runs
    ids = next(c for c in EVIDENCE if c.recipe.endswith("on token-id pairs"))
    assert (ids.runs, ids.beat, len(ids.members)) == (3, 3, 4)
    per_file = [
        json.loads((results / f"posttrain-authors{n}.json").read_text())["arms"][0]["delta_vs_control"]
        for n in ("-first-run", "", "-long", "-longer")
    ]
    assert ids.deltas == pytest.approx([sum(col) / 4 for col in zip(*per_file)], abs=1e-4)
    assert all((results / m.split(":")[0]).is_file() for c in EVIDENCE for m in c.members)


@needs_fmnist
def test_diagnose_command_on_tiny_models(tmp_path, capsys):
    tok = tiny_tokenizer(channel_mult=[1, 2, 2]).eval()
    tok.save_pretrained(tmp_path / "tok")
    torch.manual_seed(0)
    gen = ARGenerator(
        ARConfig(
            vocab_size=tok.codebook_size,
            grid=[8, 8],
            num_classes=10,
            dim=32,
            depth=1,
            heads=2,
            tokenizer_fingerprint=tok.fingerprint(),
        )
    )
    gen.save_pretrained(tmp_path / "gen")
    args = [
        "diagnose",
        str(tmp_path / "gen"),
        "--tokenizer",
        str(tmp_path / "tok"),
        "--num-samples",
        "40",
        "--cfg",
        "1,3",
        "--features",
        "random",
        "--json",
        str(tmp_path / "d.json"),
    ]
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
    gen = DiffusionGenerator(
        DiffusionConfig(
            latent_channels=4,
            grid=[16, 16],
            num_classes=10,
            dim=32,
            depth=1,
            heads=2,
            tokenizer_fingerprint=tok.fingerprint(),
        )
    )
    gen.save_pretrained(tmp_path / "gen")
    assert (
        main(
            [
                "diagnose",
                str(tmp_path / "gen"),
                "--tokenizer",
                str(tmp_path / "tok"),
                "--num-samples",
                "8",
                "--features",
                "none",
                "--json",
                str(tmp_path / "d.json"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "d.json").read_text())
    assert not res["discrete"] and "mean_gap_sd" in res["generated"][0] and "gfid" not in res["generated"][0]


@needs_fmnist
def test_diagnose_with_an_adapter_tokenizer(tmp_path, capsys):
    """An off-the-shelf tokenizer (LlamaGen layout, tiny, random weights; gray images become RGB)."""
    from robustok.adapters import LlamaGenVQ, LlamaGenVQConfig

    tok = LlamaGenVQ(
        LlamaGenVQConfig(image_size=32, base_channels=8, z_channels=16, codebook_size=64, norm_groups=4)
    ).eval()
    tok.save_pretrained(tmp_path / "tok")
    grid = list(tok.encode(torch.zeros(1, 3, 32, 32)).shape[1:])
    gen = ARGenerator(ARConfig(vocab_size=64, grid=grid, num_classes=10, dim=32, depth=1, heads=2))
    gen.save_pretrained(tmp_path / "gen")
    assert (
        main(
            [
                "diagnose",
                str(tmp_path / "gen"),
                "--tokenizer",
                str(tmp_path / "tok"),
                "--num-samples",
                "16",
                "--features",
                "random",
                "--json",
                str(tmp_path / "d.json"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "d.json").read_text())
    assert res["discrete"] and 0 <= res["generated"][0]["unseen_tokens"] <= 1
