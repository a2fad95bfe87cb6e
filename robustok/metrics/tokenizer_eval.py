"""One pass over an evaluation set: PSNR, SSIM, LPIPS, codebook usage, rFID and pFID for a tokenizer.

Each image is encoded once; its features (the FID reference), the clean reconstruction and the decoded
perturbed reconstructions of all pFID cells are computed from that one encoding. Under torch.distributed each
rank takes its shard and statistics are gathered once at the end.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Optional, cast

import numpy as np
import torch

from robustok.data import to_uint8
from robustok.distributed import gather_stats, rank_world, sum_all
from robustok.errors import ConfigError, DataError
from robustok.metrics.features import FeatureNet
from robustok.metrics.frechet import RunningStats, frechet_distance
from robustok.metrics.pfid import PFIDConfig
from robustok.metrics.reconstruction import code_histogram, psnr, ssim, usage_and_perplexity
from robustok.seeding import pfid_cell_seed, seeded_generator

KNOWN = ("psnr", "ssim", "lpips", "rfid", "pfid", "usage")


def parse_metrics(text: str) -> list[str]:
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in KNOWN]
    if bad or not names:
        raise ConfigError(f"--metrics: unknown metric(s) {bad or text!r}; choose from {', '.join(KNOWN)}")
    return names


def _cell_generator(seed: int, cell: int, rank: int, device: torch.device) -> torch.Generator:
    return seeded_generator(pfid_cell_seed(seed, cell, rank), device)


@torch.no_grad()
def evaluate_tokenizer(
    tok,
    batches: Iterable,
    metrics: list[str],
    features: FeatureNet | None = None,
    pfid: PFIDConfig | None = None,
    lpips: Optional[Callable[..., torch.Tensor]] = None,
    log: Optional[Callable[[str], Any]] = None,
) -> dict:
    """Evaluate `tok` on `batches` of (images float [-1,1], labels); returns the JSON-ready result dict."""
    from robustok.tokenizer.perturbation import perturb_ids

    metrics = list(metrics)
    need_fid = "rfid" in metrics or "pfid" in metrics
    if need_fid and features is None:
        raise ConfigError("rfid/pfid need a feature network (--features)")
    if ("pfid" in metrics or "usage" in metrics) and not tok.is_discrete:
        which = "pFID" if "pfid" in metrics else "codebook usage"
        raise ConfigError(
            f"{which} needs a discrete tokenizer with a codebook (token ids to perturb); this "
            "tokenizer is continuous. Drop 'pfid'/'usage' from --metrics"
        )
    if "lpips" in metrics and lpips is None:
        raise ConfigError("lpips needs LPIPS weights (--lpips-vgg and --lpips-heads)")
    rank, _ = rank_world()
    net = cast(FeatureNet, features)  # checked above: present whenever an FID is computed
    pfid = pfid or PFIDConfig()
    discrete = tok.is_discrete
    codebook = tok.codebook.detach() if discrete else torch.empty(0)  # only read for pFID cells (discrete)
    k = tok.codebook_size if discrete else 0
    cells = pfid.cells(k) if "pfid" in metrics else []
    device = _device(tok)
    gens = [_cell_generator(pfid.seed, i, rank, device) for i in range(len(cells))]
    ref, rec = RunningStats(), RunningStats()
    cell_stats = [RunningStats() for _ in cells]
    counts = torch.zeros(max(k, 1), dtype=torch.float64)
    sums = {"psnr": 0.0, "ssim": 0.0, "lpips": 0.0, "n": 0.0, "psnr_inf": 0.0}
    start = time.time()
    for x, _ in batches:
        x = x.to(device)
        if not torch.isfinite(x).all():
            raise DataError("evaluation images contain NaN or inf")
        x_u8 = to_uint8(x)
        if discrete:
            z = tok.encode_latents(x) if pfid.neighbours == "latent" and cells else None
            ids = tok.encode(x)
            recon = tok.decode(ids)
            counts += code_histogram(ids, k)
        else:
            recon = tok.reconstruct(x)
        r_u8 = to_uint8(recon)
        if "psnr" in metrics:
            p = psnr(r_u8, x_u8)
            sums["psnr_inf"] += float(torch.isinf(p).sum())
            sums["psnr"] += float(p[torch.isfinite(p)].sum())
        if "ssim" in metrics:
            sums["ssim"] += float(ssim(r_u8, x_u8).sum())
        if "lpips" in metrics:
            sums["lpips"] += float(cast(Callable, lpips)(recon.float(), x.float()).sum())
        sums["n"] += x.shape[0]
        if need_fid:
            ref.update(net(x_u8.cpu()))
            rec.update(net(r_u8.cpu()))
        for i, (alpha, delta) in enumerate(cells):
            pert = perturb_ids(ids, codebook, alpha, delta, generator=gens[i], z=z, neighbours=pfid.neighbours)
            cell_stats[i].update(net(to_uint8(tok.decode(pert)).cpu()))
        if log:
            log(f"  {int(sums['n'])} images ({time.time() - start:.0f}s)")
    sums = sum_all(sums)
    n = int(sums["n"])
    if n == 0:
        raise DataError("evaluation set is empty")
    out: dict = {"num_images": n}
    if "psnr" in metrics:
        finite = n - int(sums["psnr_inf"])
        out["psnr"] = sums["psnr"] / finite if finite else float("inf")
    if "ssim" in metrics:
        out["ssim"] = sums["ssim"] / n
    if "lpips" in metrics:
        out["lpips"] = sums["lpips"] / n
    if "usage" in metrics:
        total = _sum_counts(counts)
        out["codebook_usage"], out["perplexity"] = usage_and_perplexity(total)
        out["codebook_size"] = k
    if need_fid:
        ref_g = gather_stats(ref).finalize("evaluation images")
        out["features"] = net.name
        if "rfid" in metrics:
            out["rfid"] = frechet_distance(gather_stats(rec).finalize("reconstructions"), ref_g)
        if cells:
            grid = []
            for (alpha, delta), st in zip(cells, cell_stats):
                fid = frechet_distance(gather_stats(st).finalize("perturbed reconstructions"), ref_g)
                grid.append({"alpha": alpha, "delta": delta, "fid": fid})
            out["pfid"] = float(np.mean([g["fid"] for g in grid]))
            out["pfid_grid"] = grid
            out["pfid_neighbours"] = pfid.neighbours
            out["pfid_seed"] = pfid.seed
    return out


def _sum_counts(counts: torch.Tensor) -> torch.Tensor:
    """Sum code histograms over ranks."""
    from robustok.distributed import gather_objects

    return torch.stack([torch.as_tensor(c) for c in gather_objects(counts.cpu())]).sum(0)


def _device(tok) -> torch.device:
    """The device of the tokenizer's first parameter or buffer (cpu if it has none)."""
    for t in (*tok.parameters(), *tok.buffers()):
        return t.device
    return torch.device("cpu")
