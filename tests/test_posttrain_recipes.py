"""Post-training recipe options: epochs, EMA, GAN from step 0 (fresh/reused D, DiffAug), round-trip pairs, aux
perceptual term. Tiny models; the default (ids, no EMA, no GAN, no perceptual) is covered by test_posttrain.py."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robustok.config import load_config
from robustok.data import build_dataset, from_uint8, to_uint8
from robustok.errors import CheckpointError, ConfigError, DataError
from robustok.hub import atomic_write_bytes, load_tensors, save_tensors
from robustok.losses.aux_perceptual import AuxNet, train_aux_perceptual
from robustok.losses.discriminators import build_discriminator
from robustok.losses.perceptual import perceptual_distance
from robustok.posttrain.pairs import PairsSpec, make_pairs
from robustok.posttrain.train import PostTrainConfig, PostTrainTask, epochs_to_steps
from robustok.tokenizer.model import Tokenizer
from robustok.tokens.kinds import token_kind
from robustok.tokens.pairs import PairStore
from robustok.train import loop
from tests.helpers import ROOT, needs_fmnist, tiny_ar, tiny_tokenizer

pytestmark = needs_fmnist


def _pairs(tmp_path, tok, pair_input="ids", name="pairs"):
    spec = PairsSpec(
        sigma=0.7, num_pairs=24, num_eval=16, data="fashion-mnist:test", batch_size=24, pair_input=pair_input
    )
    return make_pairs(tiny_ar(tok), tok, build_dataset("fashion-mnist:test"), spec, tmp_path / name, progress=False)


@pytest.fixture()
def setup(tmp_path):
    tok = tiny_tokenizer(channel_mult=[1, 2, 2]).eval()
    return tok, _pairs(tmp_path, tok)


def _cfg(tmp_path, *extra):
    return load_config(
        PostTrainConfig,
        ROOT / "configs/posttrain/fmnist.yaml",
        [
            f"run.dir={tmp_path / 'post'}",
            "run.progress=false",
            "train.steps=2",
            "data.batch_size=8",
            "eval_features=random",
            "eval_num_reference=32",
            *extra,
        ],
    )


def _batch(task, n=8):
    items = [task.dataset[i] for i in range(n)]
    return [torch.stack([it[0] for it in items]), torch.stack([it[1] for it in items]), None]


# --- 1. length in epochs ----------------------------------------------------------------------------------
def test_epochs_set_the_number_of_steps(setup, tmp_path):
    assert epochs_to_steps(40, 200_000, 1024) == 7813  # the paper's 40 epochs at the authors' batch
    assert epochs_to_steps(1, 24, 8) == 3 and epochs_to_steps(2.5, 24, 8) == 8 and epochs_to_steps(0.01, 24, 8) == 1
    with pytest.raises(ConfigError, match="epochs"):
        epochs_to_steps(0, 24, 8)
    tok, out = setup
    task = PostTrainTask(_cfg(tmp_path, "epochs=2", "eval_every=0"), tokenizer=tok, store=PairStore(out, tok))
    assert task.cfg.train.steps == 6 and task.eval_every == 6  # ceil(2 * 24 / 8)
    task = PostTrainTask(_cfg(tmp_path, "train.steps=5"), tokenizer=tok, store=PairStore(out, tok))
    assert task.cfg.train.steps == 5  # epochs: 0 keeps train.steps
    with pytest.raises(ConfigError, match="epochs"):
        _cfg(tmp_path, "epochs=-1")


# --- 2. EMA -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eval_ema,warmup", [(True, False), (False, False), (True, True)])
def test_ema_starts_at_the_untouched_decoder_and_is_evaluated(setup, tmp_path, monkeypatch, eval_ema, warmup):
    tok, out = setup
    untouched = {k: v.clone() for k, v in tok.state_dict().items()}
    first_ema, evaluated = [], []
    real_update = loop.update_ema

    def spy_update(ema, model, decay):
        if not first_ema:  # the EMA before its first update (after 0 updates)
            first_ema.append({k: v.clone() for k, v in ema.state_dict().items()})
        real_update(ema, model, decay)

    monkeypatch.setattr(loop, "update_ema", spy_update)
    cfg = _cfg(
        tmp_path, "train.steps=1", "eval_every=1", "train.ema_decay=0.9", f"eval_ema={eval_ema}", f"ema_warmup={warmup}"
    )
    task = PostTrainTask(cfg, tokenizer=tok, store=PairStore(out, tok))
    real_eval = task.evaluate
    task.evaluate = lambda model, step: (evaluated.append(model), real_eval(model, step))[1]
    loop.train(task, cfg.run, cfg.train, cfg.data)
    assert all(torch.equal(first_ema[0][k], v) for k, v in untouched.items())  # EMA == untouched after 0 updates
    [shown] = evaluated
    assert (shown is task.model) == (not eval_ema)  # the proxy saw the EMA if asked
    [point] = task.curve  # an evaluated EMA: the raw weights' proxy beside it
    assert ("gfid_proxy_raw" in point) == eval_ema and point["epoch"] == 8 / 24
    if eval_ema:
        assert point["gfid_proxy_raw"] == pytest.approx(task.proxy_fid(task.model))
        assert point["gfid_proxy_raw"] != pytest.approx(point["gfid_proxy"])
    name = "decoder.conv_out.weight"
    online = task.model.state_dict()[name]
    d = 0.1 if warmup else 0.9  # ema_decay_at(0, 0.9) = 0.1: the warm-up nearly drops the untouched one
    expected = online if not eval_ema else d * untouched[name] + (1 - d) * online
    assert torch.allclose(shown.state_dict()[name], expected, atol=1e-6)
    for folder in ("tokenizer", "tokenizer-best"):  # exported and best: the same weights
        saved = Tokenizer.from_pretrained(tmp_path / "post" / folder).state_dict()[name]
        assert torch.allclose(saved, expected, atol=1e-6), folder


# --- 3. GAN from step 0: fresh or reused discriminator, DiffAug -----------------------------------------------
def _tokenizer_dir_with_discriminator(tok, path: Path):
    tok.save_pretrained(path)
    torch.manual_seed(123)
    disc = build_discriminator({"kind": "patch", "diffaug": "", "channels": 1, "width": 8, "layers": 2})
    save_tensors(disc.state_dict(), path / "discriminator.safetensors")
    atomic_write_bytes(path / "discriminator.json", json.dumps(disc.spec).encode())
    return disc


@pytest.mark.parametrize("reuse", [True, False])
def test_gan_from_step_zero_with_fresh_or_reused_discriminator_and_diffaug(setup, tmp_path, reuse):
    tok, out = setup
    saved = _tokenizer_dir_with_discriminator(tok, tmp_path / "tok")
    cfg = _cfg(
        tmp_path,
        f"tokenizer={tmp_path / 'tok'}",
        f"reuse_discriminator={reuse}",
        "loss.disc_weight=0.5",
        "loss.disc_start=0",
        "loss.disc_width=8",
        "loss.disc_layers=2",
        "loss.diffaug=translation",
        "loss.lecam_weight=0.001",
        *(["disc_diffaug=color,translation,cutout"] if reuse else []),
    )
    task = PostTrainTask(cfg, tokenizer=tok, store=PairStore(out, tok))
    assert task.reused_discriminator is reuse
    same = [torch.equal(a, b) for a, b in zip(task.disc.net.state_dict().values(), saved.net.state_dict().values())]
    assert all(same) if reuse else not all(same)  # reused weights, or fresh heads
    assert task.disc.augment.ops == (["color", "translation", "cutout"] if reuse else ["translation"])
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    assert not torch.equal(task.disc.augment(x), x)  # the augmentation is applied
    generated, images, _ = _batch(task)
    result = task.step(task.model, [generated, images, None], 0, task.model)  # step 0: GAN terms already on
    assert {"disc_loss", "g_adv", "adaptive_w"} <= set(result) and float(result["adaptive_w"]) > 0
    result["loss"].backward()
    assert task.model.decoder.conv_out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in task.disc.parameters())  # the G step leaves D alone
    default = _cfg(tmp_path, "train.steps=1")
    assert default.disc_diffaug is None and default.reuse_discriminator  # defaults unchanged
    with pytest.raises(ConfigError, match="disc_diffaug: unknown augmentation 'blur'"):
        PostTrainTask(
            _cfg(tmp_path, "loss.disc_weight=0.5", "disc_diffaug=blur"), tokenizer=tok, store=PairStore(out, tok)
        )


# --- 4. pair input: ids or the authors' round trip -----------------------------------------------------------
def test_roundtrip_pairs_store_encode_of_decode(setup, tmp_path):
    tok, ids_out = setup
    rt_out = _pairs(tmp_path, tok, "roundtrip", "pairs-rt")
    ids, rt = PairStore(ids_out, tok), PairStore(rt_out, tok)
    assert ids.pair_input == "ids" and rt.pair_input == "roundtrip"
    assert json.loads((rt_out / "manifest.json").read_text())["pair_input"] == "roundtrip"
    g = torch.from_numpy(np.asarray(ids.generated).astype(np.int64))
    with torch.no_grad():
        expected = tok.encode(from_uint8(to_uint8(tok.decode(g))))
    assert np.array_equal(np.asarray(rt.generated), expected.numpy())  # encode(uint8(decode(ids)))
    assert (np.asarray(rt.generated) != np.asarray(ids.generated)).any()  # and not the ids themselves
    assert np.array_equal(rt.index, ids.index) and np.array_equal(rt.eval_generated, ids.eval_generated)
    with pytest.raises(ConfigError, match="pair input"):
        _pairs(tmp_path, tok, "png", "pairs-bad")
    m = json.loads((rt_out / "manifest.json").read_text())
    (rt_out / "manifest.json").write_text(json.dumps({**m, "pair_input": "png"}))
    with pytest.raises(DataError, match="pair_input"):
        PairStore(rt_out, tok)


def test_roundtrip_of_sdedit_latents():
    tok = tiny_tokenizer(bottleneck="kl").eval()
    z = torch.randn(2, 4, 16, 16)
    rt = token_kind("latents").round_trip(tok, z)
    with torch.no_grad():
        expected = tok.encode_latents(from_uint8(to_uint8(tok.decode_latents(z))))
    assert rt.shape == z.shape and torch.equal(rt, expected) and not torch.allclose(rt, z)


def test_pair_input_flag_on_the_command_line():
    from robustok.cli import build_parser

    args = build_parser().parse_args(
        ["post-train-data", "g", "--tokenizer", "t", "--sigma", "0.7", "--out", "o", "--pair-input", "roundtrip"]
    )
    assert args.pair_input == "roundtrip"


# --- 5. offline perceptual term that is not the FID network ----------------------------------------------
def test_aux_perceptual_trains_deterministically_and_reaches_only_the_decoder(setup, tmp_path):
    imgs = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 1, 32, 32), dtype=np.uint8))
    a, b = tmp_path / "aux-a.safetensors", tmp_path / "aux-b.safetensors"
    meta = train_aux_perceptual(a, steps=3, batch=8, images=imgs, log=lambda *_: None)
    train_aux_perceptual(b, steps=3, batch=8, images=imgs, log=lambda *_: None)
    ta, tb = load_tensors(a), load_tensors(b)
    assert meta["objective"] == "rotation" and all(torch.equal(ta[k], tb[k]) for k in ta)  # deterministic
    from robustok.metrics.domain import FmnistNet

    assert not set(AuxNet().state_dict()) & set(FmnistNet().state_dict())  # another architecture
    tok, out = setup
    task = PostTrainTask(
        _cfg(tmp_path, "loss.perceptual=aux", f"loss.aux_perceptual_weights={a}"),
        tokenizer=tok,
        store=PairStore(out, tok),
    )
    generated, images, _ = _batch(task)
    result = task.step(task.model, [generated, images, None], 0, task.model)
    assert float(result["perceptual"]) > 0
    recon = task.decode(task.model, generated)
    perceptual_distance(task.perceptual, recon, images).backward()  # the term alone
    assert task.model.decoder.conv_out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in task.perceptual.parameters())
    frozen = tuple(tok.frozen_part_names())
    assert all(p.grad is None for n, p in tok.named_parameters() if n.startswith(frozen))


def test_aux_perceptual_weights_missing_or_the_fid_network_are_refused(setup, tmp_path):
    tok, out = setup
    store = PairStore(out, tok)
    with pytest.raises(CheckpointError, match="aux_perceptual_weights"):
        PostTrainTask(_cfg(tmp_path, "loss.perceptual=aux"), tokenizer=tok, store=store)
    with pytest.raises(CheckpointError, match="not found"):
        PostTrainTask(
            _cfg(tmp_path, "loss.perceptual=aux", f"loss.aux_perceptual_weights={tmp_path / 'x'}"),
            tokenizer=tok,
            store=store,
        )
    fid_net = ROOT / "robustok/metrics/weights/fmnist-features-v1.safetensors"
    with pytest.raises(CheckpointError, match="do not fit AuxNet"):
        PostTrainTask(
            _cfg(tmp_path, "loss.perceptual=aux", f"loss.aux_perceptual_weights={fid_net}"), tokenizer=tok, store=store
        )


# --- the `authors` recipe of experiments/posttrain_recipes.py is a valid configuration -----------------------
def test_authors_recipe_is_a_valid_configuration(tmp_path):
    spec = importlib.util.spec_from_file_location("posttrain_recipes", ROOT / "experiments/posttrain_recipes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    overrides = [o.format(aux=tmp_path / "aux.safetensors") for o in mod.RECIPES["authors"]]
    cfg = _cfg(tmp_path, *overrides)
    assert cfg.epochs == 40 and cfg.train.ema_decay == 0.9999 and cfg.eval_ema and not cfg.ema_warmup
    assert cfg.loss.disc_weight == 0.5 and cfg.loss.disc_start == 0 and not cfg.reuse_discriminator
    assert cfg.loss.diffaug == "color,translation,cutout" and cfg.loss.perceptual == "aux"


def test_shipped_authors_config_is_the_e2_recipe():
    """configs/posttrain/fmnist-authors.yaml holds what experiments/posttrain_authors.py ran (full budget)."""
    import dataclasses

    spec = importlib.util.spec_from_file_location("posttrain_authors", ROOT / "experiments/posttrain_authors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    aux = "weights/aux-perceptual.safetensors"
    study = load_config(
        PostTrainConfig, ROOT / "configs/posttrain/fmnist.yaml", mod.scaled_recipe(mod.BUDGETS["full"], aux)
    )
    shipped = load_config(PostTrainConfig, ROOT / "configs/posttrain/fmnist-authors.yaml")
    a, b = dataclasses.asdict(study), dataclasses.asdict(shipped)
    for d in (a, b):  # where the run writes, how long (epochs decide) and how it is judged are the caller's
        del d["run"]["dir"], d["train"]["steps"], d["train"]["ema_decay"], d["ema_keep"], d["eval_num_reference"]
    assert a == b
    steps = epochs_to_steps(shipped.epochs, 192, shipped.data.batch_size)
    assert steps == 240 and shipped.ema_keep ** (1 / steps) == pytest.approx(study.train.ema_decay, abs=1e-6)


def test_ema_keep_sets_the_decay_from_the_length(setup, tmp_path):
    tok, out = setup
    task = PostTrainTask(_cfg(tmp_path, "epochs=2", "ema_keep=0.5"), tokenizer=tok, store=PairStore(out, tok))
    assert task.cfg.train.steps == 6 and task.cfg.train.ema_decay == pytest.approx(0.5 ** (1 / 6))
    assert task.cfg.train.ema_decay**6 == pytest.approx(0.5)  # the untouched decoder's share after the last step
    task = PostTrainTask(_cfg(tmp_path, "train.ema_decay=0.9"), tokenizer=tok, store=PairStore(out, tok))
    assert task.cfg.train.ema_decay == 0.9  # ema_keep: 0 leaves the decay as given
    with pytest.raises(ConfigError, match="ema_keep"):
        _cfg(tmp_path, "ema_keep=1.5")


def test_post_train_summary_records_the_recipe(setup, tmp_path):
    from robustok.posttrain.train import post_train

    tok, out = setup
    tok.save_pretrained(tmp_path / "tok")
    cfg = _cfg(
        tmp_path, f"tokenizer={tmp_path / 'tok'}", f"pairs={out}", "epochs=1", "eval_every=0", "train.ema_decay=0.9"
    )
    s = post_train(cfg, log=lambda *_: None)
    assert s["steps"] == 3 and s["epochs"] == 1.0 and s["pair_input"] == "ids" and s["ema"] is True
    assert s["disc_diffaug"] is None and [(c["step"], c["epoch"]) for c in s["curve"]] == [(3, 1.0)]
    assert s["gfid_proxy_after_raw"] == s["curve"][-1]["gfid_proxy_raw"] != s["gfid_proxy_after"]
    saved = json.loads((tmp_path / "post" / "posttrain.json").read_text())
    assert saved["config"]["epochs"] == 1.0 and saved["config"]["train"]["steps"] == 3


def test_authors_study_names_a_missing_model(tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments/posttrain_authors.py"),
            "--out",
            str(tmp_path),
            "--tokenizer",
            str(tmp_path / "nowhere"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "nowhere: no trained model there" in r.stderr and "study_models.py" in r.stderr
    assert not (tmp_path / "ids").exists()
