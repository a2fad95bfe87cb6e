"""Output folders never clobber what a user has: `pretokenize` and `sample` refuse a non-empty `--out` unless
`--overwrite`, build the new folder under a temporary name and rename it into place only when complete; a run that
fails or is killed part-way leaves the old folder exactly as it was (robustok.outputs)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from robustok.cli import main
from robustok.errors import RobustokError
from robustok.generator.ar import ARConfig, ARGenerator
from robustok.outputs import OutputExistsError, check_out, staged_output
from robustok.tokenizer import Tokenizer
from tests.helpers import gray_class_folder, tiny16_tokenizer

ROOT = Path(__file__).resolve().parent.parent


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> Path:
    t = tmp_path_factory.mktemp("outputs")
    gray_class_folder(t / "imgs", [4, 4])
    tok = tiny16_tokenizer()
    tok.save_pretrained(t / "tok")
    ARGenerator(
        ARConfig(
            vocab_size=32, grid=[8, 8], num_classes=2, dim=32, depth=1, heads=2, tokenizer_fingerprint=tok.fingerprint()
        )
    ).save_pretrained(t / "gen")
    return t


def _old(folder: Path) -> dict[str, str]:
    """A folder holding a user's files (which must survive refused or failed runs)."""
    (folder / "sub").mkdir(parents=True)
    (folder / "mine.txt").write_text("keep me\n")
    (folder / "sub" / "data.bin").write_bytes(b"\x00\x01" * 100)
    return _tree(folder)


def _pre(w: Path, out: Path, *extra: str) -> list[str]:
    return [
        "pretokenize",
        str(w / "tok"),
        "--data",
        str(w / "imgs"),
        "--out",
        str(out),
        "--no-progress",
        "--batch-size",
        "3",
        *extra,
    ]


def _sample(w: Path, out: Path, *extra: str) -> list[str]:
    return [
        "sample",
        str(w / "gen"),
        "--tokenizer",
        str(w / "tok"),
        "--num-images",
        "5",
        "--batch-size",
        "2",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


@pytest.mark.parametrize("command", ["pretokenize", "sample"])
def test_non_empty_out_is_refused_then_replaced_with_overwrite(w, tmp_path, capsys, command):
    argv = _pre if command == "pretokenize" else _sample
    out = tmp_path / "out"
    before = _old(out)
    assert main(argv(w, out)) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err and "Traceback" not in err
    assert _tree(out) == before and _hidden(tmp_path) == []
    assert main(argv(w, out, "--overwrite")) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "mine.txt" not in names and "sub" not in names
    assert ("manifest.json" if command == "pretokenize" else "samples.npz") in names
    assert _hidden(tmp_path) == []  # no temp, parts or old folder left next to it
    assert main(argv(w, tmp_path / "empty_ok")) == 0  # a new folder needs no --overwrite ...
    (tmp_path / "empty").mkdir()
    assert main(argv(w, tmp_path / "empty")) == 0  # ... nor an empty one


class _Boom(RuntimeError):
    pass


def test_store_failing_part_way_keeps_the_old_store(w, tmp_path, monkeypatch):
    from robustok.data import build_dataset
    from robustok.tokens import write as store_write
    from robustok.tokens.store import write_token_store

    tok = Tokenizer.from_pretrained(w / "tok")
    ds = build_dataset(str(w / "imgs"), 16, 1)
    out = tmp_path / "store"
    write_token_store(tok, ds, out, batch_size=3, shard_size=2, progress=False)
    before = _tree(out)
    real, calls = store_write.save_npy, []

    def failing(path, arr):
        calls.append(path)
        if len(calls) == 3:  # after a shard or two of the new store
            raise _Boom("disk full")
        real(path, arr)

    monkeypatch.setattr(store_write, "save_npy", failing)
    with pytest.raises(_Boom):
        write_token_store(tok, ds, out, views=2, batch_size=3, shard_size=2, progress=False, overwrite=True)
    assert _tree(out) == before and _hidden(tmp_path) == []
    monkeypatch.setattr(store_write, "save_npy", real)
    m = write_token_store(tok, ds, out, views=2, batch_size=3, shard_size=2, progress=False, overwrite=True)
    assert m["count"] == 16 and _tree(out) != before and _hidden(tmp_path) == []


def test_sample_failing_part_way_keeps_the_old_folder(w, tmp_path, monkeypatch, capsys):
    from robustok.generator import sampling

    out = tmp_path / "samples"
    before = _old(out)
    real, calls = sampling.generate, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise _Boom("out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "generate", failing)
    with pytest.raises(_Boom):
        main(_sample(w, out, "--overwrite"))
    assert _tree(out) == before and _hidden(tmp_path) == []


@pytest.mark.parametrize("site", ["store-batch:2", "commit:1"])
def test_killed_pretokenize_leaves_no_half_store(w, tmp_path, site):
    """SIGKILL while the new store is built, or when it is complete but not yet renamed: the old folder is
    untouched and a new --out is not created; the next run clears the stale temp folder."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ROBUSTOK_FAULT_AT": site}
    old, new = tmp_path / "old", tmp_path / "new"
    before = _old(old)
    for out, extra in ((old, ["--overwrite"]), (new, [])):
        cmd = [sys.executable, "-m", "robustok.cli", *_pre(w, out, *extra)]
        r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert _tree(old) == before and not new.exists()
    assert any(n.startswith(".new.build-") for n in _hidden(tmp_path))  # the killed run's build folder ...
    assert main(_pre(w, new)) == 0 and (new / "manifest.json").is_file()
    assert not [n for n in _hidden(tmp_path) if n.startswith(".new.")]  # ... removed by the next run into `new`


def test_commit_rechecks_and_staging_errors(tmp_path):
    out = tmp_path / "o"
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with staged_output(out, overwrite=False) as staged:
            (staged.build / "a.txt").write_text("new")
            _old(out)  # appeared while we were working
            staged.commit()
    assert (out / "mine.txt").is_file() and _hidden(tmp_path) == []  # the failed run's build folder is gone
    with staged_output(out, overwrite=True) as staged:
        (staged.build / "a.txt").write_text("new")
        staged.commit()
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"] and _hidden(tmp_path) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(RobustokError, match="exists and is not a folder"):
        check_out(tmp_path / "f", overwrite=True)


def test_make_shards_resumes_its_own_folder_and_refuses_others(w, tmp_path, capsys):
    out = tmp_path / "shards"
    before = _old(out)
    args = ["make-shards", str(w / "imgs"), "--out", str(out), "--shard-size", "3"]
    assert main(args) == 2  # a folder of the user's files
    assert "--overwrite" in capsys.readouterr().err and _tree(out) == before
    fresh = tmp_path / "fresh"
    args[3] = str(fresh)
    assert main(args) == 0 and len(list(fresh.glob("*.tar"))) == 3
    assert main(args) == 0 and "(0 written now)" in capsys.readouterr().out  # a rerun resumes
    made = _tree(fresh)
    assert main([*args[:-1], "4"]) == 2  # other settings: the shards would not match
    assert "shard_size" in capsys.readouterr().err and _tree(fresh) == made
    assert main([*args[:-1], "4", "--overwrite"]) == 0 and "(2 written now)" in capsys.readouterr().out
    args[3] = str(out)
    assert main([*args, "--overwrite"]) == 0 and (out / "mine.txt").read_text() == "keep me\n"


def test_fid_stats_creates_the_parent_folder(w, tmp_path):
    out = tmp_path / "new" / "dir" / "ref.npz"
    assert main(["fid-stats", str(w / "imgs"), "--features", "random", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["ref.npz"]


def test_overwrite_replaces_a_link_not_its_target(tmp_path):
    target = tmp_path / "target"
    before = _old(target)
    (tmp_path / "link").symlink_to(target)
    with staged_output(tmp_path / "link", overwrite=True) as staged:
        (staged.build / "new.txt").write_text("new")
        staged.commit()
    assert not (tmp_path / "link").is_symlink() and (tmp_path / "link" / "new.txt").is_file()
    assert _tree(target) == before and sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]


# --- two writers, one output: the second stops at once, naming the first; made deterministic by SIGSTOP -------
def _stopped_writer(argv: list[str], site: str) -> subprocess.Popen:
    """robustok `argv` in a subprocess that stops itself (SIGSTOP, fault action `stop`) at fault `site`, i.e.
    while it holds its output's lock and has written part of its build folder."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ROBUSTOK_FAULT_AT": f"{site}:stop"}
    p = subprocess.Popen(
        [sys.executable, "-m", "robustok.cli", *argv],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status = os.waitpid(p.pid, os.WUNTRACED)
    if not os.WIFSTOPPED(status):
        p.returncode = os.waitstatus_to_exitcode(status)
        pytest.fail(f"{argv[0]} ended (status {p.returncode}) before reaching {site}: {p.stderr.read()[-2000:]}")
    return p


def _finish(p: subprocess.Popen) -> str:
    os.kill(p.pid, signal.SIGCONT)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    return out


@pytest.fixture(scope="module")
def tok_b(w) -> Path:
    """A second tokenizer (another seed: another fingerprint) for a competing writer."""
    tiny16_tokenizer(seed=1).save_pretrained(w / "tok_b")
    return w / "tok_b"


def test_two_pretokenize_writers_into_one_out(w, tmp_path, tok_b, capsys):
    import json

    out = tmp_path / "tokens"
    assert main(_pre(w, out)) == 0  # an existing store, replaced only by a complete one
    before = _tree(out)
    first = _stopped_writer(_pre(w, out, "--overwrite"), "store-batch:1")
    try:
        second = ["pretokenize", str(tok_b), *_pre(w, out, "--overwrite")[2:]]
        assert main(second) == 2
        err = capsys.readouterr().err
        assert f"--out {out}: another run is writing it (pid {first.pid} " in err and "Traceback" not in err
        assert main(["make-shards", str(w / "imgs"), "--out", str(out), "--overwrite"]) == 2  # any writer
        assert f"pid {first.pid}" in capsys.readouterr().err
        assert _tree(out) == before  # the first run's store is still being built aside
    finally:
        _finish(first)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tokenizer_fingerprint"] == Tokenizer.from_pretrained(w / "tok").fingerprint()
    assert _hidden(tmp_path) == []  # no build, parts, old or lock file left


def test_two_sample_writers_into_one_out(w, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    out = tmp_path / "samples"
    first = _stopped_writer(_sample(w, out, "--overwrite", "--seed", "1"), "samples-batch:1")
    try:
        assert main(_sample(w, out, "--overwrite", "--seed", "2")) == 2
        err = capsys.readouterr().err
        assert f"pid {first.pid}" in err and not out.exists()
    finally:
        _finish(first)
    with np.load(out / "samples.npz") as f:  # the PNGs are the samples.npz beside them
        images = f["arr_0"]
    pngs = sorted(out.glob("*/*.png"), key=lambda p: p.name)
    assert len(pngs) == len(images) == 5
    for k, png in enumerate(pngs):
        assert int(png.stem) == k and np.array_equal(np.asarray(Image.open(png)), images[k, :, :, 0])
    assert _hidden(tmp_path) == []


def test_stale_folders_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "o"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".o.{kind}-{dead.pid}-0badc0de" for kind in ("build", "parts")]  # ".old-": below
    live = [tmp_path / ".o.build-1-feedbeef", tmp_path / ".other.build-{}-0badc0de".format(dead.pid)]
    for d in stale + live:  # pid 1 is alive; another output's folder is not ours
        (d / "sub").mkdir(parents=True)
    with staged_output(out, overwrite=False) as staged:
        assert not any(d.exists() for d in stale) and all(d.is_dir() for d in live)
        (staged.build / "a.txt").write_text("new")
        staged.commit()
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert _hidden(tmp_path) == sorted(d.name for d in live)


# --- full or failing disks: exit 1, one line naming the file, temp folders removed, the old output intact ---------
DISK_CASES = [
    # (id, command, fault (see robustok.train.faults), message after "robustok <command>: error: --out <out>: ")
    (
        "pretokenize-enospc-in-a-shard",
        "pretokenize",
        "write:2:enospc",
        r"no space left on the device while writing labels-00000\.npy \(needs more than the [\d.]+ [kMG]?B free\)",
    ),
    ("pretokenize-eio-after-a-batch", "pretokenize", "store-batch:2:eio", r"input/output error while writing"),
    (
        "sample-enospc-after-a-batch",
        "sample",
        "samples-batch:2:enospc",
        r"no space left on the device \(needs more than the [\d.]+ [kMG]?B free\)",
    ),
    ("sample-eio-after-the-last-batch", "sample", "samples-batch:3:eio", r"input/output error"),
]


@pytest.mark.parametrize("command,fault,pattern", [c[1:] for c in DISK_CASES], ids=[c[0] for c in DISK_CASES])
def test_full_or_failing_disk(w, tmp_path, monkeypatch, capsys, command, fault, pattern):
    import re

    from robustok.train import faults

    out = tmp_path / ("tokens" if command == "pretokenize" else "samples")
    before = _old(out)
    monkeypatch.setattr(faults, "_counts", {})
    monkeypatch.setenv(faults.ENV, fault)
    argv = (_pre if command == "pretokenize" else _sample)(w, out, "--overwrite")
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"robustok {command}: error: --out {out}: "), lines
    assert re.search(pattern, lines[0]), lines[0]
    assert _tree(out) == before and _hidden(tmp_path) == []


@pytest.fixture()
def small_disk(tmp_path) -> Path:
    """A 160 kB tmpfs: a real full disk (where mounting is allowed, e.g. as root; else the test is skipped)."""
    d = tmp_path / "small"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    yield d
    subprocess.run(["umount", str(d)], check=True)


def test_a_real_full_disk(w, small_disk, capsys):
    out, tokens = small_disk / "samples", small_disk / "tokens"
    assert main(_sample(w, out)) == 0
    before = _tree(out)
    many = _sample(w, out, "--overwrite")
    many[many.index("--num-images") + 1] = "300"
    for argv, name in ((many, out), (_pre(w, tokens, "--views", "400"), tokens)):
        assert main(argv) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"--out {name}: no space left on the device" in lines[0], lines
        assert "needs more than the" in lines[0] and "Traceback" not in lines[0]
    assert _tree(out) == before and sorted(p.name for p in small_disk.iterdir()) == ["samples"]


def test_a_note_when_num_images_exceeds_the_data(w, capsys):
    assert main(["fid", str(w / "imgs"), str(w / "imgs"), "--features", "random", "--num-images", "50"]) == 0
    assert f"note: --num-images 50 exceeds the 8 images of {w / 'imgs'}; all 8 were used" in capsys.readouterr().err


def test_a_run_killed_between_its_two_renames_gets_the_old_folder_back(tmp_path):
    """Killed after moving the user's `out` aside, before renaming its new folder into place: the next run into
    `out` puts the old folder back (and then refuses it without --overwrite); one whose `out` was in place already
    removes the set-aside copy."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "o"
    before = _old(tmp_path / f".o.old-{dead.pid}-0badc0de")
    (tmp_path / f".o.build-{dead.pid}-0badc0de").mkdir()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with staged_output(out, overwrite=False):
            pass
    assert _tree(out) == before and _hidden(tmp_path) == []
    _old(tmp_path / f".o.old-{dead.pid}-feedbeef")  # killed after the second rename, while deleting the old one
    with staged_output(out, overwrite=True) as staged:
        (staged.build / "a.txt").write_text("new")
        staged.commit()
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"] and _hidden(tmp_path) == []
