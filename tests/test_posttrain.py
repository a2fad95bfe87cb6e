import json

import numpy as np
import pytest
import torch

from robustok.config import load_config
from robustok.data import build_dataset
from robustok.errors import CheckpointError, ConfigError, DataError
from robustok.generator import DiffusionConfig, DiffusionGenerator
from robustok.generator.diffusion import DiffusionSampling
from robustok.generator.sampling import SamplingOptions
from robustok.posttrain.pairs import PairsSpec, generate_batch, make_pairs
from robustok.posttrain.train import PostTrainConfig, PostTrainTask, freeze_encoder_side
from robustok.tokens.pairs import PairDataset, PairStore
from robustok.train.loop import train
from tests.helpers import ROOT, needs_fmnist, tiny_ar, tiny_tokenizer


def test_sigma_one_keeps_real_tokens_and_sigma_zero_is_free_sampling():
    tok = tiny_tokenizer(channel_mult=[1, 2, 2]).eval()
    gen = tiny_ar(tok)
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    labels = torch.tensor([0, 1, 2])
    opts = SamplingOptions()
    rng = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    assert torch.equal(generate_batch(gen, tok, x, labels, 1.0, opts, rng(1), rng(2)), tok.encode(x))
    free = gen.sample(labels, generator=rng(1))
    assert torch.equal(generate_batch(gen, tok, x, labels, 0.0, opts, rng(1), rng(2)), free)
    mixed = generate_batch(gen, tok, x, labels, 0.5, opts, rng(1), rng(2))
    same = (mixed == tok.encode(x)).float().mean()
    assert 0.4 < same < 0.9
    with pytest.raises(ConfigError, match="sigma"):
        generate_batch(gen, tok, x, labels, 1.5, opts, rng(1), rng(2))


def test_sdedit_pairs_for_continuous_latents():
    tok = tiny_tokenizer(bottleneck="kl").eval()
    gen = DiffusionGenerator(DiffusionConfig(latent_channels=4, grid=[16, 16], dim=32, depth=1, heads=2)).eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    rng = torch.Generator().manual_seed(0)
    z = generate_batch(gen, tok, x, torch.tensor([0, 1]), 0.7, DiffusionSampling(steps=4), rng, rng)
    assert z.shape == (2, 4, 16, 16)
    assert torch.equal(
        generate_batch(gen, tok, x, torch.tensor([0, 1]), 1.0, SamplingOptions(), rng, rng), tok.encode_latents(x)
    )


@pytest.fixture()
def pairs(tmp_path):
    tok = tiny_tokenizer(channel_mult=[1, 2, 2]).eval()
    gen = tiny_ar(tok)
    ds = build_dataset("fashion-mnist:test")
    spec = PairsSpec(sigma=0.7, num_pairs=24, num_eval=16, data="fashion-mnist:test", batch_size=24)
    out = make_pairs(gen, tok, ds, spec, tmp_path / "pairs", progress=False)
    return tok, out


@needs_fmnist
def test_pair_store_records_and_checks_the_tokenizer(pairs, tmp_path):
    tok, out = pairs
    store = PairStore(out, tok)
    m = json.loads((out / "manifest.json").read_text())
    assert len(store) == 24 and m["sigma"] == 0.7 and store.eval_generated.shape == (16, 8, 8)
    assert store.generated.dtype == np.uint16 and len(set(store.index.tolist())) == 24
    with pytest.raises(CheckpointError, match="tokenizer"):
        PairStore(out, tiny_tokenizer(channel_mult=[1, 2, 2], hidden_dim=8))
    small = build_dataset("fashion-mnist:test")
    small.images = small.images[:5]
    with pytest.raises(DataError, match="real image"):
        PairDataset(store, small)


@needs_fmnist
@pytest.mark.parametrize("control", [False, True])
def test_post_training_changes_only_the_decoder(pairs, tmp_path, control):
    tok, out = pairs
    frozen_before = {k: v.clone() for k, v in tok.state_dict().items() if k.startswith(tuple(tok.frozen_part_names()))}
    dec_before = tok.decoder.conv_out.weight.clone()
    cfg = load_config(
        PostTrainConfig,
        ROOT / "configs/posttrain/fmnist.yaml",
        [
            f"run.dir={tmp_path / 'post'}",
            "run.progress=false",
            "train.steps=4",
            "data.batch_size=8",
            "eval_every=2",
            "eval_features=random",
            "eval_num_reference=32",
            f"control={control}",
            "loss.disc_weight=0.1",
        ],
    )
    task = PostTrainTask(cfg, tokenizer=tok, store=PairStore(out, tok))
    fp = tok.fingerprint()
    train(task, cfg.run, cfg.train, cfg.data, full_config=cfg)
    after = tok.state_dict()
    for k, v in frozen_before.items():
        assert torch.equal(after[k], v), k  # bit-identical encoder, projection, codebook
    assert not torch.equal(tok.decoder.conv_out.weight, dec_before)
    assert tok.fingerprint() == fp  # still compatible with the generator and the token stores
    assert [c["step"] for c in task.curve] == [2, 4] and (tmp_path / "post" / "tokenizer-best").is_dir()


def test_a_tokenizer_without_decoder_parameters_is_refused():
    tok = tiny_tokenizer()
    tok.frozen_part_names = lambda: [""]
    with pytest.raises(ConfigError, match="no decoder"):
        freeze_encoder_side(tok)
