"""The one input path (`robustok.data.loader.image_batches`): the same batches, in the same order, for 0 and 2
worker processes (and as reading item by item in this process, the way the commands read before it), for folders,
`wds:` shards and Fashion-MNIST; every image-reading command's output is byte-identical with `--workers 0` and
`--workers 2`; an unreadable image found inside a worker is reported naming the file."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustok.cli import main
from robustok.data import build_dataset, eval_batches, image_batches
from robustok.data.loader import default_workers, workers_for
from robustok.errors import DataError
from tests.helpers import gray_class_folder, tiny16_tokenizer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """13 gray 16x16 PNGs in two classes, the same as 3 wds shards, a tokenizer and a tiny AR generator."""
    from robustok.data.shards import make_shards
    from robustok.generator import ARConfig, ARGenerator

    t = tmp_path_factory.mktemp("input")
    gray_class_folder(t / "imgs", [6, 7])
    make_shards(t / "imgs", t / "shards", 5, "shard", True, 0, 1, log=lambda m: None)
    tok = tiny16_tokenizer()
    tok.save_pretrained(t / "tok")
    gen = ARGenerator(
        ARConfig(
            vocab_size=32, grid=[8, 8], num_classes=2, dim=32, depth=1, heads=2, tokenizer_fingerprint=tok.fingerprint()
        )
    )
    torch.nn.init.normal_(gen.head.weight, std=0.5)
    gen.save_pretrained(t / "gen")
    return t


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(torch.equal(u, v) for u, v in zip(x, y)) for x, y in zip(a, b)
    )


@pytest.mark.parametrize("spec", ["folder", "wds", "fashion-mnist:test"])
def test_batches_do_not_depend_on_workers(data, spec):
    spec = {"folder": str(data / "imgs"), "wds": f"wds:{data}/shards/shard-{{000000..000002}}.tar"}.get(spec, spec)
    runs = {
        w: list(eval_batches(spec, 3, 11 if spec.startswith("fashion") else None, 16, 1, num_workers=w))
        for w in (0, 1, 2, 3)
    }
    assert sum(len(x) for x, _ in runs[0]) == 11 if spec.startswith("fashion") else 13
    assert all(_same(runs[0], runs[w]) for w in (1, 2, 3))


def test_same_as_reading_item_by_item(data):
    """Map-style data: the batches are exactly the stacked items, read in this process (the previous reader)."""
    ds = build_dataset(str(data / "imgs"), 16, 1)
    order = np.random.default_rng(0).permutation(len(ds))
    chunks = [order[i : i + 4] for i in range(0, len(order), 4)]
    for workers in (0, 2):
        got = list(image_batches(ds, batches=chunks, workers=workers))
        want = [(torch.stack([ds[int(i)][0] for i in c]), torch.tensor([ds[int(i)][1] for i in c])) for c in chunks]
        assert _same(got, want)


def test_rank_strided_share(data):
    ds = build_dataset(str(data / "imgs"), 16, 1)
    for rank in (0, 1):
        got = torch.cat([y for _, y in image_batches(ds, 2, rank=rank, world=2, workers=2)])
        assert got.tolist() == [int(ds.labels[i]) for i in range(rank, len(ds), 2)]


def test_unreadable_image_in_a_worker_names_the_file(tmp_path):
    gray_class_folder(tmp_path / "imgs", [5])
    bad = tmp_path / "imgs" / "c0" / "3.png"
    bad.write_bytes(b"not a png")
    for workers in (0, 2):
        with pytest.raises(DataError, match=r"3\.png: not a readable image") as err:
            list(eval_batches(str(tmp_path / "imgs"), 2, None, 16, 1, num_workers=workers))
        assert "Traceback" not in str(err.value) and "\n" not in str(err.value)


def test_corrupt_sample_in_a_shard_from_a_worker(tmp_path):
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(6):
            buf = tmp_path / "x"
            Image.new("L", (16, 16), i * 30).save(buf, "PNG")
            raw = buf.read_bytes() if i != 4 else b"garbage"
            info = tarfile.TarInfo(f"{i:04d}.png")
            info.size = len(raw)
            tar.addfile(info, __import__("io").BytesIO(raw))
    for workers in (0, 2):
        with pytest.raises(DataError, match=r"s\.tar:0004: not a readable image"):
            list(eval_batches(f"wds:{shard}", 2, None, 16, 1, num_workers=workers))


def test_default_workers(monkeypatch, tmp_path):
    assert 1 <= default_workers() <= 8
    assert workers_for("fashion-mnist:test", None) == 0 and workers_for(str(tmp_path), 3) == 3
    assert workers_for(str(tmp_path), None) == default_workers()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")
    assert default_workers() == 1


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file; of a tar, of its members' names and contents (its headers hold the write time)."""

    def content(p: Path) -> bytes:
        if p.suffix != ".tar":
            return p.read_bytes()
        with tarfile.open(p) as tar:
            return b"".join(m.name.encode() + tar.extractfile(m).read() for m in tar.getmembers())

    return {
        str(p.relative_to(folder)): hashlib.sha256(content(p)).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_commands_are_byte_identical_for_0_and_2_workers(data, tmp_path):
    t = data
    wds = f"wds:{t}/shards/shard-{{000000..000002}}.tar"
    for w in ("0", "2"):
        out = tmp_path / f"w{w}"
        for argv in (
            [
                "pretokenize",
                str(t / "tok"),
                "--data",
                str(t / "imgs"),
                "--out",
                str(out / "npy"),
                "--views",
                "3",
                "--batch-size",
                "3",
                "--shard-size",
                "5",
            ],
            [
                "pretokenize",
                str(t / "tok"),
                "--data",
                wds,
                "--out",
                str(out / "wds"),
                "--batch-size",
                "4",
                "--num-images",
                "11",
                "--format",
                "wds",
            ],
            [
                "post-train-data",
                str(t / "gen"),
                "--tokenizer",
                str(t / "tok"),
                "--data",
                str(t / "imgs"),
                "--sigma",
                "0.5",
                "--num-pairs",
                "9",
                "--num-eval",
                "3",
                "--batch-size",
                "2",
                "--out",
                str(out / "pairs"),
            ],
            [
                "eval-tokenizer",
                str(t / "tok"),
                "--data",
                str(t / "imgs"),
                "--metrics",
                "psnr,ssim,rfid,pfid,usage",
                "--features",
                "random",
                "--pfid-deltas",
                "2,4",
                "--batch-size",
                "4",
                "--json",
                str(out / "eval.json"),
            ],
            [
                "fid",
                str(t / "imgs"),
                wds,
                "--features",
                "random",
                "--resolution",
                "16",
                "--batch-size",
                "4",
                "--json",
                str(out / "fid.json"),
            ],
            ["fid-stats", str(t / "imgs"), "--features", "random", "--batch-size", "4", "--out", str(out / "ref.npz")],
            [
                "diagnose",
                str(t / "gen"),
                "--tokenizer",
                str(t / "tok"),
                "--data",
                str(t / "imgs"),
                "--num-samples",
                "4",
                "--features",
                "random",
                "--json",
                str(out / "diag.json"),
            ],
        ):
            assert (
                main(
                    [
                        *argv,
                        "--workers",
                        w,
                        *(["--no-progress"] if argv[0] in ("pretokenize", "post-train-data") else []),
                    ]
                )
                == 0
            ), argv
    one, two = _digest(tmp_path / "w0"), _digest(tmp_path / "w2")
    for name in ("eval.json", "fid.json", "diag.json"):  # they name their inputs, which are the same
        assert json.loads((tmp_path / "w0" / name).read_text()) == json.loads((tmp_path / "w2" / name).read_text())
        one.pop(name), two.pop(name)
    assert one == two and len(one) > 10
