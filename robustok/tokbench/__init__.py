"""`benchmark-tokenizers`: the paper's Tables 7/8 as a tool.

For each tokenizer: reconstruction metrics (PSNR, rFID, pFID, codebook usage) on held-out images, then the same
generator preset trained with the same budget and seeds on its tokens, and gFID from two sample sets without and
with CFG (their difference is the noise floor). Then, per codebook size K (pFID's δ grid depends on K), how well
rFID and pFID predict gFID (`robustok.tokbench.stats`). Every step is cached under `<out>/stages/`, so an
interrupted run continues where it stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from robustok.errors import ConfigError

ENDPOINTS = ("gfid_cfg", "gfid_nocfg")


@dataclass
class BenchmarkSpec:
    """The shared budget: every tokenizer gets exactly this."""

    train_data: str = "fashion-mnist:train"
    eval_data: str = "fashion-mnist:test"
    generator_config: Optional[str] = None  # default: configs/generator/fmnist-ar.yaml
    generator_overrides: list[str] = field(default_factory=list)
    gen_steps: int = 1500
    gen_seeds: list[int] = field(default_factory=lambda: [0])
    pretok_images: int = 60000
    eval_images: int = 2000
    gen_images: int = 2000
    cfg: float = 1.5
    features: str = "fmnist"
    bootstrap: int = 2000

    def check(self) -> None:
        for key in ("gen_steps", "pretok_images", "eval_images", "gen_images"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.eval_images < 2 or self.gen_images < 2:
            raise ConfigError("eval_images and gen_images must be >= 2 (a FID needs a covariance)")
        if not self.gen_seeds:
            raise ConfigError("gen_seeds: give at least one generator seed")
        if self.cfg < 1.0:
            raise ConfigError(f"cfg must be >= 1 (1 = no guidance), got {self.cfg}")


@dataclass
class Entry:
    name: str
    path: str
    codebook_size: int


def inspect_tokenizers(paths: list[str], group_by_k: bool) -> list[Entry]:
    """Load every tokenizer once to check it before anything is written: a directory, discrete, with a codebook;
    one K unless `group_by_k`. Names are the directory names (a run's `tokenizer/` is named after its run)."""
    from robustok.tokenizer.loading import load_tokenizer

    if len(paths) < 2:
        raise ConfigError("benchmark-tokenizers needs at least two tokenizers to compare")
    entries, seen = [], set()
    for p in paths:
        path = Path(p)
        if not path.is_dir():
            raise ConfigError(f"{path}: not a tokenizer directory (config.json + model.safetensors)")
        tok = load_tokenizer(path)
        if not tok.is_discrete:
            raise ConfigError(
                f"{path}: a continuous tokenizer has no codebook, so no pFID (and no token ids for "
                "the AR generator); benchmark-tokenizers compares discrete tokenizers"
            )
        name = path.resolve().parent.name if path.name in ("tokenizer", "tokenizer-best") else path.name
        base, k = name, 2
        while name in seen:
            name, k = f"{base}-{k}", k + 1
        seen.add(name)
        entries.append(Entry(name, str(path), int(tok.codebook_size)))
    sizes = sorted({e.codebook_size for e in entries})
    if len(sizes) > 1 and not group_by_k:
        raise ConfigError(
            f"the tokenizers have different codebook sizes {sizes}: pFID's δ grid scales with K, so "
            "pFIDs of different K are not comparable. Pass --group-by-k to correlate within each K"
        )
    return entries


def _generator_config(spec: BenchmarkSpec, tokens: Path, tok_path: str, run_dir: Path, seed: int):
    from robustok.demo.stages import config_file
    from robustok.generator.task import load_generator_config

    path = spec.generator_config or config_file("generator/fmnist-ar.yaml")
    return load_generator_config(
        path,
        [
            f"data.tokens={tokens}",
            f"data.tokenizer={tok_path}",
            f"run.dir={run_dir}",
            f"run.seed={seed}",
            f"train.steps={spec.gen_steps}",
            "run.sample_every=0",
            f"run.ckpt_every={max(spec.gen_steps // 4, 1)}",
            *spec.generator_overrides,
        ],
    )


def _evaluate(entry: Entry, spec: BenchmarkSpec, features, workers: Optional[int] = 0) -> dict:
    from robustok.data import eval_batches
    from robustok.metrics.pfid import PFIDConfig
    from robustok.metrics.tokenizer_eval import evaluate_tokenizer
    from robustok.tokenizer.loading import load_tokenizer

    tok = load_tokenizer(entry.path)
    batches = eval_batches(
        spec.eval_data, 200, spec.eval_images, tok.config.image_size, tok.config.channels, num_workers=workers
    )
    return evaluate_tokenizer(tok, batches, ["psnr", "rfid", "pfid", "usage"], features, PFIDConfig(seed=0))


def _train_generator(entry: Entry, spec: BenchmarkSpec, out: Path, seed: int, workers: Optional[int] = 0) -> str:
    from robustok.data import build_dataset, workers_for
    from robustok.generator.task import GeneratorTask
    from robustok.tokenizer.loading import load_tokenizer
    from robustok.tokens.store import write_token_store
    from robustok.train.export import train_or_resume

    tokens, run_dir = out / "tokens" / entry.name, out / "runs" / f"gen-{entry.name}-seed{seed}"
    if not (tokens / "manifest.json").is_file():
        tok = load_tokenizer(entry.path)
        ds = build_dataset(spec.train_data, tok.config.image_size, tok.config.channels, train=True)
        write_token_store(
            tok,
            ds,
            tokens,
            views=1,
            limit=spec.pretok_images,
            source=spec.train_data,
            overwrite=True,
            workers=workers_for(spec.train_data, workers),
        )  # the benchmark's cache: replaces a half-written store of an old run
    cfg = _generator_config(spec, tokens, entry.path, run_dir, seed)
    return str(train_or_resume("generator", lambda: GeneratorTask(cfg), cfg.run, cfg.train, cfg.data, full_config=cfg))


def _gfid(entry: Entry, gen_path: str, spec: BenchmarkSpec, features, reference) -> dict:
    """gFID without and with CFG, each from two sample sets (seeds 0 and 1): mean and noise floor."""
    from robustok.demo.stages import decoded_fid, sample_tokens
    from robustok.generator import load_generator
    from robustok.tokenizer.loading import load_tokenizer

    gen, tok = load_generator(gen_path).eval(), load_tokenizer(entry.path)
    result: dict[str, Any] = {}
    for key, scale in (("gfid_nocfg", 1.0), ("gfid_cfg", spec.cfg)):
        sets = [decoded_fid(tok, sample_tokens(gen, spec.gen_images, scale, s), features, reference) for s in (0, 1)]
        result[key], result[f"{key}_sets"], result[f"{key}_noise"] = float(np.mean(sets)), sets, abs(sets[0] - sets[1])
    return result


def tokenizer_metrics(entry: Entry, spec: BenchmarkSpec, out: Path, features, fresh: bool = False,
                      workers: Optional[int] = 0) -> dict:  # fmt: skip
    """PSNR, rFID, pFID and codebook usage of one tokenizer on the spec's evaluation images, cached under `out`."""
    from robustok.demo.stages import cached, weights_hash

    key = {"tok": weights_hash(entry.path), "data": spec.eval_data, "n": spec.eval_images, "features": spec.features}
    return cached(out, f"eval-{entry.name}", key, fresh, lambda: _evaluate(entry, spec, features, workers))


def benchmark_tokenizer(
    entry: Entry,
    spec: BenchmarkSpec,
    out: Path,
    features,
    reference,
    fresh: bool,
    log: Callable[[str], None],
    workers: Optional[int] = 0,
) -> dict:
    """All cached measurements of one tokenizer: its metrics and, per generator seed, gFID (images read by
    `workers` processes; None: as many as suit the data)."""
    from robustok.config import to_dict
    from robustok.demo.stages import cached, weights_hash

    weights = weights_hash(entry.path)
    metrics = tokenizer_metrics(entry, spec, out, features, fresh, workers)
    log(
        f"  {entry.name}: PSNR {metrics['psnr']:.2f} dB, rFID {metrics['rfid']:.2f}, pFID {metrics['pfid']:.2f}, "
        f"usage {metrics['codebook_usage']:.0%}"
    )
    per_seed = []
    for seed in spec.gen_seeds:
        cfg = _generator_config(spec, out / "tokens" / entry.name, entry.path, out / "runs" / "x", seed)
        key = {
            "tok": weights,
            "gen": to_dict(cfg)["model"],
            "train": to_dict(cfg)["train"],
            "seed": seed,
            "steps": spec.gen_steps,
            "images": spec.pretok_images,
            "data": spec.train_data,
        }
        gen_path = cached(
            out,
            f"generator-{entry.name}-seed{seed}",
            key,
            fresh,
            partial(_train_generator, entry, spec, out, seed, workers),
        )
        g = cached(
            out,
            f"gfid-{entry.name}-seed{seed}",
            {
                **key,
                "gen_weights": weights_hash(gen_path),
                "n": spec.gen_images,
                "cfg": spec.cfg,
                "features": spec.features,
            },
            fresh,
            partial(_gfid, entry, gen_path, spec, features, reference),
        )
        per_seed.append(g)
        log(
            f"  {entry.name} seed {seed}: gFID {g['gfid_nocfg']:.2f} without CFG, {g['gfid_cfg']:.2f} with CFG "
            f"{spec.cfg} (sample sets differ by {g['gfid_nocfg_noise']:.2f} / {g['gfid_cfg_noise']:.2f})"
        )
    row = {
        "name": entry.name,
        "path": entry.path,
        "codebook_size": entry.codebook_size,
        "psnr": metrics["psnr"],
        "rfid": metrics["rfid"],
        "pfid": metrics["pfid"],
        "pfid_grid": metrics.get("pfid_grid"),
        "codebook_usage": metrics["codebook_usage"],
        "per_seed": per_seed,
    }
    for endpoint in ENDPOINTS:
        values = [g[endpoint] for g in per_seed]
        row[endpoint], row[f"{endpoint}_seed_sd"] = (
            float(np.mean(values)),
            (float(np.std(values, ddof=1)) if len(values) > 1 else None),
        )
        row[f"{endpoint}_noise"] = float(np.mean([g[f"{endpoint}_noise"] for g in per_seed]))
    return row


def correlate(rows: list[dict], spec: BenchmarkSpec) -> dict:
    """Per K (as a string key) and endpoint: pFID vs rFID as predictors of gFID."""
    from robustok.tokbench.stats import compare_predictors

    groups: dict[str, dict] = {}
    for k in sorted({r["codebook_size"] for r in rows}):
        group = [r for r in rows if r["codebook_size"] == k]
        groups[str(k)] = {"tokenizers": [r["name"] for r in group]}
        for key in ENDPOINTS:
            groups[str(k)][key] = compare_predictors(
                [r["pfid"] for r in group], [r["rfid"] for r in group], [r[key] for r in group], spec.bootstrap
            )
    return groups


def run_benchmark(
    paths: list[str],
    spec: BenchmarkSpec,
    out: str | Path,
    group_by_k: bool = False,
    fresh: bool = False,
    log: Callable[[str], None] = print,
    workers: Optional[int] = 0,
) -> dict:
    """Benchmark `paths` (tokenizer directories) under `spec`; writes `<out>/results.json` and a scatter plot.
    `workers`: processes reading images (None: `robustok.data.loader.workers_for` each data spec)."""
    import json

    from robustok.hub import atomic_write_bytes
    from robustok.metrics.features import describe, get_feature_net
    from robustok.metrics.fid import source_stats
    from robustok.tokbench.report import scatter_plot

    spec.check()
    entries = inspect_tokenizers(paths, group_by_k)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    features = get_feature_net(spec.features, log=log)
    log(describe(features))
    reference = source_stats(spec.train_data, features, num_images=spec.gen_images, workers=workers)
    rows = [benchmark_tokenizer(e, spec, out, features, reference, fresh, log, workers) for e in entries]
    result = {
        "spec": asdict(spec),
        "features": spec.features,
        "tokenizers": rows,
        "by_codebook_size": correlate(rows, spec),
    }
    atomic_write_bytes(out / "results.json", json.dumps(result, indent=2, default=float).encode())
    scatter_plot(result, out / "scatter.png")
    return result
