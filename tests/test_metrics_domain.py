"""The shipped `fmnist` feature network: hash-checked weights and pinned reference feature values."""

import shutil

import pytest
import torch

from robustok.errors import CheckpointError
from robustok.metrics import domain


def test_shipped_weights_give_the_reference_features(monkeypatch):
    monkeypatch.delenv("ROBUSTOK_FMNIST_WEIGHTS", raising=False)
    feats = domain.FmnistFeatures()
    assert feats.source == domain.SHIPPED and feats.accuracy == pytest.approx(domain.SHIPPED_ACCURACY)
    images, labels = domain._padded("test", None)
    f = feats(images[:4])
    # pinned once from the shipped file: a change of weights, preprocessing or architecture moves them
    torch.testing.assert_close(f.sum(1), torch.tensor([212.4931, 210.2994, 241.3536, 257.4619]), atol=2e-3, rtol=0)
    torch.testing.assert_close(f[:, 1], torch.tensor([0.49466, 4.36317, 4.38753, 3.18463]), atol=2e-4, rtol=0)
    assert feats.logits(images[:4]).argmax(1).tolist() == labels[:4].tolist()


def test_damaged_shipped_file_is_refused(tmp_path, monkeypatch):
    damaged = tmp_path / domain.SHIPPED.name
    shutil.copy(domain.SHIPPED, damaged)
    with open(damaged, "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\0\0\0\0")
    monkeypatch.setattr(domain, "SHIPPED", damaged)
    with pytest.raises(CheckpointError, match="sha256"):
        domain.load_weights()


def test_other_weights_by_environment(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    other = tmp_path / "mine.safetensors"
    save_file(domain.FmnistNet().state_dict(), str(other), metadata={"test_accuracy": "0.5"})
    monkeypatch.setenv("ROBUSTOK_FMNIST_WEIGHTS", str(other))
    net, acc, path = domain.load_weights()
    assert path == other and acc == 0.5
    monkeypatch.setenv("ROBUSTOK_FMNIST_WEIGHTS", str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        domain.load_weights()
