"""The masked-token (MaskGIT-style) generator: loss, mask schedule, parallel decoding, CFG, pairs, save/load, CLI."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustok.cli import main
from robustok.errors import CheckpointError, ConfigError, DataError
from robustok.generator import load_generator
from robustok.generator.masked import MaskedConfig, MaskedGenerator, MaskedSampling, masked_loss
from robustok.generator.sampling import SamplingOptions
from robustok.tokens.pairs import PairStore
from tests.helpers import ROOT, gray_class_folder, tiny16_tokenizer

K, GRID, C = 16, [3, 4], 3


def model(seed: int = 0, **kw) -> MaskedGenerator:
    """A tiny generator with a random (not zero) head, so that the logits differ between tokens."""
    torch.manual_seed(seed)
    m = MaskedGenerator(MaskedConfig(vocab_size=K, grid=GRID, num_classes=C, dim=32, depth=2, heads=2, **kw))
    torch.nn.init.normal_(m.head.weight, std=1.0)
    return m.eval()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_loss_is_cross_entropy_on_masked_positions_only():
    m = model()
    x = torch.randint(0, K, (4, *GRID))
    y = torch.tensor([0, 1, 2, 3])  # 3 = the null class
    mask = torch.zeros(4, 12, dtype=torch.bool)
    mask[:, :5] = True
    mask[1, 7] = True
    loss = masked_loss(m, m, x, y, mask=mask)
    inp = x.flatten(1).masked_fill(mask, m.mask_id)
    ce = F.cross_entropy(m(inp, y).flatten(0, 1), x.flatten(), reduction="none").view(4, 12)
    assert torch.allclose(loss, ce[mask].mean())
    assert not torch.allclose(loss, ce.mean())
    # the targets of unmasked positions do not matter: change them only in the target (inputs fixed)
    calls = []
    m.register_forward_hook(lambda mod, args, out: calls.append(args[0].clone()))
    masked_loss(m, m, x, y, mask=mask)
    assert (calls[0][mask] == m.mask_id).all() and (calls[0][~mask] == x.flatten(1)[~mask]).all()


def test_random_mask_follows_the_cosine_schedule():
    m = model()
    mask = m.random_mask(4000, torch.device("cpu"), gen(0))
    counts = mask.sum(1)
    assert counts.min() >= 1 and counts.max() <= 12
    # E[ceil(12 cos(pi/2 u))] / 12 is a bit above E[cos(pi/2 u)] = 2/pi
    assert 2 / math.pi < counts.float().mean() / 12 < 2 / math.pi + 1 / 12
    with pytest.raises(DataError, match="no position"):
        masked_loss(
            m,
            m,
            torch.zeros(2, *GRID, dtype=torch.long),
            torch.zeros(2, dtype=torch.long),
            mask=torch.zeros(2, 12, dtype=torch.bool),
        )


def test_training_reduces_the_loss():
    m = model().train()
    x = torch.randint(0, K, (1, *GRID)).repeat(16, 1, 1)
    y = torch.zeros(16, dtype=torch.long)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    torch.manual_seed(0)
    first = None
    for _ in range(30):
        loss = m.loss(x, y, label_dropout=0.1)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


@pytest.mark.parametrize("steps", [1, 3, 30])
def test_sample_shapes_and_no_mask_left(steps):
    m = model()
    out = m.sample(torch.tensor([0, 1, 2, 3, 0]), cfg=2.0, steps=steps, generator=gen(0))
    assert out.shape == (5, *GRID) and out.dtype == torch.long
    assert out.min() >= 0 and out.max() < K
    assert m(out.flatten(1), torch.zeros(5, dtype=torch.long)).shape == (5, 12, K)


def test_same_seed_same_tokens():
    m = model()
    labels = torch.arange(6) % C
    a = m.sample(labels, cfg=1.5, generator=gen(7))
    assert torch.equal(a, m.sample(labels, cfg=1.5, generator=gen(7)))
    assert not torch.equal(a, m.sample(labels, cfg=1.5, generator=gen(8)))
    opts = MaskedSampling(cfg=1.5, mask_steps=4, choice_temperature=2.0)
    assert torch.equal(m.sample_codes(labels, opts, gen(1)), m.sample_codes(labels, opts, gen(1)))


def test_cfg_one_is_conditional_and_zero_is_unconditional():
    m = model()
    labels = torch.tensor([0, 1, 2, 1])
    null = torch.full_like(labels, C)
    kw = dict(temperature=0.0, choice_temperature=0.0)  # deterministic: argmax and most confident
    cond = m.sample(labels, cfg=1.0, generator=gen(0), **kw)
    # a linear schedule at scale 1 runs the guided (two-row) path: still exactly the conditional model
    assert torch.equal(cond, m.sample(labels, cfg=1.0, cfg_schedule="linear", generator=gen(0), **kw))
    assert torch.equal(m.sample(labels, cfg=0.0, generator=gen(0), **kw), m.sample(null, generator=gen(0), **kw))
    assert not torch.equal(cond, m.sample(labels, cfg=4.0, generator=gen(0), **kw))


def test_pairs_sigma_one_is_identity_and_zero_is_a_free_sample():
    m = model()
    real = torch.randint(0, K, (6, *GRID))
    labels = torch.arange(6) % C
    opts = SamplingOptions(cfg=1.5)
    assert torch.equal(m.paired(real, labels, 1.0, opts, gen(0), gen(1)), real)
    free = m.paired(real, labels, 0.0, opts, gen(0), gen(1))
    assert torch.equal(free, m.sample_codes(labels, opts, gen(0)))  # nothing kept: the free sample
    half = m.paired(real, labels, 0.5, opts, gen(0), gen(1))
    keep = torch.rand(real.flatten(1).shape, generator=gen(1)) < 0.5
    assert torch.equal(half.flatten(1)[keep], real.flatten(1)[keep])
    assert 0.3 < (half == real).float().mean() < 0.9
    with pytest.raises(ConfigError, match="sigma"):
        m.paired(real, labels, 1.5, opts, gen(0))


def test_bad_input_is_refused():
    m = model()
    with pytest.raises(DataError, match="class ids"):
        m.sample(torch.tensor([C + 1]))
    with pytest.raises(ConfigError, match="steps"):
        m.sample(torch.tensor([0]), steps=0)
    with pytest.raises(ConfigError, match="cfg"):
        m.sample(torch.tensor([0]), cfg=-1.0)
    with pytest.raises(DataError, match="token ids"):
        m.sample(torch.tensor([0]), keep_mask=torch.ones(1, 12, dtype=torch.bool), prefix_tokens=torch.full((1, 12), K))
    with pytest.raises(CheckpointError, match="continuous"):
        m.check_tokenizer(tiny16_tokenizer("kl"))
    with pytest.raises(CheckpointError, match="codebook size"):
        m.check_tokenizer(tiny16_tokenizer("vq"))  # K = 32 vs 16


def test_save_load_round_trip(tmp_path):
    m = model(decode_steps=5, choice_temperature=3.0)
    m.save_pretrained(tmp_path / "gen")
    back = load_generator(tmp_path / "gen")
    assert isinstance(back, MaskedGenerator) and back.config == m.config
    assert back.fingerprint() == m.fingerprint()
    labels = torch.arange(4) % C
    assert torch.equal(
        back.eval().sample(labels, cfg=2.0, generator=gen(3)), m.sample(labels, cfg=2.0, generator=gen(3))
    )


def test_cli_train_sample_pairs(tmp_path):
    gray_class_folder(tmp_path / "imgs", [6, 6])
    tok = tmp_path / "vq"
    tiny16_tokenizer("vq").save_pretrained(tok)
    store = tmp_path / "store"
    assert main(["pretokenize", str(tok), "--data", str(tmp_path / "imgs"), "--out", str(store), "--no-progress"]) == 0
    run = tmp_path / "run"
    assert (
        main(
            [
                "train-generator",
                f"{ROOT}/configs/generator/fmnist-masked.yaml",
                f"data.tokens={store}",
                f"data.tokenizer={tok}",
                f"run.dir={run}",
                "train.steps=3",
                "data.batch_size=4",
                "run.log_every=1",
                "run.sample_every=3",
                "run.progress=false",
                "model.dim=32",
                "model.depth=1",
                "model.heads=2",
            ]
        )
        == 0
    )
    assert isinstance(load_generator(run / "generator"), MaskedGenerator)
    assert list((run / "samples").glob("*.png"))
    args = [
        "sample",
        str(run / "generator"),
        "--tokenizer",
        str(tok),
        "--num-images",
        "5",
        "--cfg",
        "2",
        "--mask-steps",
        "3",
        "--out",
        str(tmp_path / "s1"),
        "--batch-size",
        "3",
        "--no-progress",
    ]
    assert main(args) == 0
    npz = np.load(tmp_path / "s1" / "samples.npz")
    assert npz["arr_0"].shape == (5, 16, 16, 1) and npz["arr_1"].tolist() == [0, 1, 0, 1, 0]
    args[args.index(str(tmp_path / "s1"))] = str(tmp_path / "s2")
    assert main(args) == 0
    assert np.array_equal(np.load(tmp_path / "s2" / "samples.npz")["arr_0"], npz["arr_0"])
    for sigma in ("0.5", "1"):
        out = tmp_path / f"pairs{sigma}"
        assert (
            main(
                [
                    "post-train-data",
                    str(run / "generator"),
                    "--tokenizer",
                    str(tok),
                    "--data",
                    str(tmp_path / "imgs"),
                    "--sigma",
                    sigma,
                    "--num-pairs",
                    "6",
                    "--num-eval",
                    "4",
                    "--cfg",
                    "1.5",
                    "--mask-steps",
                    "4",
                    "--batch-size",
                    "4",
                    "--out",
                    str(out),
                    "--no-progress",
                ]
            )
            == 0
        )
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["kind"] == "ids" and manifest["generator"] == "masked"
        assert manifest["sampling"]["mask_steps"] == 4
        store_ = PairStore(out, tiny16_tokenizer("vq"))
        assert store_.generated.shape == (6, 8, 8) and store_.eval_generated.shape == (4, 8, 8)
    from robustok.data import build_dataset

    images = build_dataset(str(tmp_path / "imgs"), 16, 1, train=False)
    index = np.load(tmp_path / "pairs1" / "index.npy")
    real = tiny16_tokenizer("vq").encode(torch.stack([images[int(i)][0] for i in index]))
    pairs = {s: np.asarray(PairStore(tmp_path / f"pairs{s}", tiny16_tokenizer("vq")).generated) for s in ("1", "0.5")}
    assert np.array_equal(pairs["1"], real.numpy())  # sigma = 1: the real tokens
    assert not np.array_equal(pairs["0.5"], real.numpy())
    assert (
        main(
            [
                "train-generator",
                f"{ROOT}/configs/generator/fmnist-masked.yaml",
                f"data.tokens={store}",
                f"run.dir={tmp_path / 'run3'}",
                "model.random_order=true",
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "train-generator",
                f"{ROOT}/configs/generator/fmnist-masked.yaml",
                f"data.tokens={store}",
                f"run.dir={tmp_path / 'run2'}",
                "train.steps=1",
                "data.batch_size=4",
                "run.progress=false",
                f"model.init={run / 'generator'}",
            ]
        )
        == 0
    )
