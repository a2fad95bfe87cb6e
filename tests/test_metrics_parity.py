"""Parity of robustok's SSIM, LPIPS, Inception Score and precision/recall with reference libraries (`torchmetrics`,
`lpips`, `torch-fidelity`), compared like for like on random inputs; each test skips when its reference is missing.

`lpips` and `torch-fidelity` import torchvision, which fails to import against some torch builds (a CPU torch with a
torchvision wheel built for another): those tests skip there too, naming the error.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from robustok.metrics.generation import inception_score, precision_recall
from robustok.metrics.lpips import LPIPS
from robustok.metrics.reconstruction import ssim


def reference(name: str):
    """Import the reference package `name`, or skip the test saying why it cannot be used here."""
    try:
        return importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - ImportError, or torchvision's RuntimeError against a mismatched torch
        pytest.skip(f"{name} not usable here: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")


def noisy_pair(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8-valued images (float64) and a noisy copy, clipped to [0, 255]: SSIM well inside (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, shape, generator=g).double()
    y = (x + 40 * torch.randn(shape, generator=g, dtype=torch.float64)).round().clamp(0, 255)
    return x, y


def random_logits(n: int, classes: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    return 3 * g.standard_normal((n, classes)) + g.standard_normal(classes)  # peaked, class-skewed predictions


# --- SSIM vs torchmetrics -------------------------------------------------------------------------------------------
# Both: Gaussian window of 11 taps (torchmetrics derives int(3.5 * 1.5 + 0.5) * 2 + 1 = 11 from sigma 1.5), K1=0.01,
# K2=0.03, data range 255, mean over channels and positions. torchmetrics reflect-pads the images and averages over
# every pixel; ours filters 'valid' (Wang et al. 2004), so we compare with its full SSIM map cropped by the half
# window (5 pixels), the positions whose window lies inside the image. Both run in float64; the only differences are
# summation order (separable vs 2-D kernel) and torchmetrics' clamp of negative variances (inactive on noisy images),
# so 1e-10 absolute is ~1e5 x float64 rounding on sums of 121 terms of size 255^2, and far below any real difference.
@pytest.mark.parametrize("shape", [(3, 3, 48, 40), (2, 1, 32, 32)])
def test_ssim_matches_torchmetrics_on_the_valid_positions(shape):
    reference("torchmetrics")
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    x, y = noisy_pair(shape, seed=sum(shape))
    ours = ssim(x, y)
    _, full = tm_ssim(
        x, y, data_range=255.0, kernel_size=11, sigma=1.5, k1=0.01, k2=0.03, reduction="none", return_full_image=True
    )
    valid = full[..., 5:-5, 5:-5].flatten(1).mean(1)
    assert ours.shape == (shape[0],) and 0.05 < ours.min() and ours.max() < 0.95
    assert torch.allclose(ours, valid, rtol=0, atol=1e-10), (ours, valid)
    assert torch.allclose(ssim(x, x), torch.ones(shape[0], dtype=torch.float64), atol=1e-12)


# --- Inception Score vs torchmetrics and torch-fidelity -----------------------------------------------------------
# Same formula, exp(E_x KL(p(y|x) || p(y))) per split, over 10 splits. torchmetrics shuffles with torch.randperm and
# reports the unbiased std (ddof=1); ours keeps the order and reports np.std (ddof=0), as torch-fidelity and ADM do.
# With N a multiple of the splits every library cuts the same chunks; all run in float64, hence 1e-12 relative.
@pytest.mark.filterwarnings("ignore:Metric `InceptionScore` will save all extracted features")
def test_inception_score_matches_torchmetrics():
    reference("torchmetrics")
    from torchmetrics.image.inception import InceptionScore

    logits = random_logits(200, 10, seed=1)
    metric = InceptionScore(feature=torch.nn.Identity(), splits=10)  # the "features" fed in are the logits
    metric.update(torch.as_tensor(logits))
    torch.manual_seed(0)
    perm = torch.randperm(200)
    torch.manual_seed(0)  # the same permutation inside compute()
    ref_mean, ref_std = metric.compute()
    mean, std = inception_score(logits[perm.numpy()], splits=10)
    assert 1.5 < mean < 9.5
    assert math.isclose(mean, float(ref_mean), rel_tol=1e-12)
    assert math.isclose(std * math.sqrt(10 / 9), float(ref_std), rel_tol=1e-9)  # ddof 0 -> 1


def test_inception_score_matches_torch_fidelity():
    reference("torch_fidelity")
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = random_logits(300, 20, seed=2)
    ref = isc_features_to_metric(torch.as_tensor(logits), splits=10, shuffle=False)
    mean, std = inception_score(logits, splits=10)
    assert math.isclose(mean, ref["inception_score_mean"], rel_tol=1e-12)
    assert math.isclose(std, ref["inception_score_std"], rel_tol=1e-9)


# --- Precision / recall vs torch-fidelity -------------------------------------------------------------------------
# Both: Kynkäänniemi et al. (2019), balls to the k-th (k=3) nearest other sample, "inside" is distance <= radius,
# Euclidean distances from torch.cdist on float64 features. The results are fractions of samples: the same counts
# (a flip would need a distance within float64 rounding of a radius); torch-fidelity averages in float32, hence 1e-6,
# far below one sample's share (1/250).
def test_precision_recall_matches_torch_fidelity():
    reference("torch_fidelity")
    from torch_fidelity.metric_prc import prc_features_to_metric

    g = np.random.default_rng(3)
    real = g.standard_normal((300, 16))
    fake = 0.5 + 1.2 * g.standard_normal((250, 16))  # overlapping clouds: both numbers inside (0, 1)
    ref = prc_features_to_metric(
        torch.as_tensor(fake),
        torch.as_tensor(real),
        prc_neighborhood=3,
        prc_batch_size=10000,
        save_cpu_ram=False,
        verbose=False,
    )  # fake first, real second
    precision, recall = precision_recall(real, fake, k=3)
    assert 0 < precision < 1 and 0 < recall < 1
    assert math.isclose(precision, ref["precision"], abs_tol=1e-6)
    assert math.isclose(recall, ref["recall"], abs_tol=1e-6)


# --- LPIPS vs the lpips package -----------------------------------------------------------------------------------
# The lpips package's VGG variant with its shipped linear heads (lpips/weights/v0.1/vgg.pth) and a random VGG16
# (pnet_rand: no download); ours loads that very state dict (its `net.slice<k>.<i>` and `lin<k>.model.1` keys).
# Same scaling layer, taps, unit normalisation (eps 1e-10) and spatial mean; both run in float64, hence 1e-9 relative.
@pytest.mark.filterwarnings("ignore::UserWarning")  # torchvision's deprecation notes on lpips' `pretrained=` call
def test_lpips_matches_the_lpips_package():
    lpips = reference("lpips")
    torch.manual_seed(0)
    ref = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval().double()
    state = ref.state_dict()
    ours = LPIPS(vgg_state=state, head_state=state).double()
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 3, 64, 64, generator=g, dtype=torch.float64) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    with torch.no_grad():
        want = ref(x, y).flatten()
        got = ours(x, y)
    assert (want > 0).all()
    assert torch.allclose(got, want, rtol=1e-9, atol=0), (got, want)
