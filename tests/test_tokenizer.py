import json

import pytest
import torch

from robustok import Tokenizer, TokenizerConfig
from robustok.errors import CheckpointError, ConfigError
from robustok.tokenizer.vit import ViTEncoder, load_dinov2
from tests.helpers import tiny_tokenizer


@pytest.mark.parametrize(
    "kw", [{}, {"backbone": "vit", "patch_size": 8, "vit_width": 32, "vit_depth": 1, "vit_heads": 2}, {"channels": 3}]
)
def test_encode_decode_roundtrip_and_pretrained(tmp_path, kw):
    tok = tiny_tokenizer(**kw).eval()
    c = tok.config.channels
    x = torch.rand(3, c, 32, 32) * 2 - 1
    ids = tok.encode(x)
    g = tok.grid_size
    assert ids.shape == (3, g, g) and ids.dtype == torch.long and int(ids.max()) < tok.codebook_size
    y = tok.decode(ids)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert torch.allclose(tok.decode(ids.view(3, -1)), y)
    tok.save_pretrained(tmp_path / "t")
    again = Tokenizer.from_pretrained(tmp_path / "t")
    assert torch.equal(again.encode(x), ids) and again.fingerprint() == tok.fingerprint()


def test_codebook_is_l2_normalised_and_ids_checked():
    tok = tiny_tokenizer()
    assert torch.allclose(tok.codebook.norm(dim=1), torch.ones(64), atol=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        tok.decode(torch.full((1, 16, 16), 64))
    with pytest.raises(ValueError, match="expected token ids"):
        tok.decode(torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="expected images"):
        tok.encode(torch.zeros(1, 3, 32, 32))


def test_other_architecture_is_rejected_with_the_file_named(tmp_path):
    tiny_tokenizer().save_pretrained(tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    cfg["config"]["hidden_dim"] = 32
    (tmp_path / "a" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        Tokenizer.from_pretrained(tmp_path / "a")
    (tmp_path / "a" / "config.json").write_text(json.dumps({"class": "Generator", "config": {}}))
    with pytest.raises(CheckpointError, match="Generator"):
        Tokenizer.from_pretrained(tmp_path / "a")
    (tmp_path / "a" / "model.safetensors").write_bytes(b"garbage")
    cfg["config"]["hidden_dim"] = 16
    (tmp_path / "a" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="safetensors"):
        Tokenizer.from_pretrained(tmp_path / "a")
    with pytest.raises(CheckpointError, match="not found"):
        Tokenizer.from_pretrained(tmp_path / "missing")


def test_bad_config_values():
    with pytest.raises(ConfigError, match="backbone"):
        Tokenizer(TokenizerConfig(backbone="resnet"))
    with pytest.raises(ConfigError, match="divisible"):
        Tokenizer(TokenizerConfig(image_size=30))


def test_dead_codes_are_restarted_from_encoder_outputs():
    tok = tiny_tokenizer(dead_code_threshold=0.5).train()
    tok.quantizer.usage.zero_()
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    out = tok(x)
    assert out.stats["restarted"] == 64
    z = tok.encode_latents(x).permute(0, 2, 3, 1).reshape(-1, 4)
    # every code now equals one of the batch's latents
    d = torch.cdist(tok.codebook.detach(), z.detach())
    assert d.min(1).values.max() < 2e-3


def test_continuous_tokenizer_has_latents_not_ids():
    tok = tiny_tokenizer(bottleneck="kl").eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    z = tok.encode_latents(x)
    assert z.shape == (2, 4, 16, 16) and not tok.is_discrete
    assert tok.decode_latents(z).shape == x.shape
    with pytest.raises(ConfigError, match="discrete"):
        tok.encode(x)
    tok.train()
    out = tok(x, perturb={"beta": 1.0, "alpha": 1.0, "delta": 1, "noise_std": 0.5})
    assert "kl" in out.losses and out.stats["perturbed_images"] == 1


def test_dinov2_init_from_a_timm_style_file(tmp_path):
    from safetensors.torch import save_file

    src = ViTEncoder(3, 28, 14, 32, 2, 2, 8)  # a "DINOv2" at patch 14 with a cls position
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("head")}
    state["pos_embed"] = torch.cat([torch.zeros(1, 1, 32), state["pos_embed"]], 1)
    save_file(state, tmp_path / "dino.safetensors")
    dst = ViTEncoder(1, 32, 16, 32, 2, 2, 8)
    loaded = load_dinov2(dst, tmp_path / "dino.safetensors")
    assert "blocks.0.attn.qkv.weight" in loaded and "pos_embed" in loaded and "patch_embed.proj.weight" in loaded
    assert torch.equal(dst.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)
    with pytest.raises(CheckpointError, match="not found"):
        load_dinov2(dst, tmp_path / "none.pt")


def test_fingerprint_is_stable_across_versions():
    """Pinned: token stores, generators and pairs record their tokenizer's fingerprint, so a new config field (at
    its default) or a changed formula must not change it (this value was computed before `dinov2_init_decoder`)."""
    from robustok.tokenizer.model import Tokenizer, TokenizerConfig

    torch.manual_seed(0)
    tok = Tokenizer(TokenizerConfig(base_channels=8, channel_mult=[1, 2], hidden_dim=16, codebook_size=64, code_dim=4))
    assert tok.fingerprint() == "6ada297319bf5880"
    tok.config.dinov2_init_decoder = True  # a non-default value is part of the identity
    assert tok.fingerprint() != "6ada297319bf5880"
