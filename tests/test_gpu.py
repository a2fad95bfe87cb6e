"""CUDA paths (skipped without a GPU): bf16 training, and perturbation, sampling and metrics agree with the CPU."""

import math

import pytest
import torch

from robustok.metrics.features import get_feature_net
from robustok.metrics.inception import candidate_paths
from robustok.metrics.tokenizer_eval import evaluate_tokenizer
from robustok.tokenizer.perturbation import perturb_ids
from robustok.tokenizer.train import TokenizerTask
from robustok.train.logging import read_metrics
from robustok.train.loop import train
from tests.helpers import needs_fmnist, tiny_tokenizer, tiny_train_config
from tests.helpers import random_ar as make

pytestmark = pytest.mark.gpu


@needs_fmnist
def test_tokenizer_training_runs_on_cuda_in_bf16(tmp_path):
    torch.cuda.reset_peak_memory_stats()
    cfg = tiny_train_config(tmp_path / "r", "train.steps=6", "loss.disc_weight=0.5", "loss.disc_start=2")
    train(TokenizerTask(cfg), cfg.run, cfg.train, cfg.data, full_config=cfg)
    assert torch.cuda.max_memory_allocated() > 0  # the loop picked the GPU by itself
    rows = read_metrics(tmp_path / "r")
    assert len(rows) == 6 and all(math.isfinite(r["loss"]) for r in rows)


def test_perturbation_on_cuda_matches_theory():
    g = torch.Generator(device="cuda").manual_seed(0)
    cb = torch.nn.functional.normalize(torch.randn(512, 8, device="cuda", generator=g), dim=1)
    ids = torch.randint(0, 512, (256, 16, 16), device="cuda", generator=g)
    new = perturb_ids(ids, cb, 0.5, 20, generator=g)
    assert new.device.type == "cuda"
    assert abs((new != ids).float().mean().item() - 0.5 * (1 - 1 / 20)) < 0.01
    rank = (cb[ids] @ cb.T > (cb[ids] * cb[new]).sum(-1, keepdim=True) + 1e-6).sum(-1)
    assert rank.max().item() < 20  # every replacement is among the 20 nearest


def test_kv_cache_matches_no_cache_on_cuda():
    m = make("rope", True, adaln=True).cuda()
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 2], device="cuda")
    kw = dict(cfg=3.0, temperature=1.1, top_k=30, top_p=0.95)
    a = m.sample(labels, generator=torch.Generator("cuda").manual_seed(1), use_cache=True, **kw)
    b = m.sample(labels, generator=torch.Generator("cuda").manual_seed(1), use_cache=False, **kw)
    assert a.device.type == "cuda" and torch.equal(a, b)


def test_ar_training_step_in_bf16_matches_fp32_loss():
    m = make().float().cuda().train()
    tokens = torch.randint(0, 48, (8, 4, 4), device="cuda")
    labels = torch.randint(0, 5, (8,), device="cuda")
    fp32 = m.loss(tokens, labels).item()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = m.loss(tokens, labels)
    bf16.backward()
    assert bf16.item() == pytest.approx(fp32, rel=0.05)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in m.parameters())


def test_tokenizer_metrics_on_cuda_match_the_cpu():
    torch.manual_seed(0)
    tok = tiny_tokenizer().eval()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(16, 1, 32, 32, generator=g) * 2 - 1, None) for _ in range(2)]
    metrics = ["psnr", "ssim", "usage"]
    cpu = evaluate_tokenizer(tok, batches, metrics)
    gpu = evaluate_tokenizer(tok.cuda(), batches, metrics)
    assert gpu["psnr"] == pytest.approx(cpu["psnr"], abs=0.01)
    assert gpu["ssim"] == pytest.approx(cpu["ssim"], abs=1e-3)
    assert gpu["codebook_usage"] == pytest.approx(cpu["codebook_usage"], abs=0.05)


@pytest.mark.skipif(not any(p.is_file() for p in candidate_paths()), reason="needs the FID Inception weights")
def test_inception_features_on_cuda_match_the_cpu():
    imgs = torch.randint(0, 256, (8, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    cpu = get_feature_net("inception")(imgs)
    gpu = get_feature_net("inception", "cuda")(imgs).cpu()
    assert ((gpu - cpu).abs().max() / cpu.abs().max()).item() < 1e-2  # cuDNN may use TF32 convolutions


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_static_cuda_graph_decoder_matches_dynamic_cache_on_cuda(dtype):
    from robustok.generator.decode import _DECODERS

    m = make("rope", True, adaln=True).to("cuda", dtype)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 2], device="cuda")
    real = torch.randint(0, 48, (7, 16), device="cuda")
    mask = torch.rand(7, 16, device="cuda") < 0.3
    for kw in (
        dict(cfg=3.0, temperature=1.1, top_k=30, top_p=0.95),
        dict(cfg_schedule="power", cfg=2.0, cfg_power=2.0),
        dict(cfg=2.0, keep_mask=mask, prefix_tokens=real),
    ):
        for seed in (1, 2):  # the second call replays the graphs captured by the first
            want = m.sample(labels, generator=torch.Generator("cuda").manual_seed(seed), **kw)
            got = m.sample(labels, generator=torch.Generator("cuda").manual_seed(seed), static_cache=True, **kw)
            assert got.device.type == "cuda" and torch.equal(got, want), kw
        assert _DECODERS[m].use_graphs and _DECODERS[m].captures == 1
    cpu_gen = m.sample(labels, generator=torch.Generator().manual_seed(3), static_cache=True)  # a CPU generator
    assert torch.equal(cpu_gen, m.sample(labels, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_static_decoder_on_released_generators_matches_on_cuda(dtype):
    """Converted RAR (adaLN condition changing per step) and LlamaGen GPT: CUDA-graph decoding = dynamic cache."""
    from robustok.generator.decode import _DECODERS
    from robustok.generator.llamagen_gpt import LlamaGenGPT, LlamaGenGPTConfig
    from robustok.generator.rar import RARConfig, RARGenerator

    torch.manual_seed(0)
    models = [
        RARGenerator(RARConfig(grid=[4, 4], num_classes=10, vocab_size=32, dim=32, depth=2, heads=2, mlp_dim=64)),
        LlamaGenGPT(
            LlamaGenGPTConfig(grid=[4, 4], num_classes=10, vocab_size=32, dim=32, depth=2, heads=2, ffn_dim=48)
        ),
    ]
    labels = torch.tensor([0, 1, 2, 9, 10], device="cuda")
    for m in models:
        for p in m.parameters():  # fresh RAR tables are zero: give every part some weight
            torch.nn.init.normal_(p, std=0.3)
        m = m.to("cuda", dtype).eval()
        for kw in (dict(cfg=6.0, cfg_schedule="power", cfg_power=1.15, temperature=1.02), dict(cfg=2.0, top_k=8)):
            for seed in (1, 2):
                want = m.sample(labels, generator=torch.Generator("cuda").manual_seed(seed), **kw)
                got = m.sample(labels, generator=torch.Generator("cuda").manual_seed(seed), static_cache=True, **kw)
                assert torch.equal(got, want), (type(m).__name__, kw)
            assert _DECODERS[m].use_graphs and _DECODERS[m].captures == 1
