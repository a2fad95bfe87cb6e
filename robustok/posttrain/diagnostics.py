"""How far are a generator's tokens from real ones? The measurements behind `robustok diagnose`.

Post-training teaches the decoder to map the generator's tokens to realistic images. It can only pay where the
generated tokens differ from real ones in ways a decoder can undo. These statistics measure that difference on
equal numbers of real and generated samples, each next to its real-vs-real floor (two halves of the real set):
unseen tokens and token bigrams, per-position histogram divergence, how many tokens an encode(decode(ids)) round
trip through uint8 images changes, and sharpness / intensity / contrast of the decoded images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robustok.data import to_uint8
from robustok.errors import DataError
from robustok.posttrain.evidence import estimate


def _js(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (bits) of two count vectors."""
    p, q = p / max(p.sum(), 1), q / max(q.sum(), 1)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return (kl(p) + kl(q)) / 2


def _bigrams(ids: np.ndarray, k: int, axis: int) -> np.ndarray:
    a, b = (ids[:, :, :-1], ids[:, :, 1:]) if axis == 2 else (ids[:, :-1, :], ids[:, 1:, :])
    return (a.astype(np.int64) * k + b).ravel()


def token_statistics(real: np.ndarray, generated: np.ndarray, k: int) -> dict:
    """Token-level distance of `generated` (n, h, w) from `real` (2n, h, w): the first half of `real` is the
    reference, the second half (real vs real) gives each statistic's floor at the same sample size."""
    n = len(generated)
    if len(real) < 2 * n:
        raise ValueError(f"need {2 * n} real token grids for {n} generated ones, got {len(real)}")
    ref, other = real[:n], real[n : 2 * n]
    out: dict[str, dict] = {}
    for name, sample in (("generated", generated), ("real_floor", other)):
        seen = np.unique(ref)
        s = {"unseen_tokens": float(1 - np.isin(sample, seen).mean())}
        for axis, label in ((2, "horizontal"), (1, "vertical")):
            s[f"unseen_{label}_bigrams"] = float(1 - np.isin(_bigrams(sample, k, axis), _bigrams(ref, k, axis)).mean())
        flat_r, flat_s = ref.reshape(n, -1), sample.reshape(n, -1)
        s["position_js_bits"] = float(
            np.mean(
                [
                    _js(
                        np.bincount(flat_s[:, p], minlength=k).astype(float),
                        np.bincount(flat_r[:, p], minlength=k).astype(float),
                    )
                    for p in range(flat_r.shape[1])
                ]
            )
        )
        out[name] = s
    return out


def image_statistics(images: torch.Tensor) -> dict:
    """Sharpness (variance of the Laplacian), mean intensity and contrast (pixel sd) of images in [-1, 1]."""
    x = (images.float().clamp(-1, 1) + 1) * 127.5
    gray = x.mean(1, keepdim=True)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    lap = torch.nn.functional.conv2d(gray, kernel)
    return {
        "laplacian_variance": float(lap.flatten(1).var(1).mean()),
        "mean_intensity": float(x.mean()),
        "contrast": float(x.flatten(1).std(1).mean()),
    }


@torch.no_grad()
def roundtrip_change(tokenizer: Any, codes: torch.Tensor, batch: int = 250) -> float:
    """Share of token ids (discrete) or relative L2 change of latents (continuous) after decode -> uint8 image ->
    encode, the authors' pair-making round trip."""
    discrete = tokenizer.is_discrete
    changed, total = 0.0, 0.0
    for lo in range(0, len(codes), batch):
        c = codes[lo : lo + batch]
        img = tokenizer.decode(c) if discrete else tokenizer.decode_latents(c).clamp(-1, 1)
        again_in = to_uint8(img).float() / 127.5 - 1
        if discrete:
            changed += float((tokenizer.encode(again_in) != c).sum())
            total += c.numel()
        else:
            z = tokenizer.encode_latents(again_in)
            changed += float((z - c).flatten(1).norm(dim=1).sum())
            total += float(c.flatten(1).norm(dim=1).sum())
    return changed / max(total, 1e-12)


def latent_statistics(real: torch.Tensor, generated: torch.Tensor) -> dict:
    """Continuous latents: per-channel mean and sd of generated vs real, as a gap in units of the real sd."""
    r, g = real.transpose(0, 1).flatten(1), generated.transpose(0, 1).flatten(1)
    sd = r.std(1).clamp_min(1e-6)
    return {
        "mean_gap_sd": float(((g.mean(1) - r.mean(1)).abs() / sd).mean()),
        "sd_ratio": float((g.std(1) / sd).mean()),
    }


def describe_rows(result: dict) -> list[str]:
    """The table `robustok diagnose` prints: one column per source (real floor, then each CFG scale)."""
    cols = [("real (floor)", result["real"])] + [(f"cfg {c['cfg']:g}", c) for c in result["generated"]]
    keys = [
        k
        for k in (
            "unseen_tokens",
            "unseen_horizontal_bigrams",
            "unseen_vertical_bigrams",
            "position_js_bits",
            "roundtrip_change",
            "mean_gap_sd",
            "sd_ratio",
            "laplacian_variance",
            "mean_intensity",
            "contrast",
            "gfid",
        )
        if any(k in c for _, c in cols)
    ]
    lines = [f"{'':<26}" + "".join(f"{name:>14}" for name, _ in cols)]
    for k in keys:
        lines.append(f"{k:<26}" + "".join(f"{c[k]:>14.4g}" if c.get(k) is not None else f"{'-':>14}" for _, c in cols))
    return lines


@torch.no_grad()
def _encode_real(generator: Any, tokenizer: Any, batches) -> tuple[torch.Tensor, torch.Tensor]:
    codes, images = [], []
    for x, _ in batches:
        codes.append(generator.tokens.encode(tokenizer, x))
        images.append(x)
    return torch.cat(codes), torch.cat(images)


@torch.no_grad()
def diagnose(
    generator: Any,
    tokenizer: Any,
    real_batches,
    num: int,
    cfgs: list[float],
    opts: Any,
    features: Any = None,
    seed: int = 0,
    batch: int = 250,
    data_name: str = "the real data",
) -> dict:
    """All statistics for `num` generated samples per CFG scale against 2 * `num` real images from `real_batches`.

    `opts` are the generator's sampling options (`generator.sampling(...)`); `cfg` is replaced by each scale.
    With `features`, also gFID per scale, the tokenizer's rFID on the same real images, and `estimate`.
    """
    import dataclasses

    from robustok.generator.sampling import balanced_labels, sample_codes
    from robustok.metrics.fid import extract, fid_between

    generator.check_tokenizer(tokenizer)
    opts = generator.sampling(opts)
    discrete = generator.token_kind == "ids"
    real_codes, real_images = _encode_real(generator, tokenizer, real_batches)
    if len(real_codes) < 2 * num:
        raise DataError(f"{data_name}: gave {len(real_codes)} images; diagnose needs 2 x --num-samples = {2 * num}")
    ref_codes, floor_codes = real_codes[:num], real_codes[num : 2 * num]

    def decode(codes: torch.Tensor) -> torch.Tensor:
        return generator.decode(tokenizer, codes)

    real = {"roundtrip_change": roundtrip_change(tokenizer, ref_codes), **image_statistics(real_images[:num])}
    if discrete:
        k = int(tokenizer.codebook_size)
        real.update(token_statistics(real_codes[: 2 * num].numpy(), floor_codes.numpy(), k)["real_floor"])
    else:
        real.update(latent_statistics(ref_codes, floor_codes))
    ref_stats = None
    if features is not None:
        ref_stats = extract((to_uint8(real_images[lo : lo + batch]) for lo in range(0, num, batch)), features, "real")
        recon = extract(
            (to_uint8(decode(ref_codes[lo : lo + batch])) for lo in range(0, num, batch)), features, "recon"
        )
        floor = extract(
            (to_uint8(real_images[num + lo : num + lo + batch]) for lo in range(0, num, batch)), features, "real-2"
        )
        real["rfid"], real["gfid"] = fid_between(recon, ref_stats), fid_between(floor, ref_stats)
    labels = balanced_labels(num, generator.config.num_classes, generator.null_class)
    rows = []
    for cfg in cfgs:
        o, rng = dataclasses.replace(opts, cfg=cfg), torch.Generator().manual_seed(seed)
        codes = torch.cat([sample_codes(generator, labels[lo : lo + batch], o, rng) for lo in range(0, num, batch)])
        images = torch.cat([decode(codes[lo : lo + batch]) for lo in range(0, num, batch)])
        row = {"cfg": cfg, "roundtrip_change": roundtrip_change(tokenizer, codes), **image_statistics(images)}
        if discrete:
            row.update(token_statistics(real_codes[: 2 * num].numpy(), codes.numpy(), k)["generated"])
        else:
            row.update(latent_statistics(ref_codes, codes))
        if ref_stats is not None:
            row["gfid"] = fid_between(
                extract((to_uint8(images[lo : lo + batch]) for lo in range(0, num, batch)), features, "samples"),
                ref_stats,
            )
            row["estimate"] = estimate(row["gfid"], real["rfid"], features.name, generator=generator.kind)
        rows.append(row)
    return {"num_samples": num, "discrete": discrete, "real": real, "generated": rows}
