"""docs/imagenet.md, step by step, through the CLI on a tiny stand-in.

The commands are read from the guide's fenced bash blocks, so the guide and this test cannot drift apart. Each
one runs as written, in a folder laid out as the guide assumes (`data/imagenet/...`, `weights/...`, `runs/...`,
`configs/` linked to the repository's), with only these changes:
- the raw ImageNet folders are a few random-ish RGB images (3 classes), the shard ranges are the ones
  `make-shards` printed, and the weight files are random stand-ins with the guide's names and key layouts;
- sizes shrink: counts (`--num-images`, `--num-pairs`, `--views`, `--shard-size`, `--workers`) and tiny model
  and run overrides appended to the config commands (32-px images, tiny ViT, K = 32, a few steps);
- `--features inception --inception-weights FILE` becomes `--features random` (the Inception net is tested in
  tests/test_metrics_inception.py), and `torchrun ... -m robustok.cli` becomes a plain call, except that the
  `sample` step also runs under the guide's own launcher line with 2 CPU processes instead of 8 GPUs (the other
  torchrun paths: tests/test_distributed_outputs.py).
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustok.cli import main
from robustok.config import load_config
from robustok.hub import load_tensors
from robustok.tokenizer.train import TokenizerTrainConfig
from tests.helpers import vit_standin

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "imagenet.md"
SHARDS = re.compile(r"wds:data/imagenet/(train|val)/shard-\{000000\.\.\d+\}\.tar")

# appended to the guide's key=value overrides: tiny sizes, no previews, one loader process
TOKENIZER = (
    "run.progress=false",
    "run.log_every=1",
    "run.sample_every=0",
    "run.ckpt_every=2",
    "data.resolution=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "model.image_size=32",
    "model.patch_size=8",
    "model.vit_width=64",
    "model.vit_depth=2",
    "model.vit_heads=2",
    "model.hidden_dim=64",
    "model.codebook_size=32",
    "model.code_dim=8",
    "loss.disc_start=1",
    "loss.dino_disc_image_size=32",
    "perturb.delta=4",
    "train.steps=2",
    "train.warmup_steps=1",
)
GENERATOR = (
    "run.progress=false",
    "run.log_every=1",
    "run.sample_every=0",
    "run.ckpt_every=0",
    "data.batch_size=4",
    "data.num_workers=0",
    "model.dim=32",
    "model.depth=1",
    "model.heads=2",
    "train.steps=2",
    "train.warmup_steps=1",
)
POSTTRAIN = (
    "run.progress=false",
    "run.log_every=1",
    "run.sample_every=0",
    "run.ckpt_every=0",
    "data.batch_size=2",
    "data.num_workers=0",
    "train.steps=2",
    "train.warmup_steps=1",
    "eval_every=1",
    "eval_features=random",
)
# flag -> tiny value, for flags the guide gives (each is there; None: dropped with its value)
FLAGS = {
    "--shard-size": "4",
    "--workers": "2",
    "--num-images": "12",
    "--views": "3",
    "--num-pairs": "6",
    "--features": "random",
    "--inception-weights": None,
}
EXTRA_FLAGS = {
    "eval-tokenizer": ["--batch-size", "4", "--pfid-alphas", "0.9,0.5", "--pfid-deltas", "2,4"],
    "pretokenize": ["--batch-size", "4", "--no-progress"],
    "post-train-data": ["--num-eval", "4", "--batch-size", "3", "--no-progress"],
    "sample": ["--batch-size", "3", "--no-progress"],
    "fid": ["--batch-size", "4"],
}


def guide_commands(text: str) -> list[tuple[list[str], list[str]]]:
    """(torchrun launcher argv or [], robustok argv) of every command in the guide's bash blocks, in order.
    Launcher lines are parsed with torchrun's own argument parser, so a wrong launcher flag fails here."""
    from torch.distributed.run import get_args_parser

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if not argv:
                continue
            if argv[0] == "torchrun":
                launch = get_args_parser().parse_args(argv[1:])
                i = argv.index("-m")
                assert launch.module and argv[i + 1] == "robustok.cli" == launch.training_script, line
                assert argv[i + 2 :] == launch.training_script_args, line
                commands.append((argv[1:i], argv[i + 2 :]))
            else:
                assert argv[0] == "robustok", f"docs/imagenet.md runs something else: {line}"
                commands.append(([], argv[1:]))
    return commands


def tiny(argv: list[str], specs: dict[str, str], raw: Path) -> list[str]:
    """The guide's `argv` on the stand-in: real shard ranges and raw folders, tiny counts, the extra flags."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in FLAGS and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            if FLAGS[a] is not None:
                out += [a, FLAGS[a]]
            i += 2
            continue
        a = SHARDS.sub(lambda m: specs[m.group(1)], a)
        out.append(a.replace("/data/imagenet/", f"{raw}/"))
        i += 1
    return out + EXTRA_FLAGS.get(argv[0], [])


def _images(root: Path, per_class: int, seed: int) -> None:
    """Class folders of smooth RGB JPEGs (one PNG) of 40-64 px, a class-dependent colour each."""
    rng = np.random.default_rng(seed)
    for c, wnid in enumerate(["n01440764", "n01443537", "n01484850"]):
        (root / wnid).mkdir(parents=True)
        for i in range(per_class):
            h, w = rng.integers(40, 65, 2)
            ramp = np.linspace(0, 1, w)[None, :, None] * rng.uniform(0, 120, 3)
            img = np.clip(60 * np.eye(3)[c] * 3 + ramp + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
            name = f"{wnid}_{i}.{'png' if i == 0 else 'JPEG'}"
            Image.fromarray(img).save(root / wnid / name)


def _weights(d: Path) -> None:
    """Random stand-ins for every file the guide names, under its file names and in the original layouts."""
    from robustok.metrics.lpips import CONV_CHANNELS, CONV_INDICES, TAP_CHANNELS

    d.mkdir()
    vit_standin(d / "vit_base_patch14_dinov2.lvd142m.safetensors", 28, 7, 64, 2, True)  # DINOv2 (timm file)
    dino = vit_standin(d / "dino.safetensors", 32, 8, 32, 12, False)  # DINO ViT-S/16 ...
    torch.save(load_tensors(dino), d / "dino_deitsmall16_pretrain.pth")  # ... as the authors' .pth
    dino.unlink()
    g = torch.Generator().manual_seed(0)
    vgg = {}
    for cin, cout, i in zip((3,) + CONV_CHANNELS[:-1], CONV_CHANNELS, CONV_INDICES):
        vgg[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        vgg[f"features.{i}.bias"] = torch.zeros(cout)
    torch.save(vgg, d / "vgg16-397923af.pth")
    torch.save(
        {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(TAP_CHANNELS)},
        d / "lpips_vgg_v0.1.pth",
    )


def _adm_reference(work: Path, val_spec: str) -> None:
    """weights/VIRTUAL_imagenet256_labeled.npz in ADM's layout (arr_0 images + mu/sigma) from the val shards."""
    from robustok.data import build_dataset, to_uint8

    assert main(["fid-stats", val_spec, "--features", "random", "--out", str(work / "val_stats.npz")]) == 0
    ds = build_dataset(val_spec, 32, 3, train=False)
    ds.repeat = False
    arr = np.stack([to_uint8(x[None])[0].permute(1, 2, 0).numpy() for x, _ in ds])
    with np.load(work / "val_stats.npz") as s:
        np.savez(work / "weights" / "VIRTUAL_imagenet256_labeled.npz", arr_0=arr, mu=s["mu"], sigma=s["sigma"])


@pytest.fixture()
def stand_in(tmp_path, monkeypatch):
    """A working folder laid out as the guide assumes: raw image folders, weights/, configs/ (linked)."""
    raw = tmp_path / "raw"
    _images(raw / "train", 6, 0)
    _images(raw / "val", 4, 1)
    _weights(tmp_path / "weights")
    (tmp_path / "configs").symlink_to(REPO / "configs")
    monkeypatch.chdir(tmp_path)
    return tmp_path, raw


def test_guide_commands_cover_the_pipeline():
    """The guide's commands in order (the walk-through below follows this sequence); launchers are valid."""
    commands = guide_commands(GUIDE.read_text())
    assert [c[0] for _, c in commands] == [
        "make-shards",
        "make-shards",
        "train-tokenizer",
        "train-tokenizer",
        "eval-tokenizer",
        "pretokenize",
        "train-generator",
        "post-train-data",
        "post-train",
        "sample",
        "fid",
    ]
    assert all(launch or c[0] in ("make-shards", "eval-tokenizer", "fid") for launch, c in commands)
    assert all(any(flag in c for _, c in commands) for flag in FLAGS)
    # the shard patterns the guide and the config use are the ones make-shards prints (checked below)
    cfg = load_config(TokenizerTrainConfig, REPO / "configs/tokenizer/imagenet-robustok.yaml")
    assert SHARDS.fullmatch(cfg.data.train) and SHARDS.fullmatch(cfg.data.val)
    # the multi-node variant: its overrides are keys of the same config
    multi = [a for a in commands[3][1] if a != "..."]
    load_config(TokenizerTrainConfig, REPO / multi[1], multi[2:])


def two_processes(launch: list[str], argv: list[str]) -> None:
    """`argv` under the guide's torchrun launcher `launch`, with 2 CPU processes instead of 8 GPUs."""
    i = launch.index("--nproc_per_node")
    launch = launch[: i + 1] + ["2"] + launch[i + 2 :]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "robustok.cli", *argv]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_imagenet_guide_end_to_end(stand_in, capsys):
    """Sections 1-6 of the guide in order, each command as written (see the module docstring for the changes)."""
    work, raw = stand_in
    commands = guide_commands(GUIDE.read_text())
    guide = [argv for _, argv in commands]
    specs: dict[str, str] = {}

    def run(guide_argv: list[str], extra: tuple[str, ...] = (), flags: tuple[str, ...] = ()) -> list[str]:
        argv = tiny(guide_argv, specs, raw) + list(extra) + list(flags)  # key=value may follow --control
        assert not any("001281" in a or "000049" in a for a in argv), argv  # every range re-ranged
        assert main(argv) == 0, shlex.join(argv)
        return argv

    # 1. data: the raw folders -> shards; each printed spec replaces the guide's (same pattern, real range)
    for k, split in ((0, "train"), (1, "val")):
        run(guide[k])
        printed = capsys.readouterr().out.strip().splitlines()[-1].split("data spec: ")[1]
        assert SHARDS.fullmatch(printed) and printed.startswith(f"wds:data/imagenet/{split}/"), printed
        specs[split] = printed
    assert specs["train"].endswith("{000000..000004}.tar")  # 18 images, 4 per shard
    assert (work / "data/imagenet/train/classes.txt").read_text().split()[0] == "n01440764"
    _adm_reference(work, specs["val"])

    # 3. main training (the config's default data.train/val re-ranged), then the same command with --resume
    data = (f"data.train={specs['train']}", f"data.val={specs['val']}")
    run(guide[2], data + TOKENIZER)
    tok = work / "runs/tok-imagenet/tokenizer"
    meta = json.loads((tok / "discriminator" / "config.json").read_text())["config"]
    assert meta["kind"] == "dino" and meta["checkpoint"] == "weights/dino_deitsmall16_pretrain.pth"
    run(guide[2], data + TOKENIZER + ("train.steps=3",), ("--resume",))
    assert "resumed from" in capsys.readouterr().out

    # 4. tokenizer evaluation on the val shards
    run(guide[4])
    ev = json.loads((work / "runs/tok-imagenet/eval.json").read_text())
    assert ev["num_images"] == 12 and ev["data"] == specs["val"] and len(ev["pfid_grid"]) == 4
    assert all(np.isfinite(ev[k]) for k in ("psnr", "ssim", "rfid", "pfid", "codebook_usage"))

    # 5. tokens, RAR-B and RAR-L (section 6 samples RAR-L), post-training pairs, post-training with the control
    run(guide[5])
    store = json.loads((work / "runs/tok-imagenet/tokens/manifest.json").read_text())
    assert store["count"] == 18 * 3 and (work / "runs/tok-imagenet/tokens" / store["shards"][0]["tar"]).is_file()
    run(guide[6], GENERATOR)
    rar_l = [a.replace("imagenet-rar-b", "imagenet-rar-l").replace("runs/rar-b", "runs/rar-l") for a in guide[6]]
    assert rar_l != guide[6]
    run(rar_l, GENERATOR)
    run(guide[7])
    bad = [
        "post-train-data",
        "runs/rar-b/generator",
        "--tokenizer",
        str(tok),
        "--data",
        specs["train"],
        "--sigma",
        "0.7",
        "--num-pairs",
        "2",
        "--out",
        "runs/bad",
    ]  # shards: streams, no index
    assert main(bad) == 2 and "need an image folder" in capsys.readouterr().err
    pairs = json.loads((work / "runs/pairs-imagenet/manifest.json").read_text())
    assert pairs["sigma"] == 0.7 and pairs["data"] == str(raw / "train")
    opts = pairs["sampling"]
    assert (opts["cfg"], opts["cfg_schedule"], opts["cfg_power"], opts["temperature"]) == (6.0, "power", 1.15, 1.02)
    run(guide[8], POSTTRAIN)
    post = json.loads((work / "runs/post-imagenet/posttrain.json").read_text())
    assert post["reused_discriminator"] and "gfid_proxy_control" in post
    assert post["config"]["eval_reference"] == "weights/VIRTUAL_imagenet256_labeled.npz"

    # 6. gFID samples with the post-trained decoder (also under 2 processes), FID/IS/PR against the ADM batch
    argv = run(guide[9])
    samples = np.load(work / "runs/rar-l/samples/samples.npz")
    assert samples["arr_0"].shape == (12, 32, 32, 3) and sorted(samples["arr_1"]) == [0] * 4 + [1] * 4 + [2] * 4
    two_processes(commands[9][0], [a.replace("runs/rar-l/samples", "runs/rar-l/samples-2") for a in argv])
    if not torch.cuda.is_available():  # both on the CPU: the same images
        assert np.array_equal(np.load(work / "runs/rar-l/samples-2/samples.npz")["arr_0"], samples["arr_0"])
    run(guide[10])
    gfid = json.loads((work / "runs/rar-l/gfid.json").read_text())
    assert gfid["num_images"] == [12, 12] and all(np.isfinite(gfid[k]) for k in ("fid", "is", "precision", "recall"))
