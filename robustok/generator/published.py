"""Sampling settings as each project publishes them for its released generators, selectable by name
(`robustok sample ... --preset rar-b`), and the numbers they report.

Sources: LlamaGen (FoundationVision/LlamaGen @ ce98ec4: README table, GETTING_STARTED.md sampling commands,
`autoregressive/sample/sample_c2i_ddp.py`: random labels, top-k 0, top-p 1, temperature 1, constant CFG,
384-px samples resized bicubically to 256); RAR (bytedance/1d-tokenizer @ 942a96f README_RAR.md,
`sample_imagenet_rar.py`: 50 images per class, cosine-power CFG schedule); the RobusTok release
(qiuk2/RobusTok @ c4c6760 README: RAR-B/L on the RobusTok tokenizer, before and after its post-training).
All FIDs: 50,000 samples against ADM's `VIRTUAL_imagenet256_labeled.npz` with ADM's evaluator.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

from robustok.errors import ConfigError
from robustok.validation import bounded


@dataclass(frozen=True)
class PublishedSampling:
    """One released generator's published sampling settings and result."""

    kind: str  # robustok generator kind (convert kind: see `convert`)
    convert: str  # `robustok convert` kind of the generator file
    tokenizer: str  # `robustok convert` kind of its tokenizer
    weights: str  # released file name
    image_size: int  # the size it samples at (convert the tokenizer with --image-size)
    cfg: float
    cfg_schedule: str  # constant | power
    cfg_power: float
    temperature: float
    top_k: int  # 0: off
    top_p: float  # 1: off
    labels: str  # balanced (equal counts per class) | random (uniform draws)
    resize: int  # 0, or the size the samples are resized to (bicubic) before FID
    fid: float  # published FID-50k
    fid_post: Optional[float] = None  # after RobusTok post-training of the tokenizer's decoder
    dims: tuple[int, int, int] = (0, 0, 0)  # (width, depth, heads): the released architecture


def _llamagen(weights: str, size: int, cfg: float, fid: float, dims: tuple) -> PublishedSampling:
    return PublishedSampling(
        "llamagen-gpt",
        "llamagen-gpt",
        "llamagen-vq16",
        weights,
        size,
        cfg,
        "constant",
        1.0,
        1.0,
        0,
        1.0,
        "random",
        256 if size != 256 else 0,
        fid,
        dims=dims,
    )


def _rar(
    convert: str,
    tokenizer: str,
    weights: str,
    temp: float,
    cfg: float,
    power: float,
    fid: float,
    dims: tuple,
    fid_post: Optional[float] = None,
) -> PublishedSampling:
    return PublishedSampling(
        "rar", convert, tokenizer, weights, 256, cfg, "power", power, temp, 0, 1.0, "balanced", 0, fid, fid_post, dims
    )


PRESETS: dict[str, PublishedSampling] = {
    "llamagen-b": _llamagen("c2i_B_256.pt", 256, 2.0, 5.46, (768, 12, 12)),
    "llamagen-b-384": _llamagen("c2i_B_384.pt", 384, 2.0, 6.09, (768, 12, 12)),
    "llamagen-l": _llamagen("c2i_L_256.pt", 256, 2.0, 3.80, (1024, 24, 16)),
    "llamagen-l-384": _llamagen("c2i_L_384.pt", 384, 2.0, 3.07, (1024, 24, 16)),
    "llamagen-xl-384": _llamagen("c2i_XL_384.pt", 384, 1.75, 2.62, (1280, 36, 20)),
    "llamagen-xxl-384": _llamagen("c2i_XXL_384.pt", 384, 1.75, 2.34, (1536, 48, 24)),
    "llamagen-3b-384": _llamagen("c2i_3B_384.pt", 384, 1.65, 2.18, (3200, 24, 32)),
    "rar-b": _rar("rar", "maskgit-vqgan", "rar_b.bin", 1.0, 16.0, 2.75, 1.95, (768, 24, 16)),
    "rar-l": _rar("rar", "maskgit-vqgan", "rar_l.bin", 1.02, 15.5, 2.5, 1.70, (1024, 24, 16)),
    "rar-xl": _rar("rar", "maskgit-vqgan", "rar_xl.bin", 1.02, 6.9, 1.5, 1.50, (1280, 32, 16)),
    "rar-xxl": _rar("rar", "maskgit-vqgan", "rar_xxl.bin", 1.02, 8.0, 1.2, 1.48, (1408, 40, 16)),
    "robustok-rar-b": _rar("robustok-rar", "robustok-release", "rar_b.bin", 1.02, 6.0, 1.15, 1.83, (768, 24, 16), 1.60),
    "robustok-rar-l": _rar(
        "robustok-rar", "robustok-release", "rar_l.bin", 1.04, 6.75, 1.01, 1.60, (1024, 24, 16), 1.36
    ),
}

# the sampling options a preset sets (fields of `DrawOptions`)
SAMPLING_FIELDS = ("cfg", "cfg_schedule", "cfg_power", "temperature", "top_k", "top_p")


def preset(name: str) -> PublishedSampling:
    if name not in PRESETS:
        raise ConfigError(f"--preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def add_preset_args(p: argparse.ArgumentParser, images: bool = True) -> None:
    """`--preset NAME` (and with `images`, `--labels`, `--resize`) on a parser that has the sampling flags
    (`robustok.commands._sampling_args`). Flags given explicitly override the preset's values."""
    p.add_argument(
        "--preset",
        default=None,
        choices=sorted(PRESETS),
        help="a released generator's published sampling settings (docs/reproduce.md); explicit "
        "sampling flags override them",
    )
    if images:
        p.add_argument(
            "--labels",
            default=argparse.SUPPRESS,
            choices=["balanced", "random"],
            help="class labels: equal counts per class (RAR), or uniform random draws (LlamaGen) "
            "(default: the preset's, else balanced)",
        )
        p.add_argument(
            "--resize",
            type=bounded(int, ">=0"),
            default=argparse.SUPPRESS,
            help="resize the decoded images to this size (bicubic) before saving, e.g. LlamaGen's "
            "384 -> 256 (default: the preset's, else 0: off)",
        )


def apply_preset(args: argparse.Namespace, generator_kind: str) -> Optional[PublishedSampling]:
    """Set the sampling flags the user did not give (absent from `args`) to `--preset`'s values; refuse a preset
    of another generator kind. Returns the preset (None without one)."""
    if not args.preset:
        return None
    chosen = preset(args.preset)
    if chosen.kind != generator_kind:
        raise ConfigError(f"--preset {args.preset} is for {chosen.kind} generators, this one is a {generator_kind}")
    given = vars(args)
    for name in SAMPLING_FIELDS:
        given.setdefault(name, getattr(chosen, name))
    return chosen


def image_options(args: argparse.Namespace, chosen: Optional[PublishedSampling]) -> tuple[str, int]:
    """(labels, resize) of `sample`: the flags if given, else the preset's, else ("balanced", 0)."""
    given = vars(args)
    return (
        given.get("labels", chosen.labels if chosen else "balanced"),
        given.get("resize", chosen.resize if chosen else 0),
    )
