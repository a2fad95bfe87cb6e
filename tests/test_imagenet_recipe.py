"""The ImageNet recipe on tiny shapes with random weights (CPU, fast): config, DINO discriminator, DiffAugment,
DINOv2 InfoNCE, make-shards -> wds: round trip, ADM reference batches, clear errors for missing weight files."""

import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from robustok.cli import main
from robustok.config import load_config
from robustok.errors import CheckpointError, ConfigError
from robustok.hub import load_state_checked, load_tensors, save_tensors
from robustok.losses.diffaug import DiffAugment, cutout, translation
from robustok.losses.discriminators import build_discriminator
from robustok.losses.frozen_vit import load_frozen_vit
from robustok.losses.gan import hinge_d_loss
from robustok.losses.semantic import DinoSemanticLoss, clip_infonce
from robustok.tokenizer.train import TokenizerTask, TokenizerTrainConfig
from tests.helpers import ROOT, vit_standin

CONFIG = str(ROOT / "configs/tokenizer/imagenet-robustok.yaml")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    return {
        "dino": vit_standin(d / "dino_s.safetensors", 32, 8, 32, 12, False),  # DINO ViT-S/16 stand-in
        "dinov2": vit_standin(d / "dinov2_b.safetensors", 28, 7, 64, 2, True),
    }  # DINOv2 ViT-B/14 stand-in


def test_config_holds_the_papers_numbers():
    c = load_config(TokenizerTrainConfig, CONFIG)
    c.validate()
    assert (c.model.backbone, c.model.patch_size, c.model.vit_width, c.model.vit_depth) == ("vit", 16, 768, 12)
    assert c.model.grid_size == 16 and (c.model.codebook_size, c.model.code_dim, c.model.l2_norm) == (4096, 64, True)
    p = c.perturb
    assert (p.beta, p.alpha, p.delta, p.end_ratio, p.anneal_start, p.anneal_end) == (0.1, 1.0, 100, 0.5, 0.2, 0.6)
    assert c.data.batch_size == 1024 and c.train.lr == pytest.approx(2.4e-4) and c.train.steps == 200 * 1251
    assert c.loss.disc_start == 56 * 1251 and c.loss.disc_kind == "dino" and c.loss.semantic_weight == 0.1


def tiny_cfg(tmp_path, weights, *extra):
    over = [
        f"run.dir={tmp_path / 'run'}",
        "run.progress=false",
        "run.log_every=1",
        "run.sample_every=0",
        "data.train=fashion-mnist:train",
        "data.resolution=32",
        "data.channels=3",
        "data.batch_size=4",
        "model.image_size=32",
        "model.patch_size=4",
        "model.vit_width=64",
        "model.vit_depth=2",
        "model.vit_heads=2",
        "model.hidden_dim=64",
        "model.codebook_size=64",
        "model.code_dim=8",
        f"model.dinov2_checkpoint={weights['dinov2']}",
        "loss.perceptual=none",
        "loss.disc_start=0",
        f"loss.dino_disc_checkpoint={weights['dino']}",
        "loss.dino_disc_image_size=32",
        f"loss.semantic_checkpoint={weights['dinov2']}",
        "perturb.delta=8",
        "train.steps=2",
        "train.warmup_steps=1",
        "data.num_workers=0",
        *extra,
    ]
    return load_config(TokenizerTrainConfig, CONFIG, over)


def test_config_builds_and_trains_at_tiny_size(tmp_path, weights):
    from robustok.train.loop import train

    cfg = tiny_cfg(tmp_path, weights)
    task = TokenizerTask(cfg, dataset=_RandomImages(8))
    blocks = dict(task.model.decoder.named_parameters())
    assert torch.equal(blocks["blocks.0.attn.qkv.weight"], load_tensors(weights["dinov2"])["blocks.0.attn.qkv.weight"])
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    out = task.step(task.model, [x], 0, task.model)
    for key in ("semantic", "g_adv", "disc_loss", "vq"):
        assert key in out and torch.isfinite(out[key]).all()
    out["loss"].backward()
    assert (
        task.model.quant_conv.weight.grad.abs().sum() > 0
        and task.model.encoder.blocks[0].attn.qkv.weight.grad is not None
    )
    exported = train(task, cfg.run, cfg.train, cfg.data, full_config=cfg)
    meta = json.loads((exported / "discriminator" / "config.json").read_text())["config"]
    assert meta["kind"] == "dino" and meta["diffaug"] == "color,translation,cutout"
    disc = build_discriminator(meta)
    load_state_checked(disc, load_tensors(exported / "discriminator" / "model.safetensors"), "exported disc")
    # post-training (its ImageNet config) reuses it, with the backbone file given again where it has moved
    from types import SimpleNamespace

    from robustok.posttrain.train import PostTrainConfig, PostTrainTask

    pcfg = load_config(
        PostTrainConfig,
        ROOT / "configs/posttrain/imagenet.yaml",
        [f"tokenizer={exported}", f"loss.dino_disc_checkpoint={weights['dino']}", "eval_reference=fashion-mnist:test"],
    )
    holder = SimpleNamespace(cfg=pcfg)
    reused = PostTrainTask._discriminator(holder, 3)
    assert holder.reused_discriminator and reused.spec["kind"] == "dino"
    assert torch.equal(
        reused.state_dict()["net.heads.0.out.parametrizations.weight.original"],
        disc.state_dict()["net.heads.0.out.parametrizations.weight.original"],
    )


class _RandomImages(torch.utils.data.Dataset):
    def __init__(self, n):
        self.x = torch.rand(n, 3, 32, 32) * 2 - 1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, item):
        i = item[0] if isinstance(item, tuple) else item
        return self.x[i], 0


def test_dino_discriminator_forward_backward(weights):
    spec = {
        "kind": "dino",
        "diffaug": "color,translation,cutout",
        "checkpoint": str(weights["dino"]),
        "image_size": 32,
        "taps": [-1, 2, 5, 8, 11],
        "virtual_bs": 2,
    }
    disc = build_discriminator(spec)
    backbone = disc.net.backbone
    assert not any(k.startswith("net.backbone") or "_frozen" in k for k in disc.state_dict())
    assert all(not p.requires_grad for p in backbone.parameters())
    disc.requires_grad_(True)  # as the objective does: the backbone stays frozen
    assert all(not p.requires_grad for p in backbone.parameters())
    assert sum(p.numel() for p in disc.parameters()) > 0
    fake = (torch.rand(4, 3, 40, 40) * 2 - 1).requires_grad_(True)  # larger than 32: crop or area resize
    real = torch.rand(4, 3, 40, 40) * 2 - 1
    lf, lr = disc(fake), disc(real)
    assert lf.shape == (4, 5 * 16)  # 5 taps x (32/8)^2 tokens
    loss = hinge_d_loss(lr, lf) + disc.lecam(lr, lf)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # gradient reaches the generator's images
    assert all(p.grad is not None for p in disc.parameters())
    assert all(p.grad is None for p in backbone.parameters())
    x = torch.rand(4, 3, 32, 32) * 2 - 1  # backbone size: no crop; eval: fixed SN vectors
    for policy, differ in (("", False), ("translation", True)):
        d = build_discriminator({**spec, "diffaug": policy}).eval()
        torch.manual_seed(1)
        first = d(x)
        torch.manual_seed(2)
        assert (not torch.allclose(first, d(x))) == differ  # DiffAug is applied inside the discriminator
    with pytest.raises(ConfigError, match="block index 12"):
        build_discriminator({**spec, "taps": [12]})


def test_diffaug_shapes_grad_and_ops():
    torch.manual_seed(0)
    x = (torch.rand(6, 3, 16, 16) * 2 - 1).requires_grad_(True)
    y = DiffAugment("color,translation,cutout")(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad.abs().sum() > 0
    img = torch.arange(1, 2 * 3 * 16 * 16 + 1, dtype=torch.float32).view(2, 3, 16, 16)
    shifted = translation(img)
    for b in range(2):  # each image is one zero-filled shift of itself
        ok = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ref = torch.zeros_like(img[b])
                ys, xs = slice(max(dy, 0), 16 + min(dy, 0)), slice(max(dx, 0), 16 + min(dx, 0))
                ys0, xs0 = slice(max(-dy, 0), 16 + min(-dy, 0)), slice(max(-dx, 0), 16 + min(-dx, 0))
                ref[:, ys, xs] = img[b][:, ys0, xs0]
                ok.append(torch.equal(ref, shifted[b]))
        assert sum(ok) == 1
    holes = (cutout(torch.ones(64, 3, 20, 20)) == 0).sum(dim=(1, 2, 3)) / 3
    assert holes.max() == 16 and (holes > 0).all()  # a 4x4 square (0.2 x 20), possibly clipped
    with pytest.raises(ConfigError, match="unknown augmentation 'blur'"):
        DiffAugment("color,blur")


def test_infonce_and_semantic_loss(weights):
    t = torch.eye(6) * 10
    assert clip_infonce(t, t) < 1e-3
    assert clip_infonce(t, t[torch.tensor([1, 0, 3, 2, 5, 4])]) > 5
    s = torch.randn(5, 4)
    n = torch.nn.functional.normalize
    assert clip_infonce(s, 3 * s, normalize=True) == pytest.approx(float(clip_infonce(n(s, dim=1), n(s, dim=1))))
    teacher = load_frozen_vit(weights["dinov2"], 32, 4, "teacher", "")  # 14->... re-gridded to 32/4
    assert teacher.pos_embed.shape == (1, 1 + 64, 64) and teacher.patch_embed.proj.weight.shape[-1] == 4
    loss_fn = DinoSemanticLoss(teacher, weight=0.1)
    proj = torch.nn.Conv2d(64, 8, 1)
    latents = torch.randn(4, 8, 8, 8, requires_grad=True)
    loss = loss_fn(torch.rand(4, 3, 32, 32) * 2 - 1, latents, proj)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert latents.grad.abs().sum() > 0 and proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_patch_kernel_resize_keeps_responses():
    from robustok.losses.frozen_vit import _resize_patch_kernel

    torch.manual_seed(0)
    w = torch.randn(5, 3, 7, 7)
    w16 = _resize_patch_kernel(w, 16)
    x = torch.randn(2, 3, 7, 7)
    x16 = torch.nn.functional.interpolate(x, size=(16, 16), mode="bicubic", align_corners=False, antialias=True)
    a = torch.einsum("ocij,bcij->bo", w, x)
    b = torch.einsum("ocij,bcij->bo", w16, x16)
    assert torch.allclose(a, b, rtol=1e-3, atol=1e-3)


def _image_folder(root, per_class=5):
    rng = np.random.default_rng(0)
    for c, name in enumerate(["n01", "n02"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
            ext = ["png", "JPEG", "bmp"][i % 3]
            Image.fromarray(arr).save(root / name / f"img{i}.{ext}")
    return root


def test_make_shards_round_trip(tmp_path, capsys):
    from robustok.data import build_dataset
    from robustok.data.datasets import WebDatasetShards

    src = _image_folder(tmp_path / "imgs")
    assert main(["make-shards", str(src), "--out", str(tmp_path / "shards"), "--shard-size", "4"]) == 0
    out = capsys.readouterr().out
    spec = out.strip().splitlines()[-1].split("data spec: ")[1]
    tars = sorted((tmp_path / "shards").glob("*.tar"))
    assert len(tars) == 3 and not list((tmp_path / "shards").glob(".*tmp"))
    assert (tmp_path / "shards" / "classes.txt").read_text().split() == ["n01", "n02"]
    with tarfile.open(tars[0]) as t:
        names = t.getnames()
    assert all(n.split(".")[1] in ("png", "jpg", "cls") for n in names)
    orig = (src / "n01" / "img1.JPEG").read_bytes()  # JPEG bytes stored unchanged
    stored = [
        t
        for tar in tars
        for t in [tarfile.open(tar)]
        for m in t.getmembers()
        if m.name.endswith(".jpg") and t.extractfile(m).read() == orig
    ]
    assert len(stored) == 1
    ds = build_dataset(spec, 16, 3)
    assert isinstance(ds, WebDatasetShards)
    ds.repeat = False
    samples = list(ds)
    assert len(samples) == 10 and sorted(lbl for _, lbl in samples) == [0] * 5 + [1] * 5
    assert all(x.shape == (3, 16, 16) for x, _ in samples)
    assert main(["make-shards", str(src), "--out", str(tmp_path / "shards"), "--shard-size", "4"]) == 0
    assert "(0 written now)" in capsys.readouterr().out
    (src / "n02" / "bad.png").write_bytes(b"not an image")
    assert main(["make-shards", str(src), "--out", str(tmp_path / "s2")]) == 2
    assert "bad.png" in capsys.readouterr().err and not list((tmp_path / "s2").glob("*.tar"))


def test_missing_weight_files_are_named(tmp_path, weights, capsys):
    with pytest.raises(CheckpointError, match=r"nope_dino\.pth: DINO discriminator backbone weights file not found"):
        build_discriminator(
            {
                "kind": "dino",
                "checkpoint": str(tmp_path / "nope_dino.pth"),
                "image_size": 224,
                "taps": [-1],
                "virtual_bs": 8,
            }
        )
    with pytest.raises(CheckpointError, match=r"nope_v2\.safetensors: semantic DINOv2 teacher weights file not found"):
        load_frozen_vit(tmp_path / "nope_v2.safetensors", 32, 4, "semantic DINOv2 teacher", "")
    save_tensors({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match=r"other\.safetensors: not a timm-style ViT state dict"):
        load_frozen_vit(tmp_path / "other.safetensors", 32, 4, "semantic DINOv2 teacher", "")
    cfg = tiny_cfg(
        tmp_path,
        weights,
        f"loss.semantic_checkpoint={tmp_path / 'nope_v2.safetensors'}",
        "loss.dino_disc_checkpoint=null",
    )
    with pytest.raises(
        CheckpointError,
        match=r"loss.dino_disc_checkpoint=\(not set\), loss.semantic_checkpoint="
        r".*nope_v2\.safetensors",
    ):
        TokenizerTask(cfg, dataset=_RandomImages(8))
    with pytest.raises(ConfigError, match="unknown discriminator 'stylegan'"):
        TokenizerTask(tiny_cfg(tmp_path, weights, "loss.disc_kind=stylegan"), dataset=_RandomImages(8))
    with pytest.raises(ConfigError, match="must equal model.hidden_dim"):
        TokenizerTask(tiny_cfg(tmp_path, weights, "model.hidden_dim=32"), dataset=_RandomImages(8))
    # the shipped config, untouched paths: the CLI names the first missing file and exits 2
    assert main(["train-tokenizer", CONFIG, f"run.dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    for path in (
        "weights/vit_base_patch14_dinov2.lvd142m.safetensors",
        "weights/dino_deitsmall16_pretrain.pth",
        "weights/vgg16-397923af.pth",
    ):
        assert path in err


def test_adm_reference_batch_serves_fid_and_precision_recall(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    ref = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", arr_0=a)
    np.savez(tmp_path / "ref_images.npz", arr_0=ref)
    assert (
        main(
            [
                "fid-stats",
                str(tmp_path / "ref_images.npz"),
                "--features",
                "random",
                "--out",
                str(tmp_path / "stats.npz"),
            ]
        )
        == 0
    )
    with np.load(tmp_path / "stats.npz") as s:  # ADM layout: images + mu/sigma, no extras
        np.savez(tmp_path / "VIRTUAL.npz", arr_0=ref, mu=s["mu"], sigma=s["sigma"], mu_s=np.zeros(3), sigma_s=np.eye(3))
    res = []
    for ref_file, metrics in (("stats.npz", "fid"), ("VIRTUAL.npz", "fid,pr")):
        out = tmp_path / f"{ref_file}.json"
        assert (
            main(
                [
                    "fid",
                    str(tmp_path / "a.npz"),
                    str(tmp_path / ref_file),
                    "--features",
                    "random",
                    "--metrics",
                    metrics,
                    "--json",
                    str(out),
                ]
            )
            == 0
        )
        res.append(json.loads(out.read_text()))
    assert res[1]["fid"] == pytest.approx(res[0]["fid"], rel=1e-9)
    assert 0 <= res[1]["precision"] <= 1 and 0 <= res[1]["recall"] <= 1 and res[1]["num_images"] == [12, 10]
