"""Extension points: task contract, export API, registries, loaders, evaluation API."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

import robustok
from robustok.cli import main
from robustok.errors import ConfigError, DataError
from robustok.hub import Pretrained, load_tensors
from robustok.metrics.features import FeatureNet
from robustok.tokenizer.model import Tokenizer, TokenizerConfig
from robustok.train.task import Task
from tests.helpers import tiny_tokenizer, tiny_train_config


# --- part 3: the task contract ---------------------------------------------------------------------------------
@dataclass
class LineConfig:
    width: int = 4


class Line(Pretrained):
    config_class = LineConfig

    def __init__(self, config: LineConfig):
        super().__init__(config)
        self.lin = torch.nn.Linear(config.width, 1)


class Pairs(torch.utils.data.Dataset):
    """y = sum(x): 64 fixed pairs; takes the loop's (index, seed) items."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=g)

    def __len__(self):
        return 64

    def __getitem__(self, item):
        i = item[0] if isinstance(item, tuple) else item
        return self.x[i], self.x[i].sum()


class MinimalTask(Task):
    """Only the required members: kind, model, dataset, step."""

    kind = "line"

    def __init__(self):
        torch.manual_seed(0)
        self.model, self.dataset, self.inner_seen = Line(LineConfig()), Pairs(), []

    def step(self, model, batch, step, inner):
        self.inner_seen.append(inner)
        x, y = batch
        return {"loss": (model.lin(x).squeeze(1) - y).pow(2).mean()}


def test_a_minimal_task_trains_and_exports(tmp_path):
    from robustok.config import DataConfig, RunConfig, TrainConfig
    from robustok.train.export import checkpoint_steps, export_checkpoint, final_model_dir, is_finished
    from robustok.train.loop import train

    task = MinimalTask()
    assert isinstance(task, Task)
    run = RunConfig(
        dir=str(tmp_path / "run"), progress=False, sample_every=0, ckpt_every=20, keep_checkpoints=5, log_every=10
    )
    cfg = TrainConfig(steps=60, lr=0.05, min_lr=0.05, warmup_steps=0, ema_decay=0.9)
    out = train(task, run, cfg, DataConfig(batch_size=16))
    assert out == final_model_dir(run.dir, "line") and is_finished(run.dir, "line")
    assert all(inner is task.model for inner in task.inner_seen)  # the unwrapped module
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    assert checkpoint_steps(run.dir) == [20, 40, 60]
    dest = export_checkpoint(run.dir, 40, Line(LineConfig()), tmp_path / "at40")
    ema = load_tensors(tmp_path / "run" / "checkpoints" / "step-0000040" / "ema.safetensors")
    assert torch.equal(Line.from_pretrained(dest).lin.weight, ema["lin.weight"])
    with pytest.raises(Exception, match="no complete checkpoint of step 30"):
        export_checkpoint(run.dir, 30, Line(LineConfig()), tmp_path / "x")


def test_train_refuses_an_object_that_is_not_a_task(tmp_path):
    from robustok.config import DataConfig, RunConfig, TrainConfig
    from robustok.train.loop import train

    class Duck:
        kind, model, dataset = "line", Line(LineConfig()), Pairs()

    with pytest.raises(TypeError, match="must subclass robustok.train.task.Task"):
        train(Duck(), RunConfig(dir=str(tmp_path)), TrainConfig(steps=1), DataConfig())


def test_tokenizer_previews_show_held_out_val_images(tmp_path):
    from robustok.data import eval_batches
    from robustok.tokenizer.train import TokenizerTask

    cfg = tiny_train_config(tmp_path / "r", "data.val=fashion-mnist:test")
    task = TokenizerTask(cfg)
    x = torch.zeros(8, 1, 32, 32)
    grid = task.preview(task.model, [x])
    val = next(iter(eval_batches("fashion-mnist:test", 8, 8, 32, 1)))[0]
    assert grid.shape == (32, 1, 32, 32) and torch.equal(grid[16:24], val)


# --- part 4: registries, loaders, bottleneck, discriminator --------------------------------------------------
def test_adapter_directories_load_through_from_pretrained_and_load_tokenizer(tmp_path):
    from robustok.adapters import LlamaGenVQ, LlamaGenVQConfig

    torch.manual_seed(0)
    ext = LlamaGenVQ(LlamaGenVQConfig(image_size=32, base_channels=8, z_channels=16, codebook_size=64, norm_groups=4))
    ext.save_pretrained(tmp_path / "ext")
    tiny_tokenizer().save_pretrained(tmp_path / "ours")
    for load in (Tokenizer.from_pretrained, robustok.load_tokenizer):
        got = load(tmp_path / "ext")
        assert type(got) is LlamaGenVQ and not got.training
        assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), ext.state_dict().values()))
        assert type(load(tmp_path / "ours")) is Tokenizer
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(Tokenizer.from_pretrained(tmp_path / "ext").encode(x), ext.eval().encode(x))


def test_unknown_backbone_and_bottleneck_name_the_key_and_choices():
    with pytest.raises(
        ConfigError,
        match=r"model\.backbone: unknown tokenizer backbone 'unet'; choose one of "
        r"conv, vit",
    ):
        TokenizerConfig(backbone="unet").validate()
    with pytest.raises(ConfigError, match=r"model\.bottleneck: unknown tokenizer bottleneck 'fsq'; .*vq, kl"):
        TokenizerConfig(bottleneck="fsq").validate()


def test_a_backbone_registered_from_outside_builds_a_tokenizer():
    from torch import nn

    from robustok.tokenizer.components import BACKBONES, Backbone

    class Patchify(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c.channels, c.hidden_dim, 4, stride=4)

        def forward(self, x):
            return self.conv(x)

    class Unpatchify(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.ConvTranspose2d(c.hidden_dim, c.channels, 4, stride=4)
            self.last_layer = self.conv.weight

        def forward(self, h):
            return self.conv(h)

    BACKBONES.register("patch4", Backbone(lambda c: (Patchify(c), Unpatchify(c)), lambda c: 4))
    try:
        tok = Tokenizer(TokenizerConfig(backbone="patch4", hidden_dim=8, codebook_size=16, code_dim=4)).eval()
        assert tok.grid_size == 8 and tok.encode(torch.zeros(2, 1, 32, 32)).shape == (2, 8, 8)
    finally:
        BACKBONES.unregister("patch4")


def test_gaussian_bottleneck_draws_from_the_given_generator():
    torch.manual_seed(0)
    tok = Tokenizer(
        TokenizerConfig(base_channels=8, channel_mult=[1, 2], hidden_dim=16, code_dim=4, bottleneck="kl")
    ).train()
    x = torch.rand(2, 1, 32, 32) * 2 - 1

    def run(seed):
        torch.manual_seed(123)  # the global RNG is the same each time: only the generator differs
        return tok(x, generator=torch.Generator().manual_seed(seed)).latents

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))
    tok.eval()
    assert torch.equal(tok(x).latents, tok.encode_latents(x))  # the mean in eval mode


def test_discriminator_is_saved_like_every_model_and_old_layouts_still_load(tmp_path):
    from robustok.hub import atomic_write_bytes, save_tensors
    from robustok.losses.discriminators import (
        Discriminator,
        build_discriminator,
        copy_discriminator,
        has_discriminator,
        load_discriminator,
        save_discriminator,
    )

    torch.manual_seed(0)
    disc = build_discriminator({"kind": "patch", "diffaug": "", "channels": 1, "width": 8, "layers": 2})
    save_discriminator(disc, tmp_path / "tok")
    assert json.loads((tmp_path / "tok" / "discriminator" / "config.json").read_text())["class"] == "Discriminator"
    for loaded in (
        load_discriminator(tmp_path / "tok"),
        Discriminator.from_pretrained(tmp_path / "tok" / "discriminator"),
    ):
        assert loaded.spec == disc.spec
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), disc.state_dict().values()))
    assert copy_discriminator(tmp_path / "tok", tmp_path / "copy") and has_discriminator(tmp_path / "copy")
    save_tensors(disc.state_dict(), tmp_path / "old" / "discriminator.safetensors")  # the earlier layout
    atomic_write_bytes(tmp_path / "old" / "discriminator.json", json.dumps(disc.spec).encode())
    assert has_discriminator(tmp_path / "old") and load_discriminator(tmp_path / "old").spec == disc.spec


def test_loss_config_lives_in_losses_and_keeps_its_keys():
    from robustok.losses.config import LossConfig
    from robustok.posttrain.train import PostTrainConfig
    from robustok.tokenizer.train import TokenizerTrainConfig

    assert TokenizerTrainConfig().loss.__class__ is LossConfig and PostTrainConfig().loss.__class__ is LossConfig
    assert {"disc_weight", "disc_kind", "perceptual", "semantic", "lecam_weight"} <= set(vars(LossConfig()))


# --- part 4c: data specs, RGB wds reference sets ---------------------------------------------------------------
def _rgb_folder(root, n=6, size=32):
    rng = np.random.default_rng(1)
    for i in range(n):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        arr[..., 0] = 255 - arr[..., 2]  # channels differ: gray conversion would lose information
        Image.fromarray(arr, "RGB").save(root / f"c{i % 2}" / f"{i}.png")
    return root


class ChannelRecorder(FeatureNet):
    """A feature network that records the channel counts it sees; features = per-channel means (RGB if gray)."""

    name, dim, has_logits = "recorder", 3, False

    def __init__(self):
        self.channels = []

    def __call__(self, images):
        self.channels.append(images.shape[1])
        x = images.float()
        return (x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x).mean((2, 3))


def test_an_rgb_wds_reference_set_is_measured_in_rgb(tmp_path):
    from robustok.data.shards import make_shards
    from robustok.metrics.fid import source_stats
    from robustok.metrics.sources import ImageSource

    folder = _rgb_folder(tmp_path / "rgb")
    spec = "wds:" + make_shards(folder, tmp_path / "shards", shard_size=4).pattern
    first = next(ImageSource(spec, resolution=32).batches(batch_size=10))
    assert first.shape == (6, 3, 32, 32) and first.dtype == torch.uint8
    rec_wds, rec_dir = ChannelRecorder(), ChannelRecorder()
    wds_stats = source_stats(spec, rec_wds, resolution=32)
    dir_stats = source_stats(str(folder), rec_dir)
    assert set(rec_wds.channels) == {3} and wds_stats.stats.n == 6
    # the same images as the folder (read as RGB), in another order: the same mean feature
    assert np.allclose(wds_stats.stats.mu, dir_stats.stats.mu)


def test_a_gray_wds_set_stays_gray(tmp_path):
    from robustok.data.shards import make_shards
    from robustok.metrics.fid import source_stats
    from tests.helpers import gray_class_folder

    folder = gray_class_folder(tmp_path / "gray", [3, 3], size=32)
    spec = "wds:" + make_shards(folder, tmp_path / "shards", shard_size=4).pattern
    rec = ChannelRecorder()
    source_stats(spec, rec, resolution=32)
    assert set(rec.channels) == {1}


# --- part 4d / 5: feature registry and the evaluation API ------------------------------------------------------
def test_a_feature_network_registered_from_a_test_is_used_by_the_cli_and_the_api(tmp_path, capsys):
    from robustok.metrics.features import FEATURES, get_feature_net

    FEATURES.register("recorder", lambda device, inception_path, data_root, log: ChannelRecorder())
    try:
        assert isinstance(get_feature_net("recorder"), ChannelRecorder)
        rng = np.random.default_rng(0)
        a = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
        b = rng.integers(0, 200, (20, 32, 32, 3), dtype=np.uint8)
        np.savez(tmp_path / "a.npz", arr_0=a)
        np.savez(tmp_path / "b.npz", arr_0=b)
        assert (
            main(
                [
                    "fid",
                    str(tmp_path / "a.npz"),
                    str(tmp_path / "b.npz"),
                    "--features",
                    "recorder",
                    "--json",
                    str(tmp_path / "r.json"),
                ]
            )
            == 0
        )
        cli = json.loads((tmp_path / "r.json").read_text())
        api = robustok.evaluate_samples(tmp_path / "a.npz", tmp_path / "b.npz", features="recorder")
        assert cli == api and api["features"] == "recorder" and api["fid"] > 0
    finally:
        FEATURES.unregister("recorder")
    assert main(["fid", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--features", "recorder"]) == 2
    assert "unknown feature network 'recorder'" in capsys.readouterr().err


def test_evaluate_samples_gives_the_cli_numbers(tmp_path):
    from robustok.metrics.features import RandomFeatures

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    ref = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 24)
    np.savez(tmp_path / "s.npz", arr_0=imgs, arr_1=labels)
    np.savez(tmp_path / "ref.npz", arr_0=ref)
    assert (
        main(
            [
                "fid",
                str(tmp_path / "s.npz"),
                str(tmp_path / "ref.npz"),
                "--features",
                "random",
                "--metrics",
                "fid,is,pr,acc",
                "--json",
                str(tmp_path / "cli.json"),
            ]
        )
        == 0
    )
    cli = json.loads((tmp_path / "cli.json").read_text())
    api = robustok.evaluate_samples(
        str(tmp_path / "s.npz"), str(tmp_path / "ref.npz"), ["fid", "is", "pr", "acc"], "random"
    )
    assert api == cli and set(api) >= {"fid", "is", "is_std", "precision", "recall", "class_accuracy"}
    # images as a tensor and labels given directly: the same numbers
    as_tensor = robustok.evaluate_samples(
        torch.from_numpy(imgs).permute(0, 3, 1, 2),
        str(tmp_path / "ref.npz"),
        ["fid", "is", "acc"],
        RandomFeatures(),
        labels=labels,
        batch_size=7,
    )
    assert as_tensor["fid"] == pytest.approx(cli["fid"], rel=1e-6)
    assert as_tensor["class_accuracy"] == cli["class_accuracy"] and as_tensor["is"] == pytest.approx(cli["is"])
    with pytest.raises(ConfigError, match="samples .npz with labels"):
        robustok.evaluate_samples(
            torch.from_numpy(ref).permute(0, 3, 1, 2), str(tmp_path / "ref.npz"), ["acc"], "random"
        )
    with pytest.raises(DataError, match="arr_1"):
        robustok.evaluate_samples(str(tmp_path / "ref.npz"), str(tmp_path / "ref.npz"), ["acc"], "random")


def test_evaluate_tokenizer_gives_the_cli_numbers(tmp_path):
    tok = tiny_tokenizer()
    tok.save_pretrained(tmp_path / "tok")
    assert (
        main(
            [
                "eval-tokenizer",
                str(tmp_path / "tok"),
                "--num-images",
                "40",
                "--metrics",
                "psnr,ssim,rfid,usage",
                "--features",
                "random",
                "--json",
                str(tmp_path / "cli.json"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    cli = json.loads((tmp_path / "cli.json").read_text())
    api = robustok.evaluate_tokenizer(
        tmp_path / "tok", "fashion-mnist:test", ["psnr", "ssim", "rfid", "usage"], "random", num_images=40, device="cpu"
    )
    assert api == {k: v for k, v in cli.items() if k not in ("tokenizer", "data")}


def test_every_extension_point_is_a_registry():
    from robustok.adapters import ADAPTERS, ENTRIES, LlamaGenVQ
    from robustok.generator.base import GENERATORS, generator_kinds
    from robustok.metrics.features import FEATURES
    from robustok.registry import Registry
    from robustok.tokenizer.loading import PLUGINS, TOKENIZER_CLASSES, tokenizer_classes

    for reg in (ADAPTERS, ENTRIES, GENERATORS, FEATURES, PLUGINS, TOKENIZER_CLASSES):
        assert isinstance(reg, Registry)
    generator_kinds()
    assert {"ar", "diffusion", "masked"} <= set(GENERATORS)
    assert ADAPTERS["llamagen-vq16"] is LlamaGenVQ and ENTRIES["sd-vae"] == ("state_dict",)
    assert dict(ADAPTERS.items())["llamagen-vq16"] in ADAPTERS.values()
    assert tokenizer_classes()["LlamaGenVQ"] is LlamaGenVQ and "robustok.adapters" in PLUGINS
    with pytest.raises(ConfigError, match="convert KIND: unknown tokenizer kind 'nope'"):
        ADAPTERS["nope"]


def test_feature_builders_must_return_a_feature_net():
    from robustok.metrics.features import FEATURES, get_feature_net

    FEATURES.register("not-a-net", lambda device, inception_path, data_root, log: object())
    try:
        with pytest.raises(ConfigError, match="not-a-net.*not a robustok.metrics.features.FeatureNet"):
            get_feature_net("not-a-net")
    finally:
        FEATURES.unregister("not-a-net")
