"""Diffusion generator: ODE samplers on an analytic Gaussian, CFG scale 1, SDEdit, normalisation, errors."""

import pytest
import torch

from robustok.errors import ConfigError, DataError
from robustok.generator.diffusion import DiffusionConfig, DiffusionGenerator
from robustok.generator.flow import integrate, interpolate, time_grid


def gaussian_velocity(mu: float, s: float):
    """Exact flow-matching velocity E[noise - x0 | x_t] for data N(mu, s^2) and x_t = (1-t) x0 + t noise."""

    def v(x, t):
        t = t.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        a, b = 1 - t, t
        var = a * a * s * s + b * b
        e_x0 = mu + a * s * s / var * (x - a * mu)
        e_noise = b / var * (x - a * mu)
        return e_noise - e_x0

    return v


@pytest.mark.parametrize("sampler,steps,tol", [("euler", 50, 0.03), ("heun", 10, 0.01)])
def test_samplers_recover_gaussian(sampler, steps, tol):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100_000, 1, dtype=torch.float64, generator=g)
    out = integrate(gaussian_velocity(2.0, 0.5), x, time_grid(steps), sampler)
    assert abs(out.mean().item() - 2.0) < 0.01
    assert abs(out.std().item() - 0.5) < tol


def test_heun_beats_euler():
    x = torch.randn(50_000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    v = gaussian_velocity(-1.0, 0.3)
    err = {s: abs(integrate(v, x, time_grid(8), s).std().item() - 0.3) for s in ("euler", "heun")}
    assert err["heun"] < err["euler"] / 2


def test_time_grid_and_errors():
    t = time_grid(4, 0.5)
    assert t[0] == 0.5 and t[-1] == 0 and len(t) == 5
    assert torch.all(time_grid(10, 1.0, shift=3.0) >= time_grid(10))
    with pytest.raises(ConfigError):
        time_grid(0)
    with pytest.raises(ConfigError):
        integrate(lambda x, t: x, torch.zeros(1), time_grid(2), "rk4")


def make(**kw) -> DiffusionGenerator:
    torch.manual_seed(0)
    cfg = DiffusionConfig(
        latent_channels=3,
        grid=[4, 4],
        patch_size=2,
        num_classes=4,
        dim=32,
        depth=2,
        heads=4,
        latent_mean=[1.0, -1.0, 0.5],
        latent_std=[2.0, 0.5, 1.0],
        **kw,
    )
    m = DiffusionGenerator(cfg).double().eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return m


def test_shapes_normalisation_and_loss():
    m = make()
    z = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    assert torch.allclose(m.denormalize(m.normalize(z)), z)
    loss = m.loss(z, torch.tensor([0, 1, 2, 3, -1, 1]), label_dropout=0.2, time_sampling="logit-normal")
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert m.sample(torch.tensor([0, 1]), steps=3).shape == (2, 3, 4, 4)


def test_cfg_one_is_conditional_model():
    m = make()
    y = torch.tensor([0, 1, 2, 3])
    a = m.sample(y, cfg=1.0, steps=4, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    b = m.denormalize(integrate(lambda x, t: m(x, t, y), noise, time_grid(4), "heun"))
    assert torch.allclose(a, b)
    v = m.velocity_fn(y, cfg=1.0)
    cfg_v = m.velocity_fn(y, cfg=1.0 + 1e-12)  # batched cond+uncond path
    x, t = torch.randn(4, 3, 4, 4, dtype=torch.float64), torch.full((4,), 0.3, dtype=torch.float64)
    assert torch.allclose(v(x, t), cfg_v(x, t), atol=1e-9)
    assert not torch.allclose(m.sample(y, cfg=3.0, steps=4, generator=torch.Generator().manual_seed(0)), a)


def test_denoise_from():
    m = make()
    z = torch.randn(3, 3, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    near = m.denoise_from(z, 1e-4, y, steps=10)
    assert (near - z).abs().max() < 0.05  # almost no noise: almost the input
    noise = torch.randn(3, 3, 4, 4, dtype=torch.float64)
    full = m.denoise_from(z, 1.0, y, steps=5, noise=noise, sampler="euler")
    assert torch.allclose(full, m.denormalize(integrate(m.velocity_fn(y), noise, time_grid(5), "euler")))
    assert torch.allclose(interpolate(z, noise, torch.zeros(3)), z)


def test_bad_inputs(tmp_path):
    m = make()
    with pytest.raises(DataError, match="class ids"):
        m.sample(torch.tensor([7]))
    with pytest.raises(ConfigError, match="cfg"):
        m.sample(torch.tensor([0]), cfg=-0.5)
    with pytest.raises(DataError, match="latents of shape"):
        m.denoise_from(torch.zeros(1, 3, 8, 8), 0.5, torch.tensor([0]))
    with pytest.raises(ConfigError):
        DiffusionGenerator(DiffusionConfig(grid=[5, 5], patch_size=2))
    with pytest.raises(ConfigError):
        DiffusionGenerator(DiffusionConfig(latent_channels=2, latent_mean=[0.0]))
    m.save_pretrained(tmp_path / "d")
    from robustok.generator import load_generator

    back = load_generator(tmp_path / "d").double()
    assert back.config.latent_std == [2.0, 0.5, 1.0]
    y = torch.tensor([1])
    assert torch.allclose(
        back.sample(y, steps=2, generator=torch.Generator().manual_seed(0)),
        m.sample(y, steps=2, generator=torch.Generator().manual_seed(0)),
    )
