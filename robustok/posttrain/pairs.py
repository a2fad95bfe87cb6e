"""Paired data for post-training: generated tokens (or latents), each paired with the index of its real image.

Each generator defines its pairs (`TokenGenerator.paired`): AR teacher forcing with preservation ratio sigma (each
real token kept i.i.d. with probability sigma during raster sampling, the chosen token fed back), diffusion
SDEdit (the real latent noised to t = 1 - sigma and denoised). `pair_input` (in the manifest) says what the decoder
is trained on: "ids" (ours, the default) stores the generated token ids / latents directly; "roundtrip" (the
authors') decodes them, rounds to uint8 (a PNG) and re-encodes, storing encode(decode(ids)). The held-out samples
are always plain tokens: at generation time the decoder sees the generator's own tokens.

The folder layout (a token store plus the real-image index and a held-out store) is `robustok.tokens.pairs`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from tqdm import tqdm

from robustok.data.loader import image_batches
from robustok.distributed import rank_world
from robustok.distributed_outputs import mine, sharded
from robustok.errors import ConfigError, DataError
from robustok.generator.sampling import SamplingOptions, in_precision, sample_codes
from robustok.outputs import check_out, staged_output
from robustok.seeding import pair_batch_seed, seeded_generator
from robustok.tokens.pairs import PAIR_INPUTS, check_pair_input, write_pairs
from robustok.train.faults import fault_point


@dataclass
class PairsSpec:
    sigma: float
    num_pairs: int
    num_eval: int = 1000  # free samples kept for the gFID proxy
    data: str = "fashion-mnist:train"
    resolution: int = 32
    channels: int = 1
    seed: int = 0
    batch_size: int = 100
    pair_input: str = "ids"  # a name in PAIR_INPUTS: ids (ours) | roundtrip (the authors')


@torch.no_grad()
def generate_batch(
    gen: Any,
    tok: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    sigma: float,
    opts: SamplingOptions,
    sample_rng: torch.Generator,
    mask_rng: torch.Generator,
) -> torch.Tensor:
    """Generated tokens (B, h, w) or latents (B, C, h, w) paired with `images` at preservation ratio sigma.

    The keep-mask draws use `mask_rng`, sampling uses `sample_rng`, so sigma = 0 gives exactly the free samples
    of the same `sample_rng` state and sigma = 1 gives exactly the real tokens.
    """
    if not 0.0 <= sigma <= 1.0:
        raise ConfigError(f"sigma must lie in [0, 1], got {sigma}")
    real = gen.tokens.encode(tok, images)
    return in_precision(gen, opts, lambda: gen.paired(real, labels, sigma, opts, sample_rng, mask_rng))


def _produce(
    gen: Any,
    tok: Any,
    dataset: Any,
    spec: PairsSpec,
    opts: SamplingOptions,
    order: np.ndarray,
    progress: bool,
    workers: int = 0,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """This rank's batches (strided; pair batches first, then held-out batches), each with its own seeds: the
    same arrays whatever the number of ranks (and of `workers`, the processes reading the real images)."""
    kind, codebook = gen.tokens, int(tok.codebook_size)
    device = next(gen.parameters()).device
    n_cls = gen.config.num_classes
    n_pair_batches = -(-spec.num_pairs // spec.batch_size)
    n_batches = n_pair_batches + -(-spec.num_eval // spec.batch_size)
    rank, world = rank_world()
    size = [min(spec.batch_size, spec.num_pairs - b * spec.batch_size) for b in range(n_pair_batches)]
    size += [min(spec.batch_size, spec.num_eval - e * spec.batch_size) for e in range(n_batches - n_pair_batches)]
    bar = tqdm(
        total=sum(size[b] for b in mine(n_batches, rank, world)),
        disable=not progress or rank != 0,
        desc=f"pairs sigma={spec.sigma}",
    )
    real = image_batches(
        dataset,
        batches=[
            order[b * spec.batch_size : (b + 1) * spec.batch_size]
            for b in mine(n_batches, rank, world)
            if b < n_pair_batches
        ],
        workers=workers,
        device=device,
    )
    for b in mine(n_batches, rank, world):
        bar.update(size[b])
        if b < n_pair_batches:
            images, labels = next(real)
            if (labels < 0).any() and n_cls > 0:
                raise DataError(f"{spec.data}: unlabeled images cannot condition a class-conditional generator")
            labels = labels.clamp_min(0) if n_cls > 0 else torch.full_like(labels, n_cls)
            sample_rng = seeded_generator(pair_batch_seed(spec.seed, b, "sample"), device)
            mask_rng = seeded_generator(pair_batch_seed(spec.seed, b, "mask"), device)
            gen_out = generate_batch(gen, tok, images, labels, spec.sigma, opts, sample_rng, mask_rng)
            gen_out = PAIR_INPUTS[spec.pair_input](tok, gen_out, kind.name)
            yield b, {"generated": kind.to_array(gen_out, codebook), "labels": labels.cpu().numpy()}
        else:
            e = b - n_pair_batches
            lo = e * spec.batch_size
            m = min(spec.batch_size, spec.num_eval - lo)
            lab = (torch.arange(lo, lo + m) % n_cls if n_cls > 0 else torch.full((m,), n_cls)).to(device)
            rng = seeded_generator(pair_batch_seed(spec.seed, e, "held_out"), device)
            yield b, {"eval": kind.to_array(sample_codes(gen, lab, opts, rng), codebook)}
    bar.close()


def make_pairs(
    gen: Any,
    tok: Any,
    dataset: Any,
    spec: PairsSpec,
    out: str | Path,
    opts: Optional[SamplingOptions] = None,
    progress: bool = True,
    overwrite: bool = False,
    workers: int = 0,
) -> Path:
    """Generate `spec.num_pairs` pairs (+ `spec.num_eval` held-out free samples) into the folder `out`.

    Under `torchrun` the ranks generate strided batches; rank 0 writes the one store (equal to one process's).
    The pairs are written under a temporary name and renamed into place when complete; an existing non-empty
    `out` is refused unless `overwrite` (then it is replaced only once the new pairs are complete).
    `workers` processes read the real images while the generator samples (the pairs are the same for any number).
    """
    from robustok.train.precision import resolve_precision

    check_out(out, overwrite)
    opts = gen.sampling(opts or SamplingOptions())  # the generator kind's own options class
    opts.check()
    gen.check_tokenizer(tok)
    # the manifest records the precision the pairs were sampled in: bf16 | fp32
    opts = replace(opts, precision=resolve_precision(opts.precision, next(gen.parameters()).device)[0])
    if not 0.0 <= spec.sigma <= 1.0:
        raise ConfigError(f"--sigma must lie in [0, 1], got {spec.sigma}")
    check_pair_input(spec.pair_input)
    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise DataError(
            f"--data {spec.data}: pairs store the index of their real image, so they need an image folder "
            "(or fashion-mnist), not a wds: stream"
        )
    n = len(dataset)
    if spec.num_pairs < 1 or spec.num_pairs > n:
        raise ConfigError(f"--num-pairs must be between 1 and the data set size {n}, got {spec.num_pairs}")
    order = np.random.default_rng(spec.seed).permutation(n)[: spec.num_pairs]
    out = Path(out)
    with staged_output(out, overwrite) as staged:
        chunks, labels_all, eval_chunks = [], [], []
        for _, arrays in sharded(staged.parts, _produce(gen, tok, dataset, spec, opts, order, progress, workers)):
            if "eval" in arrays:  # under torchrun: the ranks' batches, merged by rank 0
                eval_chunks.append(arrays["eval"])
            else:
                chunks.append(arrays["generated"])
                labels_all.append(arrays["labels"])
        if rank_world()[0] == 0:
            n_cls = gen.config.num_classes
            held_out = np.concatenate(eval_chunks) if eval_chunks else None
            write_pairs(
                staged.build,
                gen.token_kind,
                np.concatenate(chunks),
                np.concatenate(labels_all),
                order,
                held_out,
                np.arange(spec.num_eval) % max(n_cls, 1),
                tok.fingerprint(),
                int(tok.codebook_size),
                n_cls,
                {
                    **asdict(spec),
                    "sampling": asdict(opts),
                    "generator": gen.kind,
                    "generator_fingerprint": gen.fingerprint(),
                },
            )
            fault_point("pairs", staged.build)
            staged.commit()
    return out
