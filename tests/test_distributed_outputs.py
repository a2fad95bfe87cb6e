"""Distributed generation and evaluation: `sample`, `post-train-data`, `pretokenize` and `fid` on 2 gloo processes
under torchrun give the outputs of 1 process (merged by rank 0), and the merging helpers on their own."""

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch

from robustok.cli import main
from robustok.distributed import gather_strided
from robustok.distributed_outputs import PartWriter, merged_batches, mine
from robustok.generator import ARConfig, ARGenerator
from robustok.seeding import batch_seed
from tests.helpers import ROOT, gray_class_folder, tiny16_tokenizer

DRIVER = """import json, sys
from robustok.cli import main
for argv in json.load(open(sys.argv[1])):
    rc = main(argv)
    if rc:
        sys.exit(rc)
"""


def _commands(t, out):
    """The CLI runs compared between 1 and 2 processes (outputs under `out`)."""
    gen, tok = str(t / "gen"), str(t / "tok")
    return {
        "sample": [
            "sample",
            gen,
            "--tokenizer",
            tok,
            "--num-images",
            "11",
            "--batch-size",
            "3",
            "--cfg",
            "1.5",
            "--out",
            str(out / "samples"),
            "--no-progress",
        ],
        "pairs": [
            "post-train-data",
            gen,
            "--tokenizer",
            tok,
            "--data",
            str(t / "imgs"),
            "--sigma",
            "0.5",
            "--num-pairs",
            "9",
            "--num-eval",
            "5",
            "--batch-size",
            "2",
            "--out",
            str(out / "pairs"),
            "--no-progress",
        ],
        "npy": [
            "pretokenize",
            tok,
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
            "--no-progress",
        ],
        "wds": [
            "pretokenize",
            tok,
            "--data",
            str(t / "imgs"),
            "--out",
            str(out / "wds"),
            "--views",
            "2",
            "--batch-size",
            "3",
            "--shard-size",
            "4",
            "--format",
            "wds",
            "--no-progress",
        ],
        "fid": [
            "fid",
            str(out / "samples" / "samples.npz"),
            str(t / "imgs"),
            "--features",
            "random",
            "--metrics",
            "fid,is,pr,acc",
            "--batch-size",
            "3",
            "--json",
            str(out / "fid.json"),
        ],
        "stats": [
            "fid-stats",
            str(t / "imgs"),
            "--features",
            "random",
            "--batch-size",
            "4",
            "--out",
            str(out / "ref.npz"),
        ],
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process (in this one) and 2 gloo processes (one torchrun launch running every command)."""
    t = tmp_path_factory.mktemp("dist")
    gray_class_folder(t / "imgs", [6, 7])  # 13 images: the ranks' shares differ in size
    tok = tiny16_tokenizer()
    tok.save_pretrained(t / "tok")
    gen = ARGenerator(
        ARConfig(
            vocab_size=32, grid=[8, 8], num_classes=2, dim=32, depth=1, heads=2, tokenizer_fingerprint=tok.fingerprint()
        )
    )
    torch.nn.init.normal_(gen.head.weight, std=0.5)  # a non-trivial distribution
    gen.save_pretrained(t / "gen")
    for argv in _commands(t, t / "one").values():
        assert main(argv) == 0, argv
    (t / "argv.json").write_text(json.dumps(list(_commands(t, t / "two").values())))
    (t / "driver.py").write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes, also on a GPU machine
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(29700 + os.getpid() % 1000),
        str(t / "driver.py"),
        str(t / "argv.json"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return t, r.stdout


def test_sample_on_two_processes_equals_one(runs):
    t, _ = runs
    one, two = np.load(t / "one" / "samples" / "samples.npz"), np.load(t / "two" / "samples" / "samples.npz")
    assert two["arr_0"].shape == (11, 16, 16, 1) and two["arr_1"].tolist() == [i % 2 for i in range(11)]
    assert np.array_equal(two["arr_0"], one["arr_0"]) and np.array_equal(two["arr_1"], one["arr_1"])
    assert len({a.tobytes() for a in two["arr_0"]}) == 11  # no duplicates
    pngs = sorted(p.relative_to(t / "two" / "samples") for p in (t / "two" / "samples").rglob("*.png"))
    assert [str(p) for p in pngs] == sorted(f"{i % 2:03d}/{i:06d}.png" for i in range(11))
    assert sorted(p.name for p in (t / "two" / "samples").iterdir()) == ["000", "001", "samples.npz"]  # no parts


def test_post_train_data_on_two_processes_equals_one(runs):
    t, _ = runs
    one, two = t / "one" / "pairs", t / "two" / "pairs"
    files = sorted(str(p.relative_to(one)) for p in one.rglob("*"))
    assert files == sorted(str(p.relative_to(two)) for p in two.rglob("*"))
    for name in ("ids-00000", "index", "labels-00000", "eval/ids-00000", "eval/labels-00000"):
        a, b = np.load(one / f"{name}.npy"), np.load(two / f"{name}.npy")
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert len(set(np.load(two / "index.npy").tolist())) == 9 and np.load(two / "eval/ids-00000.npy").shape == (5, 8, 8)
    for m in ("manifest.json", "eval/manifest.json"):
        assert json.loads((two / m).read_text()) == json.loads((one / m).read_text())
    assert not (t / "two" / ".pairs.parts").exists() and not (t / "two" / ".pairs.tmp").exists()


def test_pretokenize_on_two_processes_equals_one(runs):
    t, _ = runs
    for fmt in ("npy", "wds"):
        one, two = t / "one" / fmt, t / "two" / fmt
        assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir()), fmt  # no parts left
        assert json.loads((two / "manifest.json").read_text()) == json.loads((one / "manifest.json").read_text())
    m = json.loads((t / "two" / "npy" / "manifest.json").read_text())
    assert m["count"] == 39 and len(m["shards"]) == 8
    hidden = sorted(p.name for p in (t / "two").iterdir() if p.name.startswith("."))
    assert hidden == [], hidden  # no temp folder or parts of sample/pretokenize left next to the outputs
    for f in (t / "one" / "npy").glob("*.npy"):
        assert np.array_equal(np.load(f), np.load(t / "two" / "npy" / f.name)), f.name
    keys = []
    for f in sorted((t / "one" / "wds").glob("*.tar")):
        with tarfile.open(f) as a, tarfile.open(t / "two" / "wds" / f.name) as b:
            ea = [(m.name, a.extractfile(m).read()) for m in a.getmembers()]
            assert ea == [(m.name, b.extractfile(m).read()) for m in b.getmembers()], f.name
            keys += [name.split(".")[0] for name, _ in ea]
    assert len(set(keys)) == 26  # 13 images x 2 views, each once


def test_fid_on_two_processes_equals_one(runs):
    t, stdout = runs
    one, two = (json.loads((t / d / "fid.json").read_text()) for d in ("one", "two"))
    assert two["num_images"] == one["num_images"] == [11, 13]
    for k in ("fid", "is", "is_std", "precision", "recall", "class_accuracy"):
        assert two[k] == pytest.approx(one[k], rel=1e-6, abs=1e-9), k
    assert stdout.count("FID-random") == 1  # rank 0 reports
    a, b = np.load(t / "one" / "ref.npz"), np.load(t / "two" / "ref.npz")
    assert int(b["num_images"]) == 13
    assert np.allclose(a["mu"], b["mu"], rtol=1e-6, atol=1e-9) and np.allclose(a["sigma"], b["sigma"], atol=1e-9)


def test_part_files_merge_in_batch_order(tmp_path):
    """Ranks' part files (written as by 3 ranks, one with an empty share) come back in global batch order."""
    parts = tmp_path / "parts"
    parts.mkdir()
    batches = {b: {"x": np.full((2, 3), b), "s": np.array([b * 0.5])} for b in range(7)}
    for rank in range(3):
        w = PartWriter(parts, chunk_bytes=100)
        w.rank = rank
        for b in mine(7, rank, 3):
            w.add(b, **batches[b])
        w.close()
        assert all(b % 3 == rank for b in w.batches) and (len(w.files) >= 1 or not w.batches)
    got = list(merged_batches(parts, 3))
    assert [b for b, _ in got] == list(range(7))
    for b, arrays in got:
        assert np.array_equal(arrays["x"], batches[b]["x"]) and arrays["s"].tolist() == [b * 0.5]
    (parts / "rank-00002.json").unlink()
    with pytest.raises(Exception, match="rank 2 did not finish"):
        list(merged_batches(parts, 3))
    assert batch_seed(5, 0) == 5 and len({batch_seed(s, b) for s in range(3) for b in range(3)}) == 9


def test_gather_strided_without_a_process_group_is_the_identity():
    x = np.arange(6).reshape(3, 2)
    assert gather_strided(x) is x and gather_strided(None) is None
