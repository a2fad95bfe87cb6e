import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from robustok.data import build_dataset, eval_batches, train_batches
from robustok.data.datasets import GlobalBatchSampler
from robustok.errors import DataError
from tests.helpers import needs_fmnist


@needs_fmnist
def test_fashion_mnist_padded_to_32():
    ds = build_dataset("fashion-mnist:test")
    assert len(ds) == 10000 and ds.num_classes == 10
    x, y = ds[0]
    assert x.shape == (1, 32, 32) and 0 <= y < 10
    assert torch.all(x[:, :2] == -1)  # zero padding is black
    rgb = build_dataset("fashion-mnist:test", resolution=64, channels=3)
    assert rgb[0][0].shape == (3, 64, 64)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr("robustok.data.fashion_mnist.candidate_dirs", lambda root=None: [tmp_path])
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        build_dataset("fashion-mnist:train")


def _write(path, mode="RGB", size=(40, 30), fmt="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(0).integers(
        0, 255, (size[1], size[0], len(mode) if mode in ("RGB", "RGBA", "CMYK") else 1)
    )
    if mode == "I;16":
        img = Image.fromarray((arr[..., 0] * 200).astype(np.uint16))
    elif mode == "P":
        img = Image.fromarray(arr[..., 0].astype(np.uint8), "L").convert("P")
    else:
        img = Image.fromarray(arr.squeeze().astype(np.uint8)).convert(mode)
    img.save(path, fmt)


def test_folder_with_classes_and_odd_modes(tmp_path):
    _write(tmp_path / "b_dogs" / "1.png", "RGBA")
    _write(tmp_path / "b_dogs" / "2.png", "I;16")
    _write(tmp_path / "a_cats" / "1.jpg", "CMYK", fmt="JPEG")
    _write(tmp_path / "a_cats" / "2.png", "P", size=(8, 8))  # smaller than the crop: upsampled
    ds = build_dataset(str(tmp_path), resolution=16, channels=3)
    assert ds.classes == ["a_cats", "b_dogs"] and sorted(ds.labels.tolist()) == [0, 0, 1, 1]
    for i in range(4):
        x, _ = ds[i]
        assert x.shape == (3, 16, 16) and x.min() >= -1 and x.max() <= 1
    gray = build_dataset(str(tmp_path), resolution=16, channels=1, train=True)
    assert gray[(0, [0, 0, 0])][0].shape == (1, 16, 16)


def test_flat_folder_is_unlabeled(tmp_path):
    _write(tmp_path / "x.png")
    ds = build_dataset(str(tmp_path), resolution=8, channels=3)
    assert ds.labels.tolist() == [-1]


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_corrupt_files_are_named(tmp_path, content):
    _write(tmp_path / "c" / "good.png")
    bad = tmp_path / "c" / "bad.png"
    if content is None:  # truncated PNG
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (3, 4, 5)).save(buf, "PNG")
        content = buf.getvalue()[:60]
    bad.write_bytes(content)
    ds = build_dataset(str(tmp_path), resolution=8, channels=3)
    i = [str(f) for f in ds.files].index(str(bad))
    with pytest.raises(DataError, match="bad.png"):
        ds[i]


def test_empty_class_folder_and_missing_folder(tmp_path):
    _write(tmp_path / "a" / "1.png")
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="no images"):
        build_dataset(str(tmp_path), resolution=8, channels=3)
    with pytest.raises(DataError, match="not found"):
        build_dataset(str(tmp_path / "nope"), resolution=8, channels=3)


def test_global_batches_do_not_depend_on_rank_count_and_resume_exactly():
    one = GlobalBatchSampler(100, 8, seed=3)
    two = [GlobalBatchSampler(100, 8, seed=3, rank=r, world=2) for r in range(2)]
    it1, it2 = iter(one), [iter(s) for s in two]
    for _ in range(30):  # crosses epoch boundaries
        assert next(it1) == next(it2[0]) + next(it2[1])
    later = iter(GlobalBatchSampler(100, 8, seed=3, start_step=17))
    it = iter(one)
    for _ in range(17):
        next(it)
    assert next(it) == next(later)


def test_augmentation_is_deterministic(tmp_path):
    _write(tmp_path / "a" / "1.png", size=(50, 40))
    ds = build_dataset(str(tmp_path), resolution=16, channels=3, train=True)
    assert torch.equal(ds[(0, [1, 2, 0])][0], ds[(0, [1, 2, 0])][0])
    outs = {ds[(0, [1, e, 0])][0].sum().item() for e in range(8)}
    assert len(outs) > 1


def test_webdataset_shards(tmp_path):
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(6):
            buf = io.BytesIO()
            Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(buf, "PNG")
            for ext, data in (("png", buf.getvalue()), ("cls", str(i % 3).encode())):
                info = tarfile.TarInfo(f"{i:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    batches = list(eval_batches(f"wds:{shard}", batch_size=4, resolution=16, channels=3))
    assert sum(b[0].shape[0] for b in batches) == 6
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == [0, 0, 1, 1, 2, 2]
    ds = build_dataset(f"wds:{shard}", resolution=16, channels=3, train=True)
    x, y = next(train_batches(ds, 4, seed=0))
    assert x.shape == (4, 3, 16, 16)
    with pytest.raises(DataError, match="not found"):
        build_dataset(f"wds:{tmp_path}/missing-{{000..001}}.tar")


def _numbered_shards(folder, shards: int, per_shard: int) -> str:
    """`shards` tar shards whose images' red value names their shard; returns the `wds:` brace pattern."""
    for s in range(shards):
        with tarfile.open(folder / f"part-{s}.tar", "w") as tar:
            for i in range(per_shard):
                buf = io.BytesIO()
                Image.new("RGB", (8, 8), (s * 50, 0, 0)).save(buf, "PNG")
                info = tarfile.TarInfo(f"{s}-{i:03d}.png")
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))
    return f"wds:{folder}/part-{{0..{shards - 1}}}.tar"


@pytest.mark.parametrize("workers", [0, 1])
def test_webdataset_training_stream_reads_only_its_ranks_shards(tmp_path, monkeypatch, workers):
    """train_batches tells the stream its rank: a worker process (which cannot ask the process group, and here
    has no torchrun environment either) still reads only this rank's shards."""
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ds = build_dataset(_numbered_shards(tmp_path, 4, 8), resolution=8, channels=3, train=True)
    batches = train_batches(ds, 8, seed=0, rank=1, world=2, num_workers=workers)
    red = torch.cat([next(batches)[0][:, 0].mean(dim=(1, 2)) for _ in range(6)])
    shards = {round((float(v) + 1) * 127.5 / 50) for v in red}
    assert shards == {1, 3}
