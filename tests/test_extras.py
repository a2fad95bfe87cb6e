"""Optional extras: a missing one is a one-line error naming the extra (or, for TensorBoard, a note), never a
traceback from deep inside a command."""

from __future__ import annotations

import logging
import sys

import pytest

from robustok.extras import MissingExtraError, require
from robustok.train.logging import MetricsLogger


def _hide(monkeypatch, name: str) -> None:
    """Make `import name` fail as if the package were not installed (None in sys.modules stops the import)."""
    monkeypatch.setitem(sys.modules, name, None)


def test_require_names_the_extra(monkeypatch):
    _hide(monkeypatch, "matplotlib")
    with pytest.raises(
        MissingExtraError,
        match=r"the figures: matplotlib is not installed \(pip install "
        r"'robustok\[plots\]'\)",
    ):
        require("matplotlib.pyplot", "the figures")
    assert require("json", "anything").dumps({}) == "{}"


def test_training_logs_without_tensorboard_say_so(monkeypatch, tmp_path, caplog):
    _hide(monkeypatch, "torch.utils.tensorboard")
    with caplog.at_level(logging.WARNING):
        log = MetricsLogger(tmp_path)
    log.log(1, {"loss": 2.0})
    log.close()
    assert log.tb is None and (tmp_path / "metrics.jsonl").read_text().count("loss") == 1
    assert "pip install 'robustok[tensorboard]'" in caplog.text


def test_wds_data_without_webdataset_names_the_extra(monkeypatch, tmp_path):
    from robustok.data.datasets import WebDatasetShards

    _hide(monkeypatch, "webdataset")
    with pytest.raises(MissingExtraError, match=r"pip install 'robustok\[wds\]'"):
        WebDatasetShards(str(tmp_path / "shard-{000..001}.tar"), 32, 1)
