"""The demo's stages, each a call of the library functions the CLI commands use, cached by its configuration."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from robustok.config import load_config, to_dict
from robustok.demo.profiles import DemoProfile
from robustok.hub import atomic_write_bytes
from robustok.losses.discriminators import copy_discriminator
from robustok.presets import preset_path
from robustok.tokenizer.model import Tokenizer
from robustok.tokenizer.train import TokenizerTask, TokenizerTrainConfig
from robustok.train.export import checkpoint_steps, export_checkpoint, train_or_resume

NAMES = ("baseline", "robust")


def cached(out: Path, name: str, key: Any, fresh: bool, fn: Callable[[], Any]) -> Any:
    """Run `fn` unless `<out>/stages/<name>.json` holds a result for the same `key` (and not `fresh`)."""
    path = out / "stages" / f"{name}.json"
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    if path.is_file() and not fresh:
        saved = json.loads(path.read_text())
        if saved.get("key") == digest:
            return saved["result"]
    result = fn()
    atomic_write_bytes(
        path, json.dumps({"key": digest, "config": key, "result": result}, indent=2, default=float).encode()
    )
    return result


def point_name(name: str, step: int) -> str:
    return f"{name}-{step:05d}"


def tokenizer_config(name: str, profile: DemoProfile, run_dir: Path) -> TokenizerTrainConfig:
    n = len(profile.tok_checkpoints)
    every = profile.tok_steps // n
    return load_config(
        TokenizerTrainConfig,
        config_file(f"tokenizer/fmnist-{name}.yaml"),
        [
            f"train.steps={profile.tok_steps}",
            f"run.dir={run_dir}",
            f"run.ckpt_every={every}",
            f"run.keep_checkpoints={n}",
            "run.progress=true",
            *profile.tok_overrides,
        ],
    )


def config_file(relative: str) -> Path:
    """A config shipped with the package, e.g. `tokenizer/fmnist-robust.yaml` (`robustok.presets`)."""
    stage, name = relative.split("/", 1)
    return preset_path(stage, name.removesuffix(".yaml"))


def train_tokenizers(out: Path, profile: DemoProfile, fresh: bool, log) -> dict[str, str]:
    """Main-train baseline and robust; export each checkpoint's EMA weights as a tokenizer directory."""
    points: dict[str, str] = {}
    for name in NAMES:
        run_dir = out / "runs" / f"tok-{name}"
        cfg = tokenizer_config(name, profile, run_dir)
        key = {"config": to_dict(cfg)}

        def work(name=name, cfg=cfg, run_dir=run_dir):
            if fresh and run_dir.exists():
                shutil.rmtree(run_dir)
            final = train_or_resume(
                "tokenizer", lambda: TokenizerTask(cfg), cfg.run, cfg.train, cfg.data, full_config=cfg
            )
            exported = {}
            for step in checkpoint_steps(run_dir):
                if step not in profile.tok_checkpoints:
                    continue
                dest = out / "tokenizers" / point_name(name, step)
                export_checkpoint(run_dir, step, Tokenizer(cfg.model), dest)
                if step == profile.tok_steps:
                    copy_discriminator(final, dest)
                exported[point_name(name, step)] = str(dest)
            return exported

        points.update(cached(out, f"tokenizer-{name}", key, fresh, work))
    log(f"tokenizers: {', '.join(points)}")
    return points


def reference_stats(profile: DemoProfile, features):
    from robustok.metrics.fid import source_stats

    return source_stats("fashion-mnist:test", features, num_images=profile.gen_images)


def evaluate_on_test(tok_path: str, profile: DemoProfile, features, metrics: list[str]) -> dict:
    """`metrics` of a tokenizer on the profile's evaluation images (the first `eval_images` of fashion-mnist:test)."""
    from robustok.evaluation import evaluate_tokenizer

    return evaluate_tokenizer(
        tok_path, "fashion-mnist:test", metrics, features, num_images=profile.eval_images, batch_size=200, device="cpu"
    )


def evaluate(out: Path, points: dict[str, str], profile: DemoProfile, fresh: bool, features, log) -> dict:
    results = {}
    for name, path in points.items():
        key = {"tokenizer": weights_hash(path), "n": profile.eval_images, "features": profile.features}

        def work(path=path):
            return evaluate_on_test(path, profile, features, ["psnr", "ssim", "rfid", "pfid", "usage"])

        results[name] = cached(out, f"eval-{name}", key, fresh, work)
        r = results[name]
        log(
            f"  {name}: PSNR {r['psnr']:.2f} dB, rFID {r['rfid']:.2f}, pFID {r['pfid']:.2f}, "
            f"usage {r['codebook_usage']:.0%}"
        )
    return results


def weights_hash(directory: str | Path) -> str:
    """Short sha256 of a model directory's safetensors files (with those of sub-folders such as the saved
    discriminator): a cache key that changes with the weights."""
    h = hashlib.sha256()
    for f in sorted(Path(directory).rglob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def train_generators(out: Path, points: dict[str, str], profile: DemoProfile, fresh: bool, log) -> dict[str, str]:
    from robustok.data import build_dataset
    from robustok.generator.task import GeneratorTask, load_generator_config
    from robustok.tokens.store import write_token_store

    gens = {}
    for name, tok_path in points.items():
        run_dir = out / "runs" / f"gen-{name}"
        tokens = out / "tokens" / name
        cfg = load_generator_config(
            config_file("generator/fmnist-ar.yaml"),
            [
                f"data.tokens={tokens}",
                f"data.tokenizer={tok_path}",
                f"run.dir={run_dir}",
                f"train.steps={profile.gen_steps}",
                "run.sample_every=0",
                f"run.ckpt_every={max(profile.gen_steps // 2, 1)}",
                *profile.gen_overrides,
            ],
        )
        key = {"tokenizer": weights_hash(tok_path), "config": to_dict(cfg), "images": profile.pretok_images}

        def work(tok_path=tok_path, tokens=tokens, run_dir=run_dir, cfg=cfg):
            if fresh:
                shutil.rmtree(run_dir, ignore_errors=True)
            if not (tokens / "manifest.json").is_file():
                tok = Tokenizer.from_pretrained(tok_path).eval()
                ds = build_dataset("fashion-mnist:train", tok.config.image_size, tok.config.channels, train=True)
                write_token_store(
                    tok, ds, tokens, views=1, limit=profile.pretok_images, source="fashion-mnist:train", overwrite=True
                )  # the demo's own cache: a store without a manifest is stale
            return str(
                train_or_resume("generator", lambda: GeneratorTask(cfg), cfg.run, cfg.train, cfg.data, full_config=cfg)
            )

        gens[name] = cached(out, f"generator-{name}", key, fresh, work)
    return gens


@torch.no_grad()
def sample_tokens(gen, n: int, cfg_scale: float, seed: int) -> torch.Tensor:
    from robustok.generator.sampling import sample_codes

    labels = torch.arange(n) % max(gen.config.num_classes, 1)
    rng, opts = torch.Generator().manual_seed(seed), gen.sampling(cfg=cfg_scale)
    return torch.cat([sample_codes(gen, labels[lo : lo + 250], opts, rng) for lo in range(0, n, 250)])


@torch.no_grad()
def decoded_fid(tok, ids: torch.Tensor, features, reference) -> float:
    """FID of the images `tok` decodes from token ids `ids` against `reference` (statistics or an image set)."""
    from robustok.data import to_uint8
    from robustok.evaluation import evaluate_samples

    batches = (to_uint8(tok.decode(ids[lo : lo + 250])) for lo in range(0, len(ids), 250))
    return evaluate_samples(batches, reference, ["fid"], features)["fid"]


def gfid(
    out: Path, points: dict[str, str], gens: dict[str, str], profile: DemoProfile, fresh: bool, features, reference, log
) -> dict:
    """gFID of each point's generator, with a second sample set (another seed) as the noise floor."""
    from robustok.generator import load_generator

    results = {}
    for name, tok_path in points.items():
        key = {
            "gen": weights_hash(gens[name]),
            "tok": weights_hash(tok_path),
            "n": profile.gen_images,
            "cfg": profile.cfg,
            "features": profile.features,
        }

        def work(name=name, tok_path=tok_path):
            gen, tok = load_generator(gens[name]).eval(), Tokenizer.from_pretrained(tok_path).eval()
            r = {}
            for seed in (0, 1):
                ids = sample_tokens(gen, profile.gen_images, profile.cfg, seed)
                np.save(out / "stages" / f"samples-{name}-seed{seed}.npy", ids.numpy().astype(np.uint16))
                r[f"gfid_seed{seed}"] = decoded_fid(tok, ids, features, reference)
            r["gfid"] = (r["gfid_seed0"] + r["gfid_seed1"]) / 2
            r["gfid_noise"] = abs(r["gfid_seed0"] - r["gfid_seed1"])
            return r

        results[name] = cached(out, f"gfid-{name}", key, fresh, work)
        log(f"  {name}: gFID {results[name]['gfid']:.2f} (two sample sets differ by {results[name]['gfid_noise']:.2f})")
    return results


def mean_sd(values: list[float]) -> tuple[float, Optional[float]]:
    """Mean and sample sd (None for a single value)."""
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def post_train_config(
    tok_path: str | Path,
    pairs_dir: str | Path,
    run_dir: str | Path,
    seed: int,
    profile: DemoProfile,
    extra: Sequence[str] = (),
):
    """The demo's post-training configuration for one seed (`extra`: overrides on top, e.g. another recipe)."""
    from robustok.posttrain.train import PostTrainConfig

    return load_config(
        PostTrainConfig,
        config_file("posttrain/fmnist.yaml"),
        [
            f"tokenizer={tok_path}",
            f"pairs={pairs_dir}",
            f"run.dir={run_dir}",
            f"run.seed={seed}",
            f"train.steps={profile.post_steps}",
            f"eval_every={max(profile.post_steps // 3, 1)}",
            f"eval_features={profile.features}",
            "eval_reference=fashion-mnist:test",
            f"eval_num_reference={profile.gen_images}",
            *profile.post_overrides,
            *extra,
        ],
    )


def post_train_point(
    out: Path, name: str, tok_path: str, gen_path: str, profile: DemoProfile, fresh: bool, features, log
) -> dict:
    """Pairs at sigma from the point's generator, then post-training + the sigma=1 control, per seed."""
    from robustok.data import build_dataset
    from robustok.generator import load_generator
    from robustok.posttrain.pairs import PairsSpec, make_pairs
    from robustok.posttrain.train import post_train

    pairs_dir = out / "pairs" / name
    key = {
        "gen": weights_hash(gen_path),
        "tok": weights_hash(tok_path),
        "sigma": profile.sigma,
        "n": profile.num_pairs,
        "eval": profile.gen_images,
        "cfg": profile.cfg,
    }

    def make():
        gen, tok = load_generator(gen_path).eval(), Tokenizer.from_pretrained(tok_path).eval()
        ds = build_dataset("fashion-mnist:train", tok.config.image_size, tok.config.channels)
        spec = PairsSpec(
            sigma=profile.sigma,
            num_pairs=profile.num_pairs,
            num_eval=profile.gen_images,
            data="fashion-mnist:train",
            resolution=tok.config.image_size,
            channels=tok.config.channels,
            seed=0,
            batch_size=250,
        )
        make_pairs(gen, tok, ds, spec, pairs_dir, gen.sampling(cfg=profile.cfg), overwrite=True)
        return str(pairs_dir)

    cached(out, f"pairs-{name}", key, fresh, make)
    runs = []
    for seed in profile.post_seeds:
        run_dir = out / "runs" / f"post-{name}-seed{seed}"
        cfg = post_train_config(tok_path, pairs_dir, run_dir, seed, profile)

        def work(cfg=cfg, run_dir=run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            s = post_train(cfg, with_control=True, log=log)
            for which in ("", "control_"):  # what fine-tuning did to reconstructions of real images
                r = evaluate_on_test(s[f"{which}tokenizer"], profile, features, ["psnr", "rfid"])
                s.update({f"{which}rfid_after": r["rfid"], f"{which}psnr_after": r["psnr"]})
            return {k: v for k, v in s.items() if k != "config"}

        runs.append(
            cached(out, f"post-{name}-seed{seed}", {**key, "config": to_dict(cfg), "summary": 2}, fresh, work)
        )  # "summary": bump when the stored fields change (v2: rFID/PSNR after)

    def col(key: str) -> list[float]:
        return [float(r[key]) for r in runs]

    after, control = col("gfid_proxy_after"), col("gfid_proxy_control")
    vs_control = [a - c for a, c in zip(after, control)]
    summary = {
        "runs": runs,
        "gfid_before_paired": runs[0]["gfid_proxy_before"],
        "delta_post": [a - b for a, b in zip(after, col("gfid_proxy_before"))],
        "delta_vs_control": vs_control,
    }
    summary["gfid_post"], summary["gfid_post_sd"] = mean_sd(after)
    summary["gfid_control"], summary["gfid_control_sd"] = mean_sd(control)
    summary["delta_vs_control_mean"], summary["delta_vs_control_sd"] = mean_sd(vs_control)
    summary["rfid_post"], summary["rfid_post_sd"] = mean_sd(col("rfid_after"))
    summary["rfid_control"] = mean_sd(col("control_rfid_after"))[0]
    summary["psnr_post"] = mean_sd(col("psnr_after"))[0]
    summary["psnr_control"] = mean_sd(col("control_psnr_after"))[0]
    log(
        f"  {name}: paired gFID before {summary['gfid_before_paired']:.2f}, after {summary['gfid_post']:.2f}, "
        f"control {summary['gfid_control']:.2f} (post - control per seed: "
        f"{', '.join(f'{d:+.2f}' for d in vs_control)}); rFID after {summary['rfid_post']:.2f}, "
        f"control {summary['rfid_control']:.2f}"
    )
    return summary
