"""robustok: robust image tokenizers (RobusTok, arXiv 2509.12474) as installable, tested software."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Tokenizer", "TokenizerConfig", "__version__"]


def __getattr__(name: str) -> Any:
    """`robustok.Tokenizer` / `robustok.TokenizerConfig`, imported on first use: `import robustok` alone does not
    load torch, so the command line can choose OpenMP settings first (see `robustok.entry`)."""
    if name in ("Tokenizer", "TokenizerConfig"):
        from robustok import tokenizer

        return getattr(tokenizer, name)
    raise AttributeError(f"module 'robustok' has no attribute {name!r}")
