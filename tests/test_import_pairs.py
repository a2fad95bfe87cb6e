"""Bring-your-own pairs: `robustok import-pairs` turns another generator's tokens (.npy) into a pairs folder, and
`robustok post-train` trains on it (token ids and latents)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robustok.cli import main
from robustok.data import build_dataset
from robustok.tokens.kinds import token_kind
from robustok.tokens.pairs import PairStore
from tests.helpers import ROOT, gray_class_folder, tiny16_tokenizer


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    t = tmp_path_factory.mktemp("byo")
    gray_class_folder(t / "imgs", [6, 6])
    for kind in ("vq", "kl"):
        tiny16_tokenizer(kind).save_pretrained(t / kind)
    return t


def _user_generator(tok, images: torch.Tensor, kind: str, seed: int = 0) -> np.ndarray:
    """What another generator would hand over: the real tokens of `images`, 30% of them replaced (ids) or noised
    (latents)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        real = token_kind(kind).encode(tok, images)
    if kind == "ids":
        swap = torch.rand(real.shape, generator=g) < 0.3
        return torch.where(swap, torch.randint(0, tok.codebook_size, real.shape, generator=g), real).numpy()
    return (real + 0.3 * torch.randn(real.shape, generator=g)).numpy().astype(np.float32)


@pytest.mark.parametrize("bottleneck", ["vq", "kl"])
def test_import_then_post_train(work, bottleneck):
    from robustok.tokenizer.loading import load_tokenizer

    t, kind = work, "ids" if bottleneck == "vq" else "latents"
    tok = load_tokenizer(t / bottleneck)
    ds = build_dataset(str(t / "imgs"), 16, 1)
    index = np.random.default_rng(0).permutation(len(ds))[:10]
    generated = _user_generator(tok, torch.stack([ds[int(i)][0] for i in index]), kind)
    free = _user_generator(tok, torch.stack([ds[i][0] for i in range(8)]), kind, seed=1)
    d = t / f"in-{bottleneck}"
    d.mkdir()
    if kind == "ids":  # flat (N, h*w) ids of another dtype are accepted too
        generated = generated.reshape(len(generated), -1).astype(np.int64)
    np.save(d / "gen.npy", generated)
    np.save(d / "index.npy", index.astype(np.int32))
    np.save(d / "free.npy", free)
    pairs, run = t / f"pairs-{bottleneck}", t / f"post-{bottleneck}"
    assert (
        main(
            [
                "import-pairs",
                "--tokens",
                str(d / "gen.npy"),
                "--index",
                str(d / "index.npy"),
                "--heldout",
                str(d / "free.npy"),
                "--tokenizer",
                str(t / bottleneck),
                "--data",
                str(t / "imgs"),
                "--sigma",
                "0.7",
                "--fingerprint",
                tok.fingerprint(),
                "--generator",
                "someone-else's",
                "--out",
                str(pairs),
            ]
        )
        == 0
    )
    store = PairStore(pairs, tok)
    assert store.kind == kind and len(store) == 10 and store.sigma == 0.7 and store.pair_input == "ids"
    assert np.array_equal(store.index, index) and store.eval_generated.shape == free.shape
    assert np.array_equal(store.labels, ds.labels[index])  # the real images' classes by default
    want = generated.reshape(store.generated.shape)
    if kind == "ids":
        assert store.generated.dtype == np.uint16 and np.array_equal(store.generated, want)
    else:
        assert np.allclose(store.generated.astype(np.float32), want, atol=2e-2)
    m = json.loads((pairs / "manifest.json").read_text())
    assert m["generator"] == "someone-else's" and m["resolution"] == 16 and m["data"] == str(t / "imgs")
    assert (
        main(
            [
                "post-train",
                f"{ROOT}/configs/posttrain/fmnist.yaml",
                f"tokenizer={t / bottleneck}",
                f"pairs={pairs}",
                f"run.dir={run}",
                "run.progress=false",
                "train.steps=2",
                "data.batch_size=4",
                "eval_every=2",
                "eval_features=random",
                "eval_num_reference=12",
            ]
        )
        == 0
    )
    summary = json.loads((run / "posttrain.json").read_text())
    assert summary["sigma"] == 0.7 and summary["num_eval_samples"] == 8
    assert load_tokenizer(run / "tokenizer").fingerprint() == tok.fingerprint()  # the encoder side is frozen
