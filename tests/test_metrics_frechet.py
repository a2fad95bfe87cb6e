"""Fréchet distance: closed forms, the stable trace, streaming statistics, stats files and bad input."""

import numpy as np
import pytest
import scipy.linalg

from robustok.errors import DataError
from robustok.metrics.frechet import GaussianStats, RunningStats, frechet_distance, trace_sqrt_product


def _random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d + 5))
    return a @ a.T / a.shape[1]


def test_fid_of_a_set_with_itself_is_zero():
    feats = np.random.default_rng(0).standard_normal((200, 16))
    s = GaussianStats.from_features(feats)
    assert frechet_distance(s, s) == pytest.approx(0.0, abs=1e-8)


def test_gaussian_closed_form_diagonal():
    rng = np.random.default_rng(1)
    d = 8
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = frechet_distance(GaussianStats(mu1, np.diag(v1)), GaussianStats(mu2, np.diag(v2)))
    assert got == pytest.approx(expected, rel=1e-10)


def test_gaussian_closed_form_from_samples():
    # same covariance, shifted mean: FID -> |shift|^2 as the sample grows
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20000, 4))
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    got = frechet_distance(GaussianStats.from_features(x), GaussianStats.from_features(x + shift))
    assert got == pytest.approx(float(shift @ shift), rel=1e-9)


@pytest.mark.parametrize("rank", [None, 10])
def test_stable_trace_agrees_with_scipy_sqrtm(rank):
    rng = np.random.default_rng(3)
    s1, s2 = _random_cov(rng, 32, rank), _random_cov(rng, 32, rank)
    ref = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-6)


def test_streaming_matches_numpy_and_merge():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((503, 7)) * 3 + 100  # large mean: cancellation-prone for naive sums
    rs = RunningStats()
    for i in range(0, len(x), 64):
        rs.update(x[i : i + 64])
    s = rs.finalize()
    np.testing.assert_allclose(s.mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.sigma, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
    a, b = RunningStats().update(x[:100]), RunningStats().update(x[100:])
    np.testing.assert_allclose(a.merge(b).finalize().sigma, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)


def test_empty_stats_merge_and_have_no_moments():
    x = np.random.default_rng(5).standard_normal((20, 3))
    with pytest.raises(DataError, match="no features added"):
        RunningStats().moments()
    a = RunningStats().update(x)
    assert a.merge(RunningStats()) is a and a.n == 20
    b = RunningStats().merge(a)
    np.testing.assert_array_equal(b.finalize().sigma, a.finalize().sigma)
    assert b.moments()[0] is not a.moments()[0]  # merged in by copy, not shared


def test_stats_file_roundtrip_and_errors(tmp_path):
    rng = np.random.default_rng(5)
    s = GaussianStats.from_features(rng.standard_normal((50, 6)))
    s.save(tmp_path / "s.npz")
    t = GaussianStats.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(s.mu, t.mu)
    assert t.n == 50
    np.savez(tmp_path / "keys.npz", m=s.mu, s=s.sigma)
    with pytest.raises(DataError, match="keys 'mu' and 'sigma'"):
        GaussianStats.load(tmp_path / "keys.npz")
    np.savez(tmp_path / "shape.npz", mu=s.mu, sigma=s.sigma[:3])
    with pytest.raises(DataError, match="must be"):
        GaussianStats.load(tmp_path / "shape.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        GaussianStats.load(tmp_path / "junk.npz")


def test_bad_features():
    with pytest.raises(DataError, match="NaN"):
        RunningStats().update(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(DataError, match="at least 2"):
        RunningStats().update(np.ones((1, 3))).finalize()
    with pytest.raises(DataError, match="dimension"):
        RunningStats().update(np.ones((2, 3))).update(np.ones((2, 4)))
    a = GaussianStats(np.zeros(3), np.eye(3))
    with pytest.raises(DataError, match="dimensions differ"):
        frechet_distance(a, GaussianStats(np.zeros(4), np.eye(4)))
