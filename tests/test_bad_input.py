"""Table-driven bad-input test: every case runs the CLI in-process and must exit non-zero with a one-line message
naming the offending file or key, print no traceback, and leave every file in the working folder untouched
(nothing changed, nothing created). Almost all cases fail during validation, before any computation."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustok.cli import main
from tests.helpers import tiny_tokenizer

REPO = Path(__file__).resolve().parents[1]
TOK_CFG = str(REPO / "configs/tokenizer/fmnist-robust.yaml")
GEN_CFG = str(REPO / "configs/generator/fmnist-ar.yaml")
POST_CFG = str(REPO / "configs/posttrain/fmnist.yaml")


class _Scripted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, x):
        return self.lin(x)


def _script(module: torch.nn.Module):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module)


def _png_bomb(path: Path, side: int = 100_000) -> None:
    """A PNG whose header declares side x side pixels (far over Pillow's limit); no pixel data needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _images(folder: Path, n: int, size: int = 32, classes: int = 0) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = folder / f"c{i % classes}" if classes else folder
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L").save(d / f"{i:02d}.png")


def _pairs(folder: Path, tok, data: str, **manifest_changes) -> None:
    folder.mkdir()
    n, grid = 12, tok.config.grid_size
    rng = np.random.default_rng(0)
    np.save(folder / "generated.npy", rng.integers(0, tok.codebook_size, (n, grid * grid)).astype(np.uint16))
    np.save(folder / "index.npy", np.arange(n, dtype=np.int64))
    np.save(folder / "labels.npy", np.zeros(n, np.int64))
    np.save(folder / "eval_generated.npy", rng.integers(0, tok.codebook_size, (8, grid * grid)).astype(np.uint16))
    np.save(folder / "eval_labels.npy", np.zeros(8, np.int64))
    manifest = {
        "kind": "ar",
        "sigma": 0.7,
        "num_pairs": n,
        "num_eval": 8,
        "data": data,
        "resolution": 32,
        "channels": 1,
        "seed": 0,
        "batch_size": 4,
        "tokenizer_fingerprint": tok.fingerprint(),
        "generator_fingerprint": "0" * 16,
        "grid": [grid, grid],
        "codebook_size": tok.codebook_size,
    }
    manifest.update(manifest_changes)
    (folder / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if v is not None}))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A working folder with sentinel files and every bad (and a few good) input the cases refer to."""
    from robustok.data import build_dataset
    from robustok.metrics.sources import write_samples_npz
    from robustok.tokens.store import write_token_store

    w = tmp_path_factory.mktemp("work")
    (w / "sentinel.txt").write_text("do not touch\n")
    (w / "keep").mkdir()
    (w / "keep" / "notes.md").write_text("# notes\n")
    (w / "empty").mkdir()
    _images(w / "imgs", 12, classes=2)
    _images(w / "tiny", 3, size=1)
    (w / "bomb").mkdir()
    _png_bomb(w / "bomb" / "bomb.png")
    (w / "corrupt.tar").write_bytes(b"x" * 3000)
    write_samples_npz(w / "samples.npz", np.zeros((10, 32, 32, 3), np.uint8))
    data = (w / "samples.npz").read_bytes()
    (w / "truncated.npz").write_bytes(data[: len(data) // 2])
    _script(_Scripted()).save(str(w / "unknown_script.pt"))
    torch.save({"blocks.0.w": torch.zeros(2), "hook": os.getcwd}, w / "pickled.pt")

    tok = tiny_tokenizer()
    tok.save_pretrained(w / "tok")
    state = {k: v.clone() for k, v in tok.state_dict().items()}
    state["decoder.conv_out.weight" if "decoder.conv_out.weight" in state else next(iter(state))].fill_(float("nan"))
    tok.save_pretrained(w / "tok_nan", state)
    tok.save_pretrained(w / "tok_disc")
    from robustok.hub import save_tensors
    from robustok.losses.discriminators import build_discriminator

    disc = build_discriminator({"kind": "patch", "channels": 1, "width": 8, "layers": 2})
    save_tensors(disc.state_dict(), w / "tok_disc" / "discriminator.safetensors")

    write_token_store(tok, build_dataset(str(w / "imgs"), 32, 1), w / "store", progress=False)
    for name, change in (
        ("store_badlabel", lambda ids, y: (ids, np.where(y == 1, 7, y))),
        ("store_float", lambda ids, y: (ids.astype(np.float32) + 0.5, y)),
    ):
        (w / name).mkdir()
        (w / name / "manifest.json").write_bytes((w / "store" / "manifest.json").read_bytes())
        ids, y = change(np.load(w / "store" / "ids-00000.npy"), np.load(w / "store" / "labels-00000.npy"))
        np.save(w / name / "ids-00000.npy", ids)
        np.save(w / name / "labels-00000.npy", y)

    tok.save_pretrained(w / "run" / "tokenizer")  # a tokenizer inside a run folder
    (w / "orig").mkdir()
    (w / "orig" / "pickled.pt").write_bytes((w / "pickled.pt").read_bytes())
    (w / "big").mkdir()
    _png_bomb(w / "big" / "big.png", side=12_000)  # over Pillow's limit, under its own 2x refusal
    meta = json.loads((w / "tok" / "config.json").read_text())
    for name, change in (
        ("tok_nokey", lambda c: c.pop("l2_norm")),
        ("tok_extra", lambda c: c.update(foo=1)),
        ("tok_badvalue", lambda c: c.update(codebook_size="many")),
    ):
        tok.save_pretrained(w / name)
        cfg = json.loads(json.dumps(meta))
        change(cfg["config"])
        (w / name / "config.json").write_text(json.dumps(cfg))
    _pairs(w / "pairs_ok", tok, str(w / "imgs"))
    _pairs(w / "pairs_nofp", tok, str(w / "imgs"), tokenizer_fingerprint=None)
    _pairs(w / "pairs_badjson", tok, str(w / "imgs"))
    text = (w / "pairs_badjson" / "manifest.json").read_text()
    (w / "pairs_badjson" / "manifest.json").write_text(text[: len(text) // 2])
    _pairs(w / "pairs_trunc", tok, str(w / "imgs"))
    raw = (w / "pairs_trunc" / "eval_generated.npy").read_bytes()
    (w / "pairs_trunc" / "eval_generated.npy").write_bytes(raw[: len(raw) // 2])
    _pairs(w / "pairs_negidx", tok, str(w / "imgs"))
    np.save(w / "pairs_negidx" / "index.npy", np.arange(-1, 11, dtype=np.int64))

    # bring-your-own pairs (import-pairs): tok has K = 64 on a 16x16 grid, imgs holds 12 images of 2 classes
    tiny_tokenizer(bottleneck="kl").save_pretrained(w / "tok_kl")
    byo = {
        "ids": rng_ids((6, 16, 16)),
        "free": rng_ids((4, 16, 16)),
        "index": np.arange(6),
        "float": rng_ids((6, 16, 16)).astype(np.float32),
        "range": rng_ids((6, 16, 16)) + 1,
        "grid": rng_ids((6, 8, 8)),
        "index12": np.arange(7, 13),
        "index5": np.arange(5),
        "latents3": np.zeros((6, 3, 16, 16), np.float32),
        "labels9": np.full(6, 9),
    }
    for name, arr in byo.items():
        np.save(w / f"byo_{name}.npy", arr)
    np.save(w / "byo_pickle.npy", np.array([{"ids": 1}] * 6, dtype=object), allow_pickle=True)

    # released generators (issue 20): a converted MaskGIT tokenizer, its file, RAR files (K = 32 fits it, 64 not)
    from robustok.adapters import load_external
    from tests.released_standins import maskgit_shapes, random_state, rar_state

    torch.save(random_state(maskgit_shapes(ch=8, z=16, K=32)), w / "mg.bin")
    load_external("maskgit-vqgan", w / "mg.bin", image_size=64, norm_groups=4).save_pretrained(w / "mgtok")
    torch.save(rar_state(1, K=32), w / "rar.bin")
    torch.save(rar_state(2, K=64), w / "rar_k64.bin")
    raw = (w / "rar.bin").read_bytes()
    (w / "rar_trunc.bin").write_bytes(raw[: len(raw) // 2])
    return w


def rng_ids(shape: tuple[int, ...]) -> np.ndarray:
    """Token ids in [0, 64) (the range of `tiny_tokenizer`), at least one of them 63."""
    ids = np.random.default_rng(0).integers(0, 64, shape)
    ids.flat[0] = 63
    return ids


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


TT = ["train-tokenizer", TOK_CFG, "run.progress=false"]
TG = ["train-generator", GEN_CFG, "data.tokens=store", "run.progress=false"]
PT = ["post-train", POST_CFG, "tokenizer=tok", "pairs=pairs_ok", "run.progress=false", "eval_num_reference=12"]
PRE = ["pretokenize", "tok", "--data", "imgs", "--out", "tokens", "--no-progress"]
EV = ["eval-tokenizer", "tok", "--data", "imgs", "--metrics", "psnr", "--num-images", "4"]
FID = ["fid", "imgs", "imgs", "--features", "random"]
SAMPLE = ["sample", "gen", "--tokenizer", "tok", "--out", "samples", "--no-progress"]
PTD = ["post-train-data", "gen", "--tokenizer", "tok", "--sigma", "0.7", "--out", "pairs", "--no-progress"]
IMP = [
    "import-pairs",
    "--tokens",
    "byo_ids.npy",
    "--index",
    "byo_index.npy",
    "--heldout",
    "byo_free.npy",
    "--tokenizer",
    "tok",
    "--data",
    "imgs",
    "--sigma",
    "0.7",
    "--out",
    "byo_out",
]


def imp(**changes: str) -> list[str]:
    """IMP with options replaced (`tokens="byo_float.npy"`) or added (`labels="byo_labels9.npy"`)."""
    argv = list(IMP)
    for key, value in changes.items():
        flag = "--" + key.replace("_", "-")
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


GCONV = ["convert", "rar", "rar.bin", "--tokenizer", "mgtok", "--out", "gen_out"]

# (id, argv, environment, regex the message must match: it names the file or key)
CASES = [
    # configuration values: checked once, where the config is loaded, with the allowed range in the message
    ("batch-size-negative", TT + ["data.batch_size=-3"], {}, r"data\.batch_size must be >= 1, got -3"),
    ("batch-size-zero", TT + ["data.batch_size=0"], {}, r"data\.batch_size must be >= 1"),
    ("log-every-zero", TT + ["run.log_every=0"], {}, r"run\.log_every must be >= 1"),
    ("sample-every-negative", TT + ["run.sample_every=-1"], {}, r"run\.sample_every must be >= 0, got -1"),
    ("ckpt-every-negative", TG + ["run.ckpt_every=-5"], {}, r"run\.ckpt_every must be >= 0, got -5"),
    ("gen-log-every-zero", TG + ["run.log_every=0"], {}, r"run\.log_every must be >= 1"),
    ("lr-negative", TT + ["train.lr=-1"], {}, r"train\.lr must be > 0"),
    ("ema-decay-two", TT + ["train.ema_decay=2"], {}, r"train\.ema_decay must be in \[0, 1\)"),
    ("keep-checkpoints-negative", TT + ["run.keep_checkpoints=-1"], {}, r"run\.keep_checkpoints must be >= 1"),
    ("steps-zero", TT + ["train.steps=0"], {}, r"train\.steps must be >= 1"),
    ("betas-out-of-range", TT + ["train.betas=[0.9,1.5]"], {}, r"train\.betas\[1\]"),
    ("lr-nan", TT + ["train.lr=nan"], {}, r"train\.lr must be > 0"),
    ("perturb-beta", TT + ["perturb.beta=1.5"], {}, r"perturb\.beta must be in \[0, 1\]"),
    ("perturb-delta-over-K", TT + ["perturb.delta=5000"], {}, r"perturb\.delta \(5000\).*codebook_size"),
    ("codebook-size-one", TT + ["model.codebook_size=1"], {}, r"model\.codebook_size"),
    ("disc-lr-zero", TT + ["loss.disc_lr=0"], {}, r"loss\.disc_lr must be > 0"),
    ("unknown-key", TT + ["data.trian=x"], {}, r"data\.trian"),
    ("gen-batch-size", TG + ["data.batch_size=-3"], {}, r"data\.batch_size must be >= 1"),
    ("gen-dropout", TG + ["model.dropout=1.5"], {}, r"model\.dropout must be in \[0, 1\)"),
    ("post-clean-fraction", PT + ["clean_fraction=2"], {}, r"clean_fraction must be in \[0, 1\]"),
    ("post-eval-reference", PT + ["eval_reference=fashion-mnist-test"], {}, r"eval_reference: unknown data set"),
    # data specs: one strict parser, no silent fallbacks
    (
        "fmnist-name-typo",
        TT + ["data.train=fashion-mnist-test"],
        {},
        r"unknown data set name 'fashion-mnist-test'.*"
        r"fashion-mnist:train",
    ),
    ("fmnist-unknown-split", TT + ["data.val=fashion-mnist:validation"], {}, r"fashion-mnist:validation"),
    ("spec-is-a-file", TT + ["data.train=sentinel.txt"], {}, r"sentinel\.txt: is a file, not a folder"),
    ("spec-folder-missing", TT + ["data.train=no_such_folder"], {}, r"no_such_folder: data folder not found"),
    ("spec-wds-empty", PRE[:3] + ["wds:"] + PRE[4:], {}, r"--data 'wds:': no shard pattern"),
    ("data-root-empty", TT + ["data.root=empty"], {}, r"not found in empty.*data\.root"),
    ("env-data-empty", TT, {"ROBUSTOK_DATA": "empty"}, r"not found in empty.*ROBUSTOK_DATA"),
    ("eval-data-typo", EV[:3] + ["fashion-mnist-rgb"] + EV[4:], {}, r"fashion-mnist-rgb"),
    ("fid-spec-typo", FID[:2] + ["fashion-mnist:validation"] + FID[3:], {}, r"fashion-mnist:validation"),
    # output paths: checked before any computation
    (
        "run-dir-under-file",
        TT + ["run.dir=sentinel.txt/run"],
        {},
        r"run\.dir sentinel\.txt/run.*sentinel\.txt is a "
        r"file",
    ),
    ("run-dir-is-file", TT + ["run.dir=sentinel.txt"], {}, r"run\.dir sentinel\.txt: exists and is not a folder"),
    ("gen-run-dir", TG + ["run.dir=sentinel.txt/g"], {}, r"run\.dir sentinel\.txt/g"),
    ("post-run-dir", PT + ["run.dir=sentinel.txt/p"], {}, r"run\.dir sentinel\.txt/p"),
    ("pretokenize-out", PRE[:5] + ["sentinel.txt/tokens"], {}, r"--out sentinel\.txt/tokens"),
    ("eval-json", EV + ["--json", "sentinel.txt/r.json"], {}, r"--json sentinel\.txt/r\.json"),
    ("fid-json", FID + ["--json", "sentinel.txt/f.json"], {}, r"--json sentinel\.txt/f\.json"),
    ("fid-json-is-dir", FID + ["--json", "keep"], {}, r"--json keep: is a folder"),
    (
        "fid-stats-out",
        ["fid-stats", "imgs", "--features", "random", "--out", "sentinel.txt/s.npz"],
        {},
        r"--out sentinel\.txt/s\.npz",
    ),
    ("sample-out", SAMPLE[:5] + ["sentinel.txt/s"] + SAMPLE[6:], {}, r"--out sentinel\.txt/s"),
    ("convert-out", ["convert", "llamagen-vq16", "pickled.pt", "--out", "sentinel.txt/c"], {}, r"--out sentinel"),
    # existing output folders: refused unless --overwrite, before any computation, naming the folder
    (
        "pretokenize-out-not-empty",
        PRE[:5] + ["keep"] + PRE[6:],
        {},
        r"--out keep: already exists and is not empty "
        r"\(notes\.md\); pass --overwrite",
    ),
    ("pretokenize-out-is-store", PRE[:5] + ["store"] + PRE[6:], {}, r"--out store: already exists.*--overwrite"),
    ("sample-out-not-empty", SAMPLE[:5] + ["keep"] + SAMPLE[6:], {}, r"--out keep: already exists.*--overwrite"),
    (
        "convert-out-not-empty",
        ["convert", "llamagen-vq16", "pickled.pt", "--out", "keep"],
        {},
        r"--out keep: already exists.*--overwrite",
    ),
    (
        "make-shards-out-not-empty",
        ["make-shards", "imgs", "--out", "keep"],
        {},
        r"--out keep: already exists.*"
        r"no \.shard-shards\.json.*--overwrite",
    ),
    (
        "make-shards-out-is-file",
        ["make-shards", "imgs", "--out", "sentinel.txt"],
        {},
        r"--out sentinel\.txt: exists "
        r"and is not a folder",
    ),
    # outputs that are, contain or lie inside an input: refused before any work, --overwrite or not
    ("sample-out-is-tokenizer", SAMPLE[:5] + ["tok", "--overwrite"], {}, r"--out tok: is the input --tokenizer tok"),
    (
        "pretokenize-out-contains-tokenizer",
        ["pretokenize", "run/tokenizer"] + PRE[2:5] + ["run", "--overwrite"],
        {},
        r"--out run: contains the input tokenizer run/tokenizer",
    ),
    (
        "pretokenize-out-inside-data",
        PRE[:5] + ["imgs/tokens"] + PRE[6:],
        {},
        r"--out imgs/tokens: lies inside the "
        r"input --data imgs",
    ),
    (
        "import-pairs-out-contains-tokenizer",
        IMP[:-1] + [".", "--overwrite"],
        {},
        r"--out \.: contains the input "
        r"--tokenizer tok",
    ),
    (
        "pairs-out-is-data",
        PTD[:-2] + ["imgs", "--data", "imgs", "--overwrite"],
        {},
        r"--out imgs: is the input "
        r"--data imgs",
    ),
    (
        "convert-out-contains-checkpoint",
        ["convert", "llamagen-vq16", "orig/pickled.pt", "--out", "orig", "--overwrite"],
        {},
        r"--out orig: contains the input checkpoint",
    ),
    (
        "make-shards-out-inside-data",
        ["make-shards", "imgs", "--out", "imgs/shards"],
        {},
        r"--out imgs/shards: lies "
        r"inside the input image",
    ),
    (
        "train-run-dir-is-data",
        TT + ["data.train=imgs", "run.dir=imgs"],
        {},
        r"run\.dir imgs: is the input "
        r"data\.train imgs",
    ),
    ("gen-run-dir-is-store", TG + ["run.dir=store"], {}, r"run\.dir store: is the input data\.tokens store"),
    (
        "post-run-dir-contains-tokenizer",
        PT[:2] + ["tokenizer=run/tokenizer"] + PT[3:] + ["run.dir=run"],
        {},
        r"run\.dir run: contains the input tokenizer run/tokenizer",
    ),
    (
        "eval-json-inside-tokenizer",
        EV + ["--json", "tok/r.json"],
        {},
        r"--json tok/r\.json: lies inside the input "
        r"tokenizer tok",
    ),
    ("fid-json-inside-data", FID + ["--json", "imgs/f.json"], {}, r"--json imgs/f\.json: lies inside the input A"),
    (
        "fid-stats-out-inside-data",
        ["fid-stats", "imgs", "--features", "random", "--out", "imgs/s.npz"],
        {},
        r"--out imgs/s\.npz: lies inside the input",
    ),
    # saved configs: a key of the format missing, an unknown key or a bad value names config.json
    (
        "config-key-missing",
        ["eval-tokenizer", "tok_nokey"] + EV[2:],
        {},
        r"tok_nokey/config\.json: key 'l2_norm' of "
        r"TokenizerConfig is missing",
    ),
    (
        "config-unknown-key",
        ["eval-tokenizer", "tok_extra"] + EV[2:],
        {},
        r"tok_extra/config\.json: unknown key "
        r"'foo'",
    ),
    (
        "config-bad-value",
        ["pretokenize", "tok_badvalue"] + PRE[2:],
        {},
        r"tok_badvalue/config\.json: .*"
        r"codebook_size",
    ),
    # CLI numbers: argparse names the option and the range
    ("shard-size-zero", PRE + ["--shard-size", "0"], {}, r"--shard-size: must be >= 1, got 0"),
    ("shard-size-negative", PRE + ["--shard-size", "-5"], {}, r"--shard-size: must be >= 1, got -5"),
    ("pretokenize-batch-zero", PRE + ["--batch-size", "0"], {}, r"--batch-size: must be >= 1"),
    ("pretokenize-views-zero", PRE + ["--views", "0"], {}, r"--views: must be >= 1"),
    ("eval-batch-zero", EV + ["--batch-size", "0"], {}, r"--batch-size: must be >= 1"),
    ("fid-batch-zero", FID + ["--batch-size", "0"], {}, r"--batch-size: must be >= 1"),
    ("fid-num-images-float", FID + ["--num-images", "2.5"], {}, r"--num-images: expected int"),
    ("sample-top-p", SAMPLE + ["--top-p", "0"], {}, r"--top-p: must be in \(0, 1\]"),
    ("sample-num-images", SAMPLE + ["--num-images", "0"], {}, r"--num-images: must be >= 1"),
    ("sigma-over-one", PTD[:5] + ["1.5"] + PTD[6:], {}, r"--sigma: must be in \[0, 1\]"),
    ("num-pairs-zero", PTD + ["--num-pairs", "0"], {}, r"--num-pairs: must be >= 1"),
    (
        "make-shards-size-zero",
        ["make-shards", "imgs", "--out", "shards", "--shard-size", "0"],
        {},
        r"--shard-size: must be >= 1",
    ),
    # files: named, never a traceback
    (
        "decompression-bomb",
        ["fid", "bomb", "imgs", "--features", "random"],
        {},
        r"bomb\.png: refused, image too "
        r"large",
    ),
    (
        "image-over-pixel-limit",
        ["fid", "big", "imgs", "--features", "random"],
        {},
        r"big\.png: refused, image too "
        r"large \(12000x12000",
    ),
    ("tiny-images", ["fid", "tiny", "imgs", "--features", "random"], {}, r"tiny/00\.png: image is 1x1 pixels"),
    ("corrupt-tar", ["fid", "wds:corrupt.tar", "imgs", "--features", "random"], {}, r"corrupt\.tar: corrupt"),
    ("truncated-npz", ["fid", "truncated.npz", "imgs", "--features", "random"], {}, r"truncated\.npz: not a readable"),
    (
        "store-label-range",
        TG[:2] + ["data.tokens=store_badlabel"] + TG[3:],
        {},
        r"labels-00000\.npy: labels span "
        r"\[0, 7\]",
    ),
    (
        "store-float-ids",
        TG[:2] + ["data.tokens=store_float"] + TG[3:],
        {},
        r"ids-00000\.npy: token ids must be "
        r"integers",
    ),
    ("nan-tokenizer-eval", ["eval-tokenizer", "tok_nan"] + EV[2:], {}, r"tok_nan/model\.safetensors: tensor .* NaN"),
    ("nan-tokenizer-pretokenize", ["pretokenize", "tok_nan"] + PRE[2:], {}, r"tok_nan/model\.safetensors"),
    (
        "pairs-truncated-manifest",
        PT[:3] + ["pairs=pairs_badjson"] + PT[4:],
        {},
        r"pairs_badjson/manifest\.json: "
        r"invalid JSON",
    ),
    (
        "pairs-no-fingerprint",
        PT[:3] + ["pairs=pairs_nofp"] + PT[4:],
        {},
        r"manifest\.json: missing field.*"
        r"tokenizer_fingerprint",
    ),
    (
        "pairs-truncated-eval",
        PT[:3] + ["pairs=pairs_trunc"] + PT[4:],
        {},
        r"pairs_trunc/eval_generated\.npy: "
        r"unreadable",
    ),
    (
        "pairs-negative-index",
        PT[:3] + ["pairs=pairs_negidx"] + PT[4:],
        {},
        r"pairs_negidx/index\.npy: real-image "
        r"indices must be non-negative",
    ),
    # bring-your-own pairs: every array checked against the tokenizer and the data set before anything is written
    ("byo-float-ids", imp(tokens="byo_float.npy"), {}, r"byo_float\.npy: token ids must be integers"),
    (
        "byo-id-range",
        imp(tokens="byo_range.npy"),
        {},
        r"byo_range\.npy: token ids span \[\d+, 64\], outside "
        r"\[0, 64\)",
    ),
    ("byo-heldout-range", imp(heldout="byo_range.npy"), {}, r"byo_range\.npy: token ids span"),
    ("byo-grid", imp(tokens="byo_grid.npy"), {}, r"byo_grid\.npy: shape \(6, 8, 8\), expected \(N, 16, 16\)"),
    ("byo-latents-for-ids", imp(tokens="byo_latents3.npy"), {}, r"byo_latents3\.npy: shape \(6, 3, 16, 16\)"),
    (
        "byo-latent-channels",
        imp(tokens="byo_latents3.npy", heldout="byo_latents3.npy", tokenizer="tok_kl"),
        {},
        r"byo_latents3\.npy: 3 latent channels, the tokenizer has 4",
    ),
    (
        "byo-index-range",
        imp(index="byo_index12.npy"),
        {},
        r"byo_index12\.npy: real-image index .* values span "
        r"\[7, 12\], outside \[0, 12\)",
    ),
    ("byo-index-count", imp(index="byo_index5.npy"), {}, r"byo_index5\.npy: shape \(5,\), expected \(6,\)"),
    (
        "byo-labels-range",
        imp(labels="byo_labels9.npy"),
        {},
        r"byo_labels9\.npy: class id values span \[9, 9\], "
        r"outside \[-1, 2\)",
    ),
    ("byo-pickle", imp(tokens="byo_pickle.npy"), {}, r"byo_pickle\.npy: unreadable array"),
    ("byo-missing", imp(heldout="no_such.npy"), {}, r"no_such\.npy: not found"),
    (
        "byo-fingerprint",
        imp(fingerprint="0123456789abcdef"),
        {},
        r"--fingerprint 0123456789abcdef: tokens come "
        r"from tokenizer 0123456789abcdef",
    ),
    ("byo-too-many", imp(data="tiny"), {}, r"byo_ids\.npy: 6 pairs, more than the 3 images of --data tiny"),
    ("byo-sigma", imp(sigma="1.5"), {}, r"--sigma: must be in \[0, 1\]"),
    ("byo-out-not-empty", imp(out="keep"), {}, r"--out keep: already exists.*--overwrite"),
    (
        "discriminator-without-json",
        PT[:2] + ["tokenizer=tok_disc"] + PT[3:] + ["loss.disc_weight=0.5"],
        {},
        r"tok_disc/discriminator\.json: not found",
    ),
    ("generator-is-tokenizer-file", GCONV[:2] + ["mg.bin"] + GCONV[3:], {}, r"mg\.bin: not a RAR checkpoint"),
    ("generator-truncated", GCONV[:2] + ["rar_trunc.bin"] + GCONV[3:], {}, r"rar_trunc\.bin: not a readable"),
    ("generator-pickle", GCONV[:2] + ["pickled.pt"] + GCONV[3:], {}, r"pickled\.pt: refused to load"),
    (
        "generator-vocabulary",
        GCONV[:2] + ["rar_k64.bin"] + GCONV[3:],
        {},
        r"rar_k64\.bin: a RAR generator over 64 "
        r"token ids; the tokenizer has 32",
    ),
    (
        "generator-tokenizer-family",
        ["convert", "robustok-rar"] + GCONV[2:],
        {},
        r"robustok-rar: --tokenizer is a "
        r"maskgit-vqgan tokenizer",
    ),
    ("generator-without-tokenizer", GCONV[:3] + GCONV[5:], {}, r"convert rar: --tokenizer DIR is required"),
    (
        "tokenizer-with-tokenizer",
        ["convert", "maskgit-vqgan", "mg.bin", "--tokenizer", "mgtok", "--out", "t_out"],
        {},
        r"convert maskgit-vqgan: --tokenizer is for generator kinds",
    ),
    ("generator-tokenizer-missing", GCONV[:4] + ["no_such_tok"] + GCONV[5:], {}, r"no_such_tok"),
    (
        "dinov2-pickle",
        TT
        + [
            "model.backbone=vit",
            "model.dinov2_checkpoint=pickled.pt",
            "model.vit_width=32",
            "model.vit_depth=1",
            "model.vit_heads=2",
        ],
        {},
        r"pickled\.pt: refused to load",
    ),
    (
        "inception-unknown-torchscript",
        ["fid", "imgs", "imgs", "--features", "inception", "--inception-weights", "unknown_script.pt"],
        {},
        r"unknown_script\.pt: a TorchScript archive.*"
        r"safetensors",
    ),
    (
        "inception-env-torchscript",
        ["fid", "imgs", "imgs", "--features", "inception"],
        {"ROBUSTOK_INCEPTION": "unknown_script.pt"},
        r"unknown_script\.pt: a TorchScript archive",
    ),
]


def test_table_is_large_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("argv,env,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(work, monkeypatch, capsys, argv, env, pattern):
    monkeypatch.chdir(work)
    for key in ("ROBUSTOK_DATA", "ROBUSTOK_INCEPTION"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = _tree(work)
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code not in (0, None), f"accepted: {argv}"
    assert "Traceback" not in err
    assert re.search(pattern, err, re.S), f"message does not match {pattern!r}:\n{err}"
    after = _tree(work)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"
