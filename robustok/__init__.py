"""robustok: robust image tokenizers (RobusTok, arXiv 2509.12474) as installable, tested software."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("robustok")  # the one version string: pyproject.toml's
except PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
    __version__ = "0+unknown"
__all__ = ["Tokenizer", "TokenizerConfig", "load_tokenizer", "evaluate_samples", "evaluate_tokenizer", "__version__"]

_LAZY = {
    "Tokenizer": "robustok.tokenizer",
    "TokenizerConfig": "robustok.tokenizer",
    "load_tokenizer": "robustok.tokenizer.loading",
    "evaluate_samples": "robustok.evaluation",
    "evaluate_tokenizer": "robustok.evaluation",
}


def __getattr__(name: str) -> Any:
    """`robustok.Tokenizer`, `robustok.load_tokenizer`, `robustok.evaluate_samples`, ..., imported on first use:
    `import robustok` alone does not load torch, so the command line can choose OpenMP settings first (see
    `robustok.entry`)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'robustok' has no attribute {name!r}")
