"""Post-training pairs in the token store layout (robustok.tokens.pairs), and folders of the layout before it."""

import json

import numpy as np
import pytest
import torch

from robustok.data import build_dataset
from robustok.errors import CheckpointError, DataError
from robustok.generator import ARConfig, ARGenerator, DiffusionConfig, DiffusionGenerator
from robustok.posttrain.pairs import PairsSpec, make_pairs
from robustok.tokens import TOKEN_KINDS, check_fingerprint, open_token_store, token_kind
from robustok.tokens.pairs import PairStore
from robustok.tokens.store import TokenDataset
from tests.helpers import gray_class_folder, tiny16_tokenizer


def _pairs(tmp_path, kind="ids", num_classes=2, name="pairs"):
    folder = gray_class_folder(tmp_path / "imgs", [5, 5])
    torch.manual_seed(0)
    if kind == "ids":
        tok = tiny16_tokenizer("vq")
        gen = ARGenerator(
            ARConfig(
                vocab_size=tok.codebook_size,
                grid=[8, 8],
                num_classes=num_classes,
                dim=16,
                depth=1,
                heads=2,
                tokenizer_fingerprint=tok.fingerprint(),
            )
        )
    else:
        tok = tiny16_tokenizer("kl")
        gen = DiffusionGenerator(
            DiffusionConfig(
                latent_channels=4,
                grid=[8, 8],
                num_classes=num_classes,
                dim=16,
                depth=1,
                heads=2,
                tokenizer_fingerprint=tok.fingerprint(),
            )
        )
    spec = PairsSpec(sigma=0.5, num_pairs=7, num_eval=5, data=str(folder), resolution=16, batch_size=3)
    opts = gen.sampling(steps=2) if kind == "latents" else gen.sampling()
    out = make_pairs(gen.eval(), tok, build_dataset(str(folder), 16, 1), spec, tmp_path / name, opts, progress=False)
    return tok, out


@pytest.mark.parametrize("kind", ["ids", "latents"])
def test_pairs_are_token_stores(tmp_path, kind):
    tok, out = _pairs(tmp_path, kind)
    store = PairStore(out, tok)
    shape = (8, 8) if kind == "ids" else (4, 8, 8)
    assert store.kind == kind and store.generated.shape == (7, *shape) and store.eval_generated.shape == (5, *shape)
    assert store.generated.dtype == (np.uint16 if kind == "ids" else np.float16)
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "robustok-tokens/1" and m["sigma"] == 0.5 and m["generator"] in ("ar", "diffusion")
    as_store = open_token_store(out, tok.fingerprint())  # the same files read as a token store
    assert isinstance(as_store, TokenDataset) and len(as_store) == 7
    assert torch.equal(as_store[3][0], store.tensor(store.generated[3])) and as_store[3][1] == int(store.labels[3])
    held = TokenDataset(out / "eval")
    assert len(held) == 5 and [held[i][1] for i in range(5)] == [0, 1, 0, 1, 0]
    assert np.array_equal(held.arrays()[0], store.eval_generated)
    with pytest.raises(CheckpointError, match="tokenizer"):
        PairStore(out, tiny16_tokenizer("vq" if kind == "ids" else "kl", seed=1))


def test_unconditional_pairs_store_unlabeled_entries(tmp_path):
    tok, out = _pairs(tmp_path, num_classes=0)
    store = PairStore(out, tok)
    assert set(store.labels.tolist()) == {-1} and len(TokenDataset(out / "eval")) == 5


def _to_legacy(out, kind="ar", grid=True):
    """Rewrite a pairs folder in the layout before robustok.tokens: flat ids, kind "ar" / "diffusion"."""
    store = PairStore(out)
    m = {k: v for k, v in store.manifest.items() if k not in ("format", "storage", "shards", "count")}
    np.save(
        out / "generated.npy",
        np.asarray(store.generated).reshape(len(store), -1) if kind == "ar" else np.asarray(store.generated),
    )
    np.save(out / "labels.npy", np.asarray(store.labels).astype(np.int64))
    np.save(
        out / "eval_generated.npy",
        store.eval_generated.reshape(len(store.eval_generated), -1) if kind == "ar" else store.eval_generated,
    )
    m["kind"] = kind
    if not grid:
        m.pop("grid")
    (out / "manifest.json").write_text(json.dumps(m))
    return store


@pytest.mark.parametrize("kind", ["ids", "latents"])
def test_old_pairs_folders_are_read(tmp_path, kind):
    tok, out = _pairs(tmp_path, kind)
    new = _to_legacy(out, "ar" if kind == "ids" else "diffusion")
    old = PairStore(out, tok)
    assert old.kind == kind and np.array_equal(old.generated, new.generated)
    assert np.array_equal(old.eval_generated, new.eval_generated) and np.array_equal(old.index, new.index)


def test_old_pairs_without_grid_or_with_another_kind_say_rerun(tmp_path):
    tok, out = _pairs(tmp_path)
    _to_legacy(out, grid=False)
    with pytest.raises(DataError, match="rerun `robustok post-train-data`"):
        PairStore(out, tok)
    m = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**m, "kind": "pixels"}))
    with pytest.raises(DataError, match="kind must be one of.*rerun"):
        PairStore(out, tok)


def test_token_kinds_and_fingerprint_check():
    assert sorted(TOKEN_KINDS) == ["ids", "latents"]
    with pytest.raises(DataError, match="where: kind must be one of"):
        token_kind("ar", "where")
    check_fingerprint("", "abc", "x")
    check_fingerprint("abc", "abc", "x")
    with pytest.raises(CheckpointError, match="x: tokens come from tokenizer abc, not from the expected tokenizer d"):
        check_fingerprint("abc", "d", "x", CheckpointError)
    tok = tiny16_tokenizer("vq")
    ids = torch.randint(0, tok.codebook_size, (2, 8, 8))
    assert token_kind("ids").to_array(ids, tok.codebook_size).dtype == np.uint16
    assert torch.equal(
        token_kind("ids").round_trip(tok, ids), tok.encode((tok.decode(ids).add(1).mul(127.5).round() / 127.5 - 1))
    )


def test_token_kinds_own_storage_rules():
    ids, lat = token_kind("ids"), token_kind("latents")
    x = np.zeros((2, 4, 3), np.uint16)
    z = np.zeros((2, 5, 4, 3), np.float16)
    assert (ids.grid(x), ids.channels(x), ids.codebook_field(16)) == ([4, 3], 0, 16)
    assert (lat.grid(z), lat.channels(z), lat.codebook_field(16)) == ([4, 3], 5, 0)
    assert ids.entry_shape([4, 3], {}) == (4, 3) and lat.entry_shape([4, 3], {"latent_channels": 5}) == (5, 4, 3)
    with pytest.raises(DataError, match="where: token id 16 >= codebook size 16"):
        ids.check_rows("where", np.full((1, 2), 16), 16)
    with pytest.raises(DataError, match="must be integers"):
        ids.check_rows("where", np.zeros((1, 2), np.float32), 16)
    lat.check_rows("where", z, 0)  # any float is a latent
    sums: dict = {}
    for _ in range(2):
        lat.add_sums(sums, {"s1": np.array([2.0]), "s2": np.array([8.0])})
    assert lat.statistics(sums, 2) == {"latent_mean": [2.0], "latent_std": [2.0]}  # E[z]=2, E[z^2]=8
    assert ids.statistics({}, 2) == {}
