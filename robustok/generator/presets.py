"""Named model sizes: `(dim, depth, heads, mlp_ratio)` for the AR and diffusion transformers."""

from __future__ import annotations

from robustok.errors import ConfigError

# RAR sizes follow RAR's configs (hidden / layers / heads / MLP): B 768/24/16/3072, L 1024/24/16/4096,
# XL 1280/32/16/5120. "tiny" and "small" are CPU-demo sizes.
AR_PRESETS: dict[str, tuple[int, int, int, float]] = {
    "tiny": (128, 4, 4, 4.0),
    "small": (256, 6, 8, 4.0),
    "rar-b": (768, 24, 16, 4.0),
    "rar-l": (1024, 24, 16, 4.0),
    "rar-xl": (1280, 32, 16, 4.0),
}

# SiT/DiT sizes: B 768/12/12, L 1024/24/16, XL 1152/28/16 (MLP ratio 4).
DIFFUSION_PRESETS: dict[str, tuple[int, int, int, float]] = {
    "tiny": (128, 4, 4, 4.0),
    "small": (256, 6, 8, 4.0),
    "sit-b": (768, 12, 12, 4.0),
    "sit-l": (1024, 24, 16, 4.0),
    "sit-xl": (1152, 28, 16, 4.0),
}

# masked generator (issue 11 part 6): MaskGIT-style bidirectional transformer; CPU-demo sizes like the AR's.
MASKED_PRESETS: dict[str, tuple[int, int, int, float]] = {
    "tiny": (128, 4, 4, 4.0),
    "small": (256, 6, 8, 4.0),
}


def resolve(table: dict[str, tuple[int, int, int, float]], name: str, key: str = "model.preset"):
    """The `(dim, depth, heads, mlp_ratio)` of preset `name`; `ConfigError` naming `key` if unknown."""
    if name not in table:
        raise ConfigError(f"{key}: unknown preset {name!r}; choose one of {sorted(table)}")
    return table[name]
