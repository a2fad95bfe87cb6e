"""Token stores: round trip to the tokenizer's reconstructions, views, shards, latents, and bad-input errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from robustok.errors import ConfigError, DataError
from robustok.tokenizer import Tokenizer
from robustok.tokens.store import TokenDataset, read_manifest, write_token_store
from tests.helpers import tiny16_tokenizer


def tiny_tokenizer(bottleneck="vq", seed=0) -> Tokenizer:
    return tiny16_tokenizer(bottleneck, seed).eval()


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(3):
        d = tmp_path / "imgs" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8), "L").save(d / f"{i}.png")
    return tmp_path / "imgs"


def test_roundtrip_views_and_shards(folder, tmp_path):
    from robustok.data import build_dataset

    tok = tiny_tokenizer()
    ds = build_dataset(str(folder), 16, 1, train=True)
    m = write_token_store(tok, ds, tmp_path / "st", views=3, batch_size=5, shard_size=7, progress=False)
    assert m["count"] == 36 and m["grid"] == [8, 8] and m["codebook_size"] == 32 and m["num_classes"] == 3
    assert len(m["shards"]) == 6 and m["tokenizer_fingerprint"] == tok.fingerprint()
    assert np.load(tmp_path / "st" / "ids-00000.npy").dtype == np.uint16
    store = TokenDataset(tmp_path / "st", fingerprint=tok.fingerprint())
    assert len(store) == 36
    # view 0 decodes to the tokenizer's reconstruction of the image; view 1 to that of its mirror image
    for i in (0, 5, 11):
        x, y = ds[i]
        ids, label = store[i]
        assert label == y and ids.dtype == torch.long and ids.shape == (8, 8)
        assert torch.allclose(tok.decode(ids[None]), tok.reconstruct(x[None]), atol=1e-6)
        flipped, _ = store[12 + i]
        assert torch.allclose(tok.decode(flipped[None]), tok.reconstruct(x.flip(-1)[None]), atol=1e-6)
        assert torch.equal(store[(i, 123)][0], ids)  # (index, seed) items as the sampler passes them
    assert not all(torch.equal(store[24 + i][0], store[i][0]) for i in range(12))  # random crops differ


def test_continuous_store_records_stats(folder, tmp_path):
    from robustok.data import build_dataset

    tok = tiny_tokenizer("kl")
    m = write_token_store(tok, build_dataset(str(folder), 16, 1), tmp_path / "lat", progress=False)
    assert m["kind"] == "latents" and m["latent_channels"] == 4 and len(m["latent_std"]) == 4
    store = TokenDataset(tmp_path / "lat")
    z, _ = store[0]
    assert z.shape == (4, 8, 8) and z.dtype == torch.float32
    all_z = torch.stack([store[i][0] for i in range(len(store))])
    assert torch.allclose(all_z.mean((0, 2, 3)), torch.tensor(m["latent_mean"]).float(), atol=1e-2)


def test_bad_stores(folder, tmp_path):
    from robustok.data import build_dataset

    tok = tiny_tokenizer()
    write_token_store(tok, build_dataset(str(folder), 16, 1), tmp_path / "st", progress=False)
    with pytest.raises(DataError, match="tokenizer"):
        TokenDataset(tmp_path / "st", fingerprint=tiny_tokenizer(seed=1).fingerprint())
    with pytest.raises(DataError, match="not found"):
        TokenDataset(tmp_path / "nothing")
    with pytest.raises(DataError, match="manifest|not found"):
        TokenDataset(folder)
    man = read_manifest(tmp_path / "st")
    # ids >= K
    bad = tmp_path / "bad"
    bad.mkdir()
    ids = np.load(tmp_path / "st" / "ids-00000.npy").copy()
    ids[0, 0, 0] = 32
    np.save(bad / "ids-00000.npy", ids)
    np.save(bad / "labels-00000.npy", np.load(tmp_path / "st" / "labels-00000.npy"))
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(DataError, match="ids-00000.npy: token id 32 >= codebook size 32"):
        TokenDataset(bad)
    # grid mismatch between the manifest and the shard
    (bad / "manifest.json").write_text(json.dumps({**man, "grid": [4, 4]}))
    with pytest.raises(DataError, match="shape"):
        TokenDataset(bad)
    # empty store
    (bad / "manifest.json").write_text(json.dumps({**man, "count": 0, "shards": []}))
    with pytest.raises(DataError, match="empty token store"):
        TokenDataset(bad)
    with pytest.raises(DataError, match="views"):
        write_token_store(tok, build_dataset(str(folder), 16, 1), tmp_path / "x", views=0, progress=False)


def test_task_checks_grid_kind_and_tokenizer(folder, tmp_path):
    from robustok.data import build_dataset
    from robustok.generator.task import GeneratorTask, GeneratorTrainConfig

    tok = tiny_tokenizer()
    write_token_store(tok, build_dataset(str(folder), 16, 1), tmp_path / "st", progress=False)
    tok.save_pretrained(tmp_path / "tok")
    cfg = GeneratorTrainConfig()
    cfg.data.tokens, cfg.data.tokenizer = str(tmp_path / "st"), str(tmp_path / "tok")
    task = GeneratorTask(cfg)
    assert task.model.config.grid == [8, 8] and task.model.config.vocab_size == 32
    assert task.model.config.num_classes == 3
    other = tiny_tokenizer(seed=1)
    other.save_pretrained(tmp_path / "tok2")
    cfg.data.tokenizer = str(tmp_path / "tok2")
    with pytest.raises(DataError, match="tokenizer"):
        GeneratorTask(cfg)
    cfg.data.tokenizer = None
    cfg.model.kind = "diffusion"
    with pytest.raises(DataError, match="token ids"):
        GeneratorTask(cfg)
    cfg.model.kind, cfg.model.preset = "ar", "huge"
    with pytest.raises(ConfigError, match="preset"):
        GeneratorTask(cfg)
    # a generator trained on another grid cannot be the init of this one
    from robustok.generator.ar import ARConfig, ARGenerator

    ARGenerator(
        ARConfig(vocab_size=32, grid=[4, 4], num_classes=3, tokenizer_fingerprint=tok.fingerprint())
    ).save_pretrained(tmp_path / "g44")
    cfg.model.preset, cfg.model.init = "tiny", str(tmp_path / "g44")
    with pytest.raises(DataError, match=r"grid \[4, 4\] vs the store.s \[8, 8\]"):
        GeneratorTask(cfg)


def test_order_ratio_schedule():
    from robustok.generator.task import ARObjective, order_ratio

    o = ARObjective(order_anneal_start=0.5, order_anneal_end=0.75)
    assert [order_ratio(o, s, 1000) for s in (0, 500, 625, 750, 999)] == [1.0, 1.0, 0.5, 0.0, 0.0]


def _drain(store, n):
    it = iter(store)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("bottleneck", ["vq", "kl"])
def test_webdataset_store_holds_the_same_entries(folder, tmp_path, bottleneck):
    from robustok.data import build_dataset
    from robustok.tokens.store import TokenShards, open_token_store

    tok = tiny_tokenizer(bottleneck)
    ds = build_dataset(str(folder), 16, 1)
    write_token_store(tok, ds, tmp_path / "npy", views=2, shard_size=5, progress=False)
    m = write_token_store(tok, ds, tmp_path / "wds", views=2, shard_size=5, progress=False, storage="wds")
    assert m["storage"] == "wds" and [s["count"] for s in m["shards"]] == [5, 5, 5, 5, 4]
    assert sorted(p.name for p in (tmp_path / "wds").glob("*.tar")) == [f"tokens-0000{k}.tar" for k in range(5)]
    ref, shards = open_token_store(tmp_path / "npy"), open_token_store(tmp_path / "wds", tok.fingerprint())
    assert isinstance(shards, TokenShards) and len(shards) == len(ref) == 24
    assert shards.kind == ref.kind and shards.grid == ref.grid and shards.num_classes == 3
    shards.shuffle, shards.repeat = False, False
    got = list(shards)
    assert len(got) == 24
    import webdataset as wds  # entries are written in a seeded random order, keyed by their item index

    keys = [int(smp["__key__"]) for smp in wds.WebDataset(shards.urls, shardshuffle=False, empty_check=False)]
    assert sorted(keys) == list(range(24)) and keys != list(range(24))
    for k, (x, y) in zip(keys, got):  # the same entries as the memory-mapped store (float16 latents, ids)
        assert y == ref[k][1]
        if bottleneck == "kl":
            assert torch.allclose(x, ref[k][0], atol=2e-3)
        else:
            assert (x == ref[k][0]).float().mean() > 0.99
    shuffled = TokenShards(tmp_path / "wds", seed=3)
    first = _drain(shuffled, 48)  # endless: two passes, every entry twice
    keys = sorted(tuple(x.flatten()[:6].tolist()) + (y,) for x, y in first)
    assert keys == sorted(2 * [tuple(x.flatten()[:6].tolist()) + (y,) for x, y in got])
    assert [y for _, y in first[:24]] != [y for _, y in got]


def test_webdataset_store_trains_a_generator_and_checks_entries(folder, tmp_path):
    from robustok.data import build_dataset, train_batches
    from robustok.generator.task import GeneratorTask, GeneratorTrainConfig
    from robustok.tokens.store import TokenShards

    tok = tiny_tokenizer()
    write_token_store(
        tok, build_dataset(str(folder), 16, 1), tmp_path / "wds", storage="wds", shard_size=5, progress=False
    )
    cfg = GeneratorTrainConfig()
    cfg.data.tokens = str(tmp_path / "wds")
    task = GeneratorTask(cfg)
    assert isinstance(task.dataset, TokenShards) and task.model.config.vocab_size == 32
    x, y = next(train_batches(task.dataset, 8, seed=0))
    assert x.shape == (8, 8, 8) and task.step(task.model, (x, y), 0, task.model)["loss"].isfinite()
    with pytest.raises(DataError, match="tokenizer"):
        TokenShards(tmp_path / "wds", fingerprint=tiny_tokenizer(seed=1).fingerprint())
    with pytest.raises(DataError, match="'wds' store"):
        TokenDataset(tmp_path / "wds")
    # an id >= K inside a shard: the error names the shard and the entry
    import webdataset as wds

    with open(tmp_path / "wds" / "tokens-00000.tar", "wb") as f, wds.TarWriter(f) as sink:
        for k in range(5):
            sink.write({"__key__": f"{k:09d}", "ids.npy": np.full((8, 8), 32 if k == 2 else 0, np.uint16), "cls": "0"})
    bad = TokenShards(tmp_path / "wds", shuffle=False, repeat=False)
    with pytest.raises(DataError, match=r"tokens-00000.tar:000000002: token id 32 >= codebook size 32"):
        list(bad)
    (tmp_path / "wds" / "tokens-00002.tar").unlink()
    with pytest.raises(DataError, match="tokens-00002.tar: shard file missing"):
        TokenShards(tmp_path / "wds")


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers", [2, 4])
def test_webdataset_store_readers_share_without_overlap(folder, tmp_path, workers):
    """3 shards over 2 readers: whole shards each; over 4 readers: every 4th entry each. Every entry once."""
    from torch.utils.data import DataLoader

    from robustok.data import build_dataset
    from robustok.tokens.store import TokenShards

    tok = tiny_tokenizer()
    write_token_store(
        tok, build_dataset(str(folder), 16, 1), tmp_path / "wds", storage="wds", shard_size=5, progress=False
    )
    shards = TokenShards(tmp_path / "wds", shuffle=False, repeat=False)
    got = [(x.flatten().tolist(), y) for x, y in DataLoader(shards, batch_size=None, num_workers=workers)]
    assert sorted(got) == sorted((x.flatten().tolist(), y) for x, y in shards)
    assert len(got) == 12


def test_webdataset_store_shares_are_balanced_and_never_empty(folder, tmp_path):
    from robustok.data import build_dataset
    from robustok.tokens.store import TokenShards

    tok = tiny_tokenizer()
    write_token_store(
        tok, build_dataset(str(folder), 16, 1), tmp_path / "wds", storage="wds", shard_size=5, progress=False
    )  # shards of 5, 5, 2 entries
    shards = TokenShards(tmp_path / "wds", shuffle=False, repeat=False)
    shards.world = 2
    got = []
    for rank in (0, 1):  # unequal whole-shard shares (10 vs 2) would over-draw rank 1's: every 2nd entry instead
        shards.rank = rank
        got.append(list(shards))
    assert [len(g) for g in got] == [6, 6]
    shards.world, shards.rank = 13, 0
    with pytest.raises(DataError, match="12 entries cannot feed 13 readers"):
        list(shards)
