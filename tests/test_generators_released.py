"""Released generators (issue 20): LlamaGen GPT, RAR and the RobusTok release's RAR, converted from stand-in files
in the upstream layouts (tests/released_standins.py), checked against reference forwards written here from the
published equations (not from robustok's modules), sampled identically by the dynamic and the static decoder,
and run through the CLI (convert, sample --preset, post-train-data, post-train --control, diagnose)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustok.adapters import load_external
from robustok.adapters.generators import load_external_generator
from robustok.cli import main
from robustok.errors import CheckpointError, ConfigError
from robustok.generator import load_generator
from robustok.generator.guidance import guidance_scale
from robustok.generator.published import PRESETS
from robustok.tokenizer.loading import load_tokenizer
from robustok.weight_files import read_checkpoint
from tests.released_standins import CONVERT, NUM_CLASSES, image_folder, llamagen_gpt_state, write_standins

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- reference forwards, from the equations ------------------------------------------------------------------
def _rms(x, w, eps=1e-5):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def _ln(x, w=None, b=None, eps=1e-6):
    y = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
    return y if w is None else y * w + b


def _attend(q, k, v):
    """Causal softmax attention of (B, T, H, dh) tensors, explicit."""
    T, dh = q.shape[1], q.shape[-1]
    a = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(dh)
    a = a.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")).softmax(-1)
    return torch.einsum("bhqk,bkhd->bqhd", a, v).flatten(2)


def llamagen_reference(S: dict, tokens: torch.Tensor, labels: torch.Tensor, heads: int, g: int) -> torch.Tensor:
    """Logits (B, L, K) of LlamaGen's GPT in float64: input 0 = class, input j = token j-1; 2-D RoPE as complex
    rotations of consecutive channel pairs (rows: first half, columns: second half), the class input's zeroed."""
    S = {k: v.double() for k, v in S.items()}
    B, L = tokens.shape
    x = torch.cat(
        [S["cls_embedding.embedding_table.weight"][labels][:, None], S["tok_embeddings.weight"][tokens[:, :-1]]], 1
    )
    D = x.shape[-1]
    dh = D // heads
    freqs = 10000.0 ** (-torch.arange(dh // 4, dtype=torch.float64) / (dh // 4))
    cell = torch.arange(L - 1)
    ang = torch.cat([(cell // g)[:, None] * freqs, (cell % g)[:, None] * freqs], 1)
    rot = torch.cat([torch.zeros(1, dh // 2, dtype=torch.complex128), torch.polar(torch.ones_like(ang), ang)])

    def rope(t):
        c = torch.view_as_complex(t.reshape(B, L, heads, dh // 2, 2).contiguous())
        return torch.view_as_real(c * rot[None, :, None]).reshape(B, L, heads, dh)

    depth = len({k.split(".")[1] for k in S if k.startswith("layers.")})
    for i in range(depth):
        p = f"layers.{i}."
        h = _rms(x, S[p + "attention_norm.weight"])
        q, k, v = (h @ S[p + "attention.wqkv.weight"].T).split(D, -1)
        q, k, v = (t.reshape(B, L, heads, dh) for t in (q, k, v))
        x = x + _attend(rope(q), rope(k), v) @ S[p + "attention.wo.weight"].T
        h = _rms(x, S[p + "ffn_norm.weight"])
        x = (
            x
            + (F.silu(h @ S[p + "feed_forward.w1.weight"].T) * (h @ S[p + "feed_forward.w3.weight"].T))
            @ S[p + "feed_forward.w2.weight"].T
        )
    return _rms(x, S["norm.weight"]) @ S["output.weight"].T


def rar_reference(S: dict, tokens: torch.Tensor, labels: torch.Tensor, heads: int, K: int) -> torch.Tensor:
    """Logits (B, L, K) of RAR in raster order, float64: inputs [cls_token, class, x_0..x_{L-2}] at positions
    0..L, + pos_embed[i] + target_aware_pos_embed[i+1] (i >= 1); adaLN condition class + timesteps_embeddings[i]."""
    S = {k: v.double() for k, v in S.items()}
    B, L = tokens.shape
    E = S["embeddings.weight"]
    cls = E[labels + K + 1]
    x = torch.cat([S["cls_token"].expand(B, 1, -1), cls[:, None], E[tokens[:, :-1]]], 1)
    D = x.shape[-1]
    x = x + S["pos_embed"][0, : L + 1]
    x[:, 1:] = x[:, 1:] + S["target_aware_pos_embed"][0, 2 : L + 2]
    c = F.silu(cls[:, None] + S["timesteps_embeddings"][0, : L + 1])
    depth = len({k.split(".")[1] for k in S if k.startswith("blocks.")})
    for i in range(depth):
        p = f"blocks.{i}."
        sh1, sc1, g1, sh2, sc2, g2 = (
            c @ S[p + "adaLN_modulation.1.weight"].T + S[p + "adaLN_modulation.1.bias"]
        ).chunk(6, -1)
        h = _ln(x, S[p + "norm1.weight"], S[p + "norm1.bias"]) * (1 + sc1) + sh1
        q, k, v = (h @ S[p + "attn.qkv.weight"].T + S[p + "attn.qkv.bias"]).split(D, -1)
        q, k, v = (t.reshape(B, L + 1, heads, D // heads) for t in (q, k, v))
        q = _ln(q, S[p + "attn.q_norm.weight"], S[p + "attn.q_norm.bias"])
        k = _ln(k, S[p + "attn.k_norm.weight"], S[p + "attn.k_norm.bias"])
        x = x + g1 * (_attend(q, k, v) @ S[p + "attn.proj.weight"].T + S[p + "attn.proj.bias"])
        h = _ln(x, S[p + "norm2.weight"], S[p + "norm2.bias"]) * (1 + sc2) + sh2
        h = F.gelu(h @ S[p + "mlp.fc1.weight"].T + S[p + "mlp.fc1.bias"]) @ S[p + "mlp.fc2.weight"].T
        x = x + g2 * (h + S[p + "mlp.fc2.bias"])
    scale, shift = (
        c @ S["adaln_before_head.adaLN_modulation.1.weight"].T + S["adaln_before_head.adaLN_modulation.1.bias"]
    ).chunk(2, -1)
    out = (_ln(x) * (1 + scale) + shift) @ S["lm_head.weight"].T + S["lm_head.bias"]
    return out[:, 1:]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


# ---- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The stand-in files and their conversions (through the CLI, as CONVERT lists them)."""
    root = tmp_path_factory.mktemp("released")
    files = write_standins(root / "files")
    for family in CONVERT.values():
        for argv in family:
            assert main([a.format(d=root / "files", o=root / "out") for a in argv]) == 0
    return root, files


def _tokens(K: int, n: int = 3, L: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, K, (n, L), generator=g), torch.randint(0, NUM_CLASSES + 1, (n,), generator=g)


# ---- equations --------------------------------------------------------------------------------------------------
def test_llamagen_logits_match_the_reference(converted):
    root, files = converted
    gen = load_generator(root / "out" / "llamagen-gpt-b")
    state, _ = read_checkpoint(files["llamagen-gpt"])
    tokens, labels = _tokens(64)
    ref = llamagen_reference(state, tokens, labels, heads=2, g=4)
    assert _rel(gen(tokens.view(-1, 4, 4), labels), ref) <= 1e-5
    assert gen.config.ffn_dim == 48 and gen.config.grid == [4, 4] and gen.null_class == NUM_CLASSES


@pytest.mark.parametrize("name,K", [("rar-b", 32), ("robustok-rar-b", 64)])
def test_rar_logits_match_the_reference(converted, name, K):
    root, files = converted
    gen = load_generator(root / "out" / name)
    state = torch.load(files["rar" if K == 32 else "robustok-rar"], weights_only=True)
    tokens, labels = _tokens(K)
    ref = rar_reference(state, tokens, labels, heads=2, K=K)
    assert _rel(gen(tokens.view(-1, 4, 4), labels), ref) <= 1e-5
    # every part matters: a model without the step / target-aware embeddings gives other logits
    for key in ("timesteps_embeddings", "target_aware_pos_embed"):
        changed = dict(state, **{key: torch.zeros_like(state[key])})
        assert _rel(rar_reference(changed, tokens, labels, 2, K), ref) > 1e-3


@pytest.mark.parametrize("name", ["llamagen-gpt-b", "rar-b"])
def test_cached_steps_match_the_teacher_forced_logits(converted, name):
    """Greedy decoding with the KV cache, without it, and the argmax of the teacher-forced logits agree."""
    root, _ = converted
    gen = load_generator(root / "out" / name)
    labels = torch.tensor([0, 3, NUM_CLASSES])
    cached = gen.sample(labels, temperature=0)
    assert torch.equal(cached, gen.sample(labels, temperature=0, use_cache=False))
    assert torch.equal(gen(cached, labels).argmax(-1), cached.flatten(1))


@pytest.mark.parametrize("name", ["llamagen-gpt-b", "rar-b", "robustok-rar-b"])
def test_static_decoder_samples_bit_identically(converted, name):
    root, _ = converted
    gen = load_generator(root / "out" / name)
    labels = torch.tensor([1, 2, 5, 7])
    real = torch.randint(0, gen.config.vocab_size, (4, 4, 4), generator=torch.Generator().manual_seed(3))
    keep = torch.rand(4, 16, generator=torch.Generator().manual_seed(4)) < 0.7
    for kw in (
        dict(cfg=4.0, cfg_schedule="power", cfg_power=2.75, temperature=1.02),
        dict(cfg=1.0),
        dict(cfg=2.0, top_k=5, top_p=0.9, keep_mask=keep, prefix_tokens=real),
    ):
        a = gen.sample(labels, generator=torch.Generator().manual_seed(0), **kw)
        b = gen.sample(labels, generator=torch.Generator().manual_seed(0), static_cache=True, **kw)
        assert torch.equal(a, b), kw
    assert torch.equal(a.flatten(1)[keep], real.flatten(1)[keep])


def test_power_zero_is_a_constant_scale():
    assert [guidance_scale(6.0, s, 16, "power", 0.0) for s in (0, 5, 15)] == [6.0, 6.0, 6.0]
    assert guidance_scale(6.0, 0, 16, "power", 1.15) == 1.0


def test_presets_hold_the_published_settings():
    rar_b, lg = PRESETS["robustok-rar-b"], PRESETS["llamagen-xxl-384"]
    assert (rar_b.temperature, rar_b.cfg, rar_b.cfg_power, rar_b.fid, rar_b.fid_post) == (1.02, 6.0, 1.15, 1.83, 1.60)
    assert (lg.cfg, lg.cfg_schedule, lg.labels, lg.resize, lg.image_size) == (1.75, "constant", "random", 256, 384)
    assert all(p.labels == "balanced" and p.cfg_schedule == "power" for n, p in PRESETS.items() if "rar" in n)


# ---- conversion errors ------------------------------------------------------------------------------------------
def test_conversion_refuses_mismatches(converted, tmp_path):
    root, files = converted
    maskgit = load_external("maskgit-vqgan", files["maskgit"], image_size=64, norm_groups=4)
    robustok = load_external("robustok-release", files["robustok"], heads=2)
    with pytest.raises(CheckpointError, match=r"rar_b\.bin: a RAR generator over 64 token ids; the tokenizer has 32"):
        load_external_generator("rar", files["robustok-rar"], maskgit)
    with pytest.raises(ConfigError, match=r"a robustok-release.*pair with a converted maskgit-vqgan"):
        load_external_generator("rar", files["rar"], robustok)
    with pytest.raises(CheckpointError, match=r"maskgit-vqgan-imagenet-f16-256\.bin: not a RAR checkpoint"):
        load_external_generator("rar", files["maskgit"], maskgit)
    state = torch.load(files["rar"], weights_only=True)
    state["blocks.0.attn.extra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "odd.bin")
    with pytest.raises(
        CheckpointError,
        match=r"odd\.bin: keys a RAR checkpoint does not have: "
        r"\['blocks\.0\.attn\.extra\.weight'\]",
    ):
        load_external_generator("rar", tmp_path / "odd.bin", maskgit)
    state = llamagen_gpt_state(0, K=64)
    del state["layers.1.ffn_norm.weight"]
    state["freqs_cis"] = torch.zeros(17, 8, 2)  # ignored
    torch.save(state, tmp_path / "fsdp.pt")  # a bare (FSDP) dict
    vq = load_tokenizer(root / "out" / "llamagen-vq16")
    with pytest.raises(
        CheckpointError,
        match=r"fsdp\.pt: weights do not fit LlamaGenGPT \(missing "
        r"\['blocks\.1\.norm2\.weight'\]",
    ):
        load_external_generator("llamagen-gpt", tmp_path / "fsdp.pt", vq, heads=2)
    with pytest.raises(ConfigError, match=r"cannot tell the head count of a 32-wide LlamaGen GPT"):
        load_external_generator("llamagen-gpt", files["llamagen-gpt"], vq)


def test_ema_entry_and_sizes_read_off_shapes(converted):
    root, files = converted
    vq = load_tokenizer(root / "out" / "llamagen-vq16")
    model, _ = read_checkpoint(files["llamagen-gpt"])
    path = files["llamagen-gpt"].with_name("c2i_ema.pt")
    torch.save({"model": model, "ema": llamagen_gpt_state(5, K=64)}, path)
    a = load_external_generator("llamagen-gpt", path, vq, heads=2)
    b = load_external_generator("llamagen-gpt", path, vq, weights="ema", heads=2)
    assert torch.equal(a.tok_emb.weight, model["tok_embeddings.weight"])
    assert not torch.equal(a.tok_emb.weight, b.tok_emb.weight)
    assert (a.config.dim, a.config.depth, a.config.num_classes, a.config.vocab_size) == (32, 2, NUM_CLASSES, 64)
    assert a.config.tokenizer_fingerprint == vq.fingerprint()
    torch.save({**model, "freqs_cis": torch.zeros(17, 8, 2)}, path.with_name("consolidated.pth"))  # FSDP: bare
    bare = load_external_generator("llamagen-gpt", path.with_name("consolidated.pth"), vq, heads=2)
    assert all(torch.equal(x, y) for x, y in zip(bare.state_dict().values(), a.state_dict().values()))


# ---- the CLI on converted generators ----------------------------------------------------------------------------
def test_cli_sample_pairs_posttrain_and_diagnose(converted, tmp_path, monkeypatch, capsys):
    root, _ = converted
    out = root / "out"
    monkeypatch.chdir(tmp_path)
    images = image_folder(tmp_path / "imgs", 32)
    gen, tok = str(out / "robustok-rar-b"), str(out / "robustok-tok")
    assert (
        main(
            [
                "sample",
                gen,
                "--tokenizer",
                tok,
                "--num-images",
                "12",
                "--batch-size",
                "6",
                "--preset",
                "robustok-rar-b",
                "--static-cache",
                "--out",
                "s",
                "--no-progress",
            ]
        )
        == 0
    )
    npz = np.load(tmp_path / "s" / "samples.npz")
    assert npz["arr_0"].shape == (12, 32, 32, 3) and list(npz["arr_1"]) == [i % NUM_CLASSES for i in range(12)]
    assert (
        main(
            [
                "post-train-data",
                gen,
                "--tokenizer",
                tok,
                "--data",
                str(images),
                "--sigma",
                "0.7",
                "--preset",
                "robustok-rar-b",
                "--num-pairs",
                "6",
                "--num-eval",
                "4",
                "--batch-size",
                "3",
                "--out",
                "pairs",
                "--no-progress",
            ]
        )
        == 0
    )
    manifest = json.loads((tmp_path / "pairs" / "manifest.json").read_text())
    assert manifest["generator"] == "rar" and manifest["sampling"]["cfg"] == 6.0
    assert manifest["sampling"]["cfg_power"] == 1.15 and manifest["sampling"]["temperature"] == 1.02
    cfg = "fmnist"  # the shipped post-training preset
    assert (
        main(
            [
                "post-train",
                cfg,
                f"tokenizer={tok}",
                "pairs=pairs",
                "run.dir=post",
                "run.progress=false",
                "data.batch_size=2",
                "train.steps=2",
                "train.warmup_steps=1",
                "eval_every=1",
                "eval_features=random",
                "eval_num_reference=8",
                "--control",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "diagnose",
                gen,
                "--tokenizer",
                tok,
                "--data",
                str(images),
                "--num-samples",
                "4",
                "--cfg",
                "1,6",
                "--cfg-schedule",
                "power",
                "--cfg-power",
                "1.15",
                "--features",
                "random",
            ]
        )
        == 0
    )
    assert "cfg 6" in capsys.readouterr().out
    # a converted generator with another family's tokenizer is refused
    assert (
        main(
            [
                "sample",
                gen,
                "--tokenizer",
                str(out / "maskgit-vqgan"),
                "--num-images",
                "2",
                "--out",
                "t",
                "--no-progress",
            ]
        )
        == 2
    )
    assert not (tmp_path / "t").exists()


def test_cli_llamagen_random_labels_and_resize(converted, tmp_path, monkeypatch):
    root, _ = converted
    out = root / "out"
    monkeypatch.chdir(tmp_path)
    args = [
        "sample",
        str(out / "llamagen-gpt-b"),
        "--tokenizer",
        str(out / "llamagen-vq16"),
        "--num-images",
        "8",
        "--batch-size",
        "4",
        "--preset",
        "llamagen-xl-384",
        "--no-progress",
    ]
    assert main(args + ["--out", "a"]) == 0
    assert main(args + ["--out", "b", "--static-cache", "--labels", "balanced", "--resize", "48"]) == 0
    a, b = np.load(tmp_path / "a" / "samples.npz"), np.load(tmp_path / "b" / "samples.npz")
    assert a["arr_0"].shape == (8, 256, 256, 3) and b["arr_0"].shape == (8, 48, 48, 3)
    assert list(b["arr_1"]) == [i % NUM_CLASSES for i in range(8)]
    expected = torch.randint(0, NUM_CLASSES, (8,), generator=torch.Generator().manual_seed(0))
    assert list(a["arr_1"]) == expected.tolist()


def test_converted_generators_train_but_are_not_built_fresh(converted):
    from robustok.generator.task import GeneratorModelConfig, ObjectiveConfig, build_generator

    root, _ = converted
    gen = load_generator(root / "out" / "rar-b").train()
    tokens, labels = _tokens(32)
    loss = gen.training_loss(gen, tokens.view(-1, 4, 4), labels, 0, 1, ObjectiveConfig(label_dropout=0.0))["loss"]
    loss.backward()
    assert torch.isfinite(loss) and gen.step_emb.grad is not None and gen.step_emb.grad.abs().sum() > 0
    with torch.no_grad():
        expected = F.cross_entropy(gen(tokens.view(-1, 4, 4), labels).flatten(0, 1), tokens.flatten())
    assert torch.allclose(loss, expected)

    class Store:
        kind, codebook_size, grid, num_classes, fingerprint, dir = "ids", 32, [4, 4], NUM_CLASSES, "", "store"

    with pytest.raises(ConfigError, match=r"model\.kind=rar: a RAR generator is converted from its released weights"):
        build_generator(GeneratorModelConfig(kind="rar"), Store())


def test_cross_entropy_check_runs_on_converted_generators(converted, tmp_path, monkeypatch):
    """`generator-ce` (issue 20 part 2, built elsewhere) on a converted RAR: the mean next-token loss of the store."""
    root, _ = converted
    out = root / "out"
    monkeypatch.chdir(tmp_path)
    images = image_folder(tmp_path / "imgs", 32, per_class=1)
    gen, tok = str(out / "robustok-rar-b"), str(out / "robustok-tok")
    assert main(["pretokenize", tok, "--data", str(images), "--out", "tokens", "--no-progress"]) == 0
    assert main(["generator-ce", gen, "--tokens", "tokens", "--json", "ce.json", "--no-progress"]) == 0
    ce = json.loads((tmp_path / "ce.json").read_text())
    from robustok.tokens.store import open_token_store

    codes, labels = open_token_store("tokens").arrays()
    model = load_generator(gen)
    x, y = torch.from_numpy(np.asarray(codes).astype(np.int64)), torch.from_numpy(np.asarray(labels).astype(np.int64))
    with torch.no_grad():
        want = F.cross_entropy(model(x, y).flatten(0, 1), x.flatten()).item()
    assert ce["entries"] == NUM_CLASSES and abs(ce["cross_entropy"] - want) < 1e-5


def test_convert_from_a_hub_reference(converted, tmp_path, monkeypatch):
    """The released files as users name them on the Hub (`hf://yucornetto/RAR/rar_b.bin`), read from a cache."""
    pytest.importorskip("huggingface_hub")
    from tests.helpers import cached_repo

    root, files = converted
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached_repo(cache, "yucornetto/RAR", {"rar_b.bin": files["rar"]})
    assert (
        main(
            [
                "convert",
                "rar",
                "hf://yucornetto/RAR/rar_b.bin",
                "--tokenizer",
                str(root / "out" / "maskgit-vqgan"),
                "--out",
                str(tmp_path / "rar-b"),
            ]
        )
        == 0
    )
    a, b = load_generator(tmp_path / "rar-b"), load_generator(root / "out" / "rar-b")
    assert a.fingerprint() == b.fingerprint()


def test_llamagen_cfg_interval(converted, tmp_path, monkeypatch):
    """LlamaGen's cfg_interval: token s is guided iff s <= cfg_interval + 1; the same through the static decoder;
    a flag of llamagen-gpt only."""
    from robustok.generator.guidance import DrawRule

    logits = torch.randn(4, 8)
    cond, uncond = logits[:2], logits[2:]
    rule = DrawRule(cfg=3.0, temperature=0, interval=2)
    for step in range(6):
        want = cond if step > 3 else cond + 2.0 * (cond - uncond)
        assert torch.equal(rule.apply(logits, 2, step, 16), want)
    root, _ = converted
    gen = load_generator(root / "out" / "llamagen-gpt-b")
    labels = torch.tensor([1, 4, 7])
    runs = {
        k: gen.sample(labels, cfg=4.0, generator=torch.Generator().manual_seed(0), cfg_interval=k) for k in (-1, 0, 14)
    }
    assert torch.equal(runs[-1], runs[14]) and not torch.equal(runs[-1], runs[0])
    assert torch.equal(
        runs[0],
        gen.sample(labels, cfg=4.0, generator=torch.Generator().manual_seed(0), cfg_interval=0, static_cache=True),
    )
    monkeypatch.chdir(tmp_path)
    out = root / "out"
    common = ["--num-images", "3", "--cfg", "4", "--no-progress"]
    assert (
        main(
            [
                "sample",
                str(out / "llamagen-gpt-b"),
                "--tokenizer",
                str(out / "llamagen-vq16"),
                "--cfg-interval",
                "0",
                "--out",
                "a",
            ]
            + common
        )
        == 0
    )
    assert (
        main(
            [
                "sample",
                str(out / "rar-b"),
                "--tokenizer",
                str(out / "maskgit-vqgan"),
                "--cfg-interval",
                "0",
                "--out",
                "b",
            ]
            + common
        )
        == 2
    )
