import pytest
import torch

from robustok.tokenizer.perturbation import (
    PerturbationConfig,
    anneal_ratio,
    neighbour_table,
    perturb_codes_st,
    perturb_ids,
    scheduled,
)
from tests.helpers import tiny_tokenizer


def _codebook(k=64, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(k, d, generator=g), dim=1)


@pytest.mark.parametrize("alpha,delta", [(1.0, 4), (0.5, 10), (0.3, 2)])
def test_changed_fraction_matches_theory(alpha, delta):
    cb = _codebook()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 64, (400, 8, 8), generator=g)
    beta = 0.5
    mask = torch.rand(400, generator=g) < beta
    new = perturb_ids(ids, cb, alpha, delta, generator=g, image_mask=mask)
    frac = (new != ids).float().mean().item()
    expect = mask.float().mean().item() * alpha * (1 - 1 / delta)
    assert abs(frac - expect) < 0.01, (frac, expect)
    assert torch.equal(new[~mask], ids[~mask])


def test_replacements_lie_in_top_delta_of_the_code():
    cb = _codebook()
    ids = torch.randint(0, 64, (50, 4, 4))
    new = perturb_ids(ids, cb, 1.0, 5, generator=torch.Generator().manual_seed(0))
    table = neighbour_table(cb, cb, 5)
    assert (table[:, 0] == torch.arange(64)).all()  # a code is its own nearest neighbour
    ok = (table[ids.flatten()] == new.flatten()[:, None]).any(1)
    assert ok.all()


def test_latent_neighbours_need_and_use_z():
    cb = _codebook()
    z = torch.nn.functional.normalize(torch.randn(3, 4, 2, 2), dim=1)
    ids = torch.zeros(3, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="latents"):
        perturb_ids(ids, cb, 1.0, 3, neighbours="latent")
    new = perturb_ids(ids, cb, 1.0, 3, z=z, neighbours="latent", generator=torch.Generator().manual_seed(0))
    table = neighbour_table(z.permute(0, 2, 3, 1).reshape(-1, 4), cb, 3)
    assert (table == new.flatten()[:, None]).any(1).all()


def test_deterministic_for_a_seed_and_alpha_zero_is_identity():
    cb = _codebook()
    ids = torch.randint(0, 64, (4, 8, 8))
    a = perturb_ids(ids, cb, 0.7, 6, generator=torch.Generator().manual_seed(3))
    b = perturb_ids(ids, cb, 0.7, 6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(perturb_ids(ids, cb, 0.0, 6), ids)


def test_straight_through_gradient_reaches_the_encoder_and_not_the_codebook():
    tok = tiny_tokenizer()
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    out = tok(x, perturb={"beta": 1.0, "alpha": 1.0, "delta": 8, "noise_std": 0.0, "neighbours": "code"})
    assert out.stats["changed_tokens"] > 0.5
    out.recon.mean().backward()
    enc_grad = sum(p.grad.abs().sum() for p in tok.encoder.parameters() if p.grad is not None)
    assert enc_grad > 0
    assert tok.quantizer.embedding.weight.grad is None  # no VQ loss in this backward, no grad via the swap


def test_vq_losses_use_clean_codes():
    tok = tiny_tokenizer()
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    torch.manual_seed(0)
    clean = tok(x)
    torch.manual_seed(0)
    pert = tok(x, perturb={"beta": 1.0, "alpha": 1.0, "delta": 8, "noise_std": 0.0})
    assert torch.allclose(clean.losses["vq"], pert.losses["vq"])
    assert not torch.allclose(clean.recon, pert.recon)


def test_no_perturbation_in_eval_mode():
    tok = tiny_tokenizer().eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    a = tok(x, perturb={"beta": 1.0, "alpha": 1.0, "delta": 8, "noise_std": 0.0})
    assert torch.allclose(a.recon, tok.decode_codes(tok.quantizer.lookup(tok.encode(x))), atol=1e-5)


def test_training_selects_images_at_random_with_rate_beta():
    cb = _codebook()
    z = torch.nn.functional.normalize(torch.randn(2000, 4, 2, 2), dim=1)
    ids = torch.randint(0, 64, (2000, 2, 2))
    _, _, mask = perturb_codes_st(z, ids, cb, 0.1, 1.0, 4, generator=torch.Generator().manual_seed(0))
    assert abs(mask.float().mean().item() - 0.1) < 0.02
    assert mask[:200].float().mean() < 0.5  # not "the first beta*B images"


def test_anneal_schedule_is_continuous_per_step():
    vals = [anneal_ratio(s, 1000, 0.2, 0.6, 0.5) for s in range(1001)]
    assert vals[0] == 1.0 and vals[200] == 1.0 and vals[600] == 0.5 and vals[1000] == 0.5
    assert max(abs(a - b) for a, b in zip(vals, vals[1:])) <= 0.5 / 400 + 1e-9
    assert anneal_ratio(400, 1000, 0.2, 0.6, 0.5) == pytest.approx(0.75)
    assert anneal_ratio(1000, 1000, 0.2, 0.6, 0.0) == 0.0  # anneal to zero stays at zero (no jump back)
    alpha, delta, _ = scheduled(PerturbationConfig(alpha=1.0, delta=100), 1000, 1000)
    assert (alpha, delta) == (0.5, 50)
