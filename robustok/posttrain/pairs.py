"""Paired data for post-training: generated tokens (or latents) stored with the index of their real image.

AR generators: teacher forcing with preservation ratio sigma. For each real image, its tokens from the
main-trained tokenizer are kept i.i.d. per position with probability sigma during raster sampling, otherwise the
generator samples; the chosen token is fed back. Diffusion generators: SDEdit, noising the real latent to
t = 1 - sigma and denoising it. `pair_input` (in the manifest) says what the decoder is trained on: "ids" (ours,
the default) stores the generated token ids / latents directly; "roundtrip" (the authors') decodes them, rounds to
uint8 (a PNG) and re-encodes, storing encode(decode(ids)). The held-out samples are always plain ids: at
generation time the decoder sees the generator's own tokens.

A store is a folder: `manifest.json`, `generated.npy` (uint16 ids (N, h*w) or float16 latents (N, C, h, w)),
`index.npy` (int64 real-image index), `labels.npy`, and `eval_generated.npy`: free samples (sigma = 0) of the
same generator, held out for the gFID proxy.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from tqdm import tqdm

from robustok.data.transforms import from_uint8, to_uint8
from robustok.distributed_outputs import finish_parts, mine, sharded
from robustok.errors import CheckpointError, ConfigError, DataError
from robustok.generator.ar import ARGenerator
from robustok.generator.sampling import SamplingOptions, check_pair, sample_codes
from robustok.hub import atomic_write_bytes
from robustok.metrics.distributed import rank_world
from robustok.outputs import check_out, commit_dir, temp_sibling
from robustok.train.faults import fault_point

MANIFEST = "manifest.json"


@dataclass
class PairsSpec:
    sigma: float
    num_pairs: int
    num_eval: int = 1000          # free samples kept for the gFID proxy
    data: str = "fashion-mnist:train"
    resolution: int = 32
    channels: int = 1
    seed: int = 0
    batch_size: int = 100
    pair_input: str = "ids"       # a name in PAIR_INPUTS: ids (ours) | roundtrip (the authors')


def _generator_kind(gen: Any) -> str:
    if getattr(gen, "token_kind", None) == "ids":   # masked generator (issue 11 part 6): pairs of token ids
        return "ar"
    return "ar" if isinstance(gen, ARGenerator) else "diffusion"


@torch.no_grad()
def generate_batch(gen: Any, tok: Any, images: torch.Tensor, labels: torch.Tensor, sigma: float,
                   opts: SamplingOptions, sample_rng: torch.Generator, mask_rng: torch.Generator) -> torch.Tensor:
    """Generated tokens (B, h, w) or latents (B, C, h, w) paired with `images` at preservation ratio sigma.

    The keep-mask draws use `mask_rng`, sampling uses `sample_rng`, so sigma = 0 gives exactly the free samples
    of the same `sample_rng` state and sigma = 1 gives exactly the real tokens.
    """
    if not 0.0 <= sigma <= 1.0:
        raise ConfigError(f"sigma must lie in [0, 1], got {sigma}")
    if hasattr(gen, "paired"):   # masked generator (issue 11 part 6): keep each real token w.p. sigma, decode rest
        return gen.paired(tok.encode(images), labels, sigma, opts, sample_rng, mask_rng)
    if _generator_kind(gen) == "ar":
        real = tok.encode(images)
        keep = torch.rand(real.flatten(1).shape, generator=mask_rng, device=real.device) < sigma
        return gen.sample(labels, cfg=opts.cfg, temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p,
                          generator=sample_rng, keep_mask=keep, prefix_tokens=real, cfg_schedule=opts.cfg_schedule,
                          cfg_power=opts.cfg_power)
    z = tok.encode_latents(images)
    if sigma >= 1.0:
        return z
    return gen.denoise_from(z, 1.0 - sigma, labels, cfg=opts.cfg, steps=opts.steps, sampler=opts.sampler,
                            generator=sample_rng)


@torch.no_grad()
def round_trip(tok: Any, generated: torch.Tensor, kind: str) -> torch.Tensor:
    """encode(uint8(decode(generated))): what the authors' decoder is trained on (decoded to PNG, re-encoded)."""
    if kind == "ar":
        return tok.encode(from_uint8(to_uint8(tok.decode(generated))).to(generated.device)).view_as(generated)
    image = tok.decode_latents(generated).clamp(-1, 1)
    return tok.encode_latents(from_uint8(to_uint8(image)).to(generated.device))


PAIR_INPUTS = {  # pair_input name -> (tokenizer, generated batch, kind) -> what is stored as the decoder's input
    "ids": lambda tok, generated, kind: generated,
    "roundtrip": round_trip,
}


def check_pair_input(name: str, where: str = "--pair-input") -> None:
    if name not in PAIR_INPUTS:
        raise ConfigError(f"{where}: unknown pair input {name!r}; choose from {sorted(PAIR_INPUTS)}")


def _as_stored(x: torch.Tensor, kind: str) -> np.ndarray:
    if kind == "ar":
        return x.flatten(1).cpu().numpy().astype(np.uint16 if int(x.max()) < 65536 else np.int32)
    return x.cpu().numpy().astype(np.float16)


def _produce(gen: Any, tok: Any, dataset: Any, spec: PairsSpec, opts: SamplingOptions, order: np.ndarray,
             progress: bool) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """This rank's batches (strided; pair batches first, then held-out batches), each with its own seeds: the
    same arrays whatever the number of ranks."""
    kind = _generator_kind(gen)
    device = next(gen.parameters()).device
    n_cls = gen.config.num_classes
    n_pair_batches = -(-spec.num_pairs // spec.batch_size)
    n_batches = n_pair_batches + -(-spec.num_eval // spec.batch_size)
    rank, world = rank_world()
    size = [min(spec.batch_size, spec.num_pairs - b * spec.batch_size) for b in range(n_pair_batches)]
    size += [min(spec.batch_size, spec.num_eval - e * spec.batch_size) for e in range(n_batches - n_pair_batches)]
    bar = tqdm(total=sum(size[b] for b in mine(n_batches, rank, world)), disable=not progress or rank != 0,
               desc=f"pairs sigma={spec.sigma}")
    for b in mine(n_batches, rank, world):
        bar.update(size[b])
        if b < n_pair_batches:
            idx = order[b * spec.batch_size: (b + 1) * spec.batch_size]
            items = [dataset[int(i)] for i in idx]
            images = torch.stack([it[0] for it in items]).to(device)
            labels = torch.tensor([it[1] for it in items], device=device)
            if (labels < 0).any() and n_cls > 0:
                raise DataError(f"{spec.data}: unlabeled images cannot condition a class-conditional generator")
            labels = labels.clamp_min(0) if n_cls > 0 else torch.full_like(labels, n_cls)
            sample_rng = torch.Generator(device=device).manual_seed(spec.seed * 1_000_003 + b)
            mask_rng = torch.Generator(device=device).manual_seed(spec.seed * 1_000_003 + b + 500_000_009)
            gen_out = generate_batch(gen, tok, images, labels, spec.sigma, opts, sample_rng, mask_rng)
            gen_out = PAIR_INPUTS[spec.pair_input](tok, gen_out, kind)
            yield b, {"generated": _as_stored(gen_out, kind), "labels": labels.cpu().numpy()}
        else:
            e = b - n_pair_batches
            lo = e * spec.batch_size
            m = min(spec.batch_size, spec.num_eval - lo)
            lab = (torch.arange(lo, lo + m) % n_cls if n_cls > 0 else torch.full((m,), n_cls)).to(device)
            rng = torch.Generator(device=device).manual_seed(spec.seed * 1_000_003 + 900_000_011 + e)
            yield b, {"eval": _as_stored(sample_codes(gen, lab, opts, rng), kind)}
    bar.close()


def make_pairs(gen: Any, tok: Any, dataset: Any, spec: PairsSpec, out: str | Path,
               opts: Optional[SamplingOptions] = None, progress: bool = True, overwrite: bool = False) -> Path:
    """Generate `spec.num_pairs` pairs (+ `spec.num_eval` held-out free samples) into the folder `out`.

    Under `torchrun` the ranks generate strided batches; rank 0 writes the one store (equal to one process's).
    The pairs are written under a temporary name and renamed into place when complete; an existing non-empty
    `out` is refused unless `overwrite` (then it is replaced only once the new pairs are complete).
    """
    check_out(out, overwrite)
    opts = opts or SamplingOptions()
    check_pair(gen, tok)
    if not 0.0 <= spec.sigma <= 1.0:
        raise ConfigError(f"--sigma must lie in [0, 1], got {spec.sigma}")
    check_pair_input(spec.pair_input)
    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise DataError(f"--data {spec.data}: pairs store the index of their real image, so they need an image folder "
                        "(or fashion-mnist), not a wds: stream")
    n = len(dataset)
    if spec.num_pairs < 1 or spec.num_pairs > n:
        raise ConfigError(f"--num-pairs must be between 1 and the data set size {n}, got {spec.num_pairs}")
    kind = _generator_kind(gen)
    order = np.random.default_rng(spec.seed).permutation(n)[: spec.num_pairs]
    out = Path(out)
    parts = out.with_name(f".{out.name}.parts")  # under torchrun: the ranks' batches, merged by rank 0
    chunks, labels_all, eval_chunks = [], [], []
    for _, arrays in sharded(parts, _produce(gen, tok, dataset, spec, opts, order, progress)):
        if "eval" in arrays:
            eval_chunks.append(arrays["eval"])
        else:
            chunks.append(arrays["generated"])
            labels_all.append(arrays["labels"])
    if rank_world()[0] != 0:
        finish_parts(parts)
        return out
    n_cls = gen.config.num_classes
    tmp = temp_sibling(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "generated.npy", np.concatenate(chunks))
    np.save(tmp / "index.npy", order.astype(np.int64))
    np.save(tmp / "labels.npy", np.concatenate(labels_all).astype(np.int64))
    if eval_chunks:
        np.save(tmp / "eval_generated.npy", np.concatenate(eval_chunks))
        np.save(tmp / "eval_labels.npy", (np.arange(spec.num_eval) % max(n_cls, 1)).astype(np.int64))
    manifest = {"kind": kind, **asdict(spec), "sampling": asdict(opts),
                "tokenizer_fingerprint": tok.fingerprint(), "generator_fingerprint": gen.fingerprint(),
                "grid": list(gen.config.grid) if hasattr(gen.config, "grid") else None,
                "codebook_size": int(tok.codebook_size)}
    atomic_write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=2).encode())
    fault_point("pairs")
    commit_dir(tmp, out, overwrite)
    finish_parts(parts)
    return out


MANIFEST_KEYS = ("kind", "sigma", "data", "resolution", "channels", "tokenizer_fingerprint")


def _read_manifest(path: Path) -> dict:
    """The pairs manifest, with a `DataError` naming the file if it is not JSON or lacks a required field."""
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: invalid JSON ({err}); rerun `robustok post-train-data`") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path}: not a pairs manifest (a JSON object)")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise DataError(f"{path}: missing field(s) {missing}; rerun `robustok post-train-data`")
    if manifest["kind"] not in ("ar", "diffusion"):
        raise DataError(f"{path}: kind must be 'ar' or 'diffusion', got {manifest['kind']!r}")
    return manifest


def _load_array(path: Path, mmap: bool = False) -> np.ndarray:
    """`np.load` of one pairs array (no pickles), naming the file if it is missing, truncated or corrupt."""
    if not path.is_file():
        raise DataError(f"{path}: not found")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: unreadable array ({err})") from None


class PairStore:
    """A folder written by `make_pairs`; checks that it belongs to the given tokenizer."""

    def __init__(self, directory: str | Path, tokenizer: Any = None):
        self.dir = Path(directory)
        path = self.dir / MANIFEST
        if not path.is_file():
            raise DataError(f"{path}: not found; is {directory} a pairs folder from `robustok post-train-data`?")
        self.manifest = _read_manifest(path)
        self.pair_input = self.manifest.get("pair_input", "ids")  # stores written before the option: ids
        try:
            check_pair_input(self.pair_input, f"{path}: pair_input")
        except ConfigError as err:
            raise DataError(str(err)) from None
        if tokenizer is not None and self.manifest["tokenizer_fingerprint"] != tokenizer.fingerprint():
            raise CheckpointError(f"{path}: pairs were made with tokenizer {self.manifest['tokenizer_fingerprint']}, "
                                  f"not with this tokenizer ({tokenizer.fingerprint()})")
        self.generated = _load_array(self.dir / "generated.npy", mmap=True)
        self.index = _load_array(self.dir / "index.npy")
        self.labels = _load_array(self.dir / "labels.npy")
        if not len(self.generated) == len(self.index) == len(self.labels):
            raise DataError(f"{self.dir}: generated/index/labels lengths differ")
        if not np.issubdtype(self.index.dtype, np.integer) or (len(self.index) and int(self.index.min()) < 0):
            raise DataError(f"{self.dir / 'index.npy'}: real-image indices must be non-negative integers")
        eval_path = self.dir / "eval_generated.npy"
        self.eval_generated = _load_array(eval_path) if eval_path.is_file() else None
        for name, arr in (("generated.npy", self.generated), ("eval_generated.npy", self.eval_generated)):
            if arr is not None and self.kind == "ar" and not np.issubdtype(arr.dtype, np.integer):
                raise DataError(f"{self.dir / name}: token ids must be integers, got dtype {arr.dtype}")

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def sigma(self) -> float:
        return float(self.manifest["sigma"])

    def __len__(self) -> int:
        return len(self.index)

    def tensor(self, arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(arr).astype(np.int64 if self.kind == "ar" else np.float32))


class PairDataset(torch.utils.data.Dataset):
    """(generated tokens/latents, real image, label) items; accepts the loop's `(index, seed)` keys."""

    def __init__(self, store: PairStore, images: Any):
        self.store, self.images = store, images
        top = int(store.index.max()) if len(store) else -1
        if top >= len(images):
            raise DataError(f"{store.dir}: pairs refer to real image {top}, but {store.manifest['data']} has only "
                            f"{len(images)} images")

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, item):
        i = int(item[0] if isinstance(item, tuple) else item)
        x, _ = self.images[int(self.store.index[i])]
        return self.store.tensor(self.store.generated[i]), x, int(self.store.labels[i])
