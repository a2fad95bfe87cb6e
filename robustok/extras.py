"""Optional dependencies (`pip install 'robustok[EXTRA]'`): import one, or fail with a line naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from robustok.errors import RobustokError

EXTRAS = {"tensorboard": "tensorboard", "webdataset": "wds", "matplotlib": "plots", "huggingface_hub": "hub"}


class MissingExtraError(RobustokError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, what: str) -> ModuleType:
    """Import `module` (e.g. "matplotlib.pyplot") for `what` (e.g. "the demo's figures"), or raise
    `MissingExtraError`: "the demo's figures: matplotlib is not installed (pip install 'robustok[plots]')"."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if err.name is not None and err.name.split(".")[0] != top:
            raise  # the package is there but one of its own imports failed
        raise MissingExtraError(
            f"{what}: {top} is not installed (pip install 'robustok[{EXTRAS.get(top, top)}]')"
        ) from None
