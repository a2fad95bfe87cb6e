"""SD-VAE (diffusers AutoencoderKL) adapter: key names, both attention namings, scaling, continuous protocol."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from robustok.adapters import SDVAE, SDVAEConfig, load_external, load_tokenizer
from robustok.errors import ConfigError
from tests.helpers import random_state

pytestmark = pytest.mark.usefixtures("one_thread")


def sdvae_shapes(outs=(128, 256, 512, 512), layers=2, latent=4, deprecated_attn=False) -> dict[str, tuple]:
    """Key -> shape of diffusers' AutoencoderKL state dict (vae.py / unet_2d_blocks.py / resnet.py layout)."""
    S: dict[str, tuple] = {}

    def conv(n, co, ci, k):
        S[f"{n}.weight"], S[f"{n}.bias"] = (co, ci, k, k), (co,)

    def lin(n, c):
        S[f"{n}.weight"], S[f"{n}.bias"] = (c, c), (c,)

    def norm(n, c):
        S[f"{n}.weight"], S[f"{n}.bias"] = (c,), (c,)

    def res(p, ci, co):
        norm(f"{p}.norm1", ci), conv(f"{p}.conv1", co, ci, 3), norm(f"{p}.norm2", co), conv(f"{p}.conv2", co, co, 3)
        if ci != co:
            conv(f"{p}.conv_shortcut", co, ci, 1)

    def mid(p, c):
        res(f"{p}.resnets.0", c, c), res(f"{p}.resnets.1", c, c)
        norm(f"{p}.attentions.0.group_norm", c)
        names = ("query", "key", "value", "proj_attn") if deprecated_attn else ("to_q", "to_k", "to_v", "to_out.0")
        for n in names:
            lin(f"{p}.attentions.0.{n}", c)

    conv("encoder.conv_in", outs[0], 3, 3)
    c = outs[0]
    for i, o in enumerate(outs):
        for j in range(layers):
            res(f"encoder.down_blocks.{i}.resnets.{j}", c, o)
            c = o
        if i != len(outs) - 1:
            conv(f"encoder.down_blocks.{i}.downsamplers.0.conv", c, c, 3)
    mid("encoder.mid_block", c)
    norm("encoder.conv_norm_out", c), conv("encoder.conv_out", 2 * latent, c, 3)
    rev = list(reversed(outs))
    conv("decoder.conv_in", rev[0], latent, 3)
    mid("decoder.mid_block", rev[0])
    c = rev[0]
    for i, o in enumerate(rev):
        for j in range(layers + 1):
            res(f"decoder.up_blocks.{i}.resnets.{j}", c, o)
            c = o
        if i != len(rev) - 1:
            conv(f"decoder.up_blocks.{i}.upsamplers.0.conv", c, c, 3)
    norm("decoder.conv_norm_out", c), conv("decoder.conv_out", 3, c, 3)
    conv("quant_conv", 2 * latent, 2 * latent, 1), conv("post_quant_conv", latent, latent, 1)
    return S


def test_full_size_key_set_and_parameter_count():
    with torch.device("meta"):
        m = SDVAE(SDVAEConfig())
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == sdvae_shapes()
    assert sum(p.numel() for p in m.parameters()) == 83_653_863  # diffusers' SD VAE parameter count


@pytest.mark.parametrize("deprecated", [False, True])
def test_load_safetensors_continuous_protocol(tmp_path, deprecated):
    state = random_state(sdvae_shapes((8, 16, 16, 16), deprecated_attn=deprecated))
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(state, str(path))
    tok = load_external("sd-vae", path, image_size=32, norm_groups=4)
    assert not tok.is_discrete and tok.codebook_size == 0 and tok.grid_size == 4
    assert tok.config.block_out_channels == [8, 16, 16, 16]
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = tok.encode_latents(x)
    mean, _ = tok.moments(x)
    assert z.shape == (2, 4, 4, 4) and torch.allclose(z, mean * 0.18215)
    img = tok.decode_latents(z)
    assert img.shape == (2, 3, 32, 32)
    assert torch.allclose(img, tok.decoder(tok.post_quant_conv(mean)), atol=1e-5)  # scaling undone
    for call in (
        lambda: tok.encode(x),
        lambda: tok.lookup(torch.zeros(1, 4, 4, dtype=torch.long)),
        lambda: tok.codebook,
        lambda: tok.decode(torch.zeros(1, 4, 4, dtype=torch.long)),
    ):
        with pytest.raises(ConfigError, match="continuous"):
            call()
    tok.train()
    out = tok(x, perturb={"beta": 1.0, "noise_std": 0.1})
    assert out.ids is None and set(out.losses) == {"kl"} and out.recon.shape == (2, 3, 32, 32)
    tok.eval()
    unscaled = load_external("sd-vae", path, image_size=32, norm_groups=4, scale_latents=False)
    assert torch.allclose(unscaled.encode_latents(x), mean)
    tok.save_pretrained(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert isinstance(back, SDVAE) and torch.equal(back.reconstruct(x), tok.reconstruct(x))
    assert back.frozen_part_names() == ["encoder.", "quant_conv."]


def test_matches_diffusers_when_installed(tmp_path):
    """Numerical cross-check against diffusers' own AutoencoderKL (skipped where diffusers is not installed)."""
    diffusers = pytest.importorskip("diffusers")
    vae = diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        latent_channels=4,
        norm_num_groups=4,
    ).eval()
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(tmp_path / "vae.safetensors"))
    tok = load_external("sd-vae", tmp_path / "vae.safetensors", image_size=32, norm_groups=4)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(tok.encode_latents(x), vae.encode(x).latent_dist.mean * 0.18215, atol=1e-5)
        z = torch.randn(1, 4, 4, 4)
        assert torch.allclose(tok.decode_latents(z), vae.decode(z / 0.18215).sample, atol=1e-4)
