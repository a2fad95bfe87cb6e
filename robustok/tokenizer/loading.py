"""Load any tokenizer directory: robustok's own `Tokenizer` or a registered adapter's, by `config.json`'s class.

Tokenizer classes register themselves (`register_tokenizer_class`, usually as a class decorator where the class
is defined) in `TOKENIZER_CLASSES`. Plug-in packages are registered in `PLUGINS` by module name and imported on
the first load, so the
core never imports an adapter module itself; a package outside robustok adds its module with `register_plugin`
(or registers its classes directly).

    >>> import robustok
    >>> tok = robustok.load_tokenizer("runs/tok/tokenizer")          # doctest: +SKIP
    >>> vae = robustok.load_tokenizer("weights/sd-vae-converted")    # an adapter's directory  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch

from robustok.errors import CheckpointError
from robustok.hf_hub import resolve_weights
from robustok.hub import CONFIG_NAME, load_by_class
from robustok.registry import Registry

if TYPE_CHECKING:
    from robustok.tokenizer.base import TokenizerBase

C = TypeVar("C", bound=type)

TOKENIZER_CLASSES: Registry[type] = Registry("tokenizer class", "config.json class")
PLUGINS: Registry[str] = Registry("tokenizer plug-in module", "register_plugin")  # imported on first use, in order
for _module in ("robustok.tokenizer.model", "robustok.adapters"):
    PLUGINS.register(_module, _module)
_imported: set[str] = set()


def register_tokenizer_class(cls: C) -> C:
    """Make `load_tokenizer` accept directories whose `config.json` names `cls` (usable as a decorator; a class of
    the same name registered again replaces the old one, as a reloaded module's does)."""
    TOKENIZER_CLASSES.unregister(cls.__name__)
    return TOKENIZER_CLASSES.register(cls.__name__, cls)


def register_plugin(module: str) -> None:
    """Import `module` (which registers its tokenizer classes) before the next load."""
    if module not in PLUGINS:
        PLUGINS.register(module, module)


def tokenizer_classes() -> dict[str, type]:
    """Class name (as written to config.json) -> class, for every tokenizer `load_tokenizer` accepts."""
    for module in PLUGINS.values():
        if module not in _imported:
            importlib.import_module(module)
            _imported.add(module)
    return dict(TOKENIZER_CLASSES.items())


def load_tokenizer(path: str | Path, map_location: str | torch.device = "cpu") -> "TokenizerBase":
    """Load any robustok tokenizer directory (ours or an adapter's, or a Hub reference `hf://<org>/<repo>[/<dir>]`),
    in eval mode."""
    path = resolve_weights(path, directory=True)
    if path.is_file():
        raise CheckpointError(
            f"{path}: is a file; a tokenizer is a directory with {CONFIG_NAME} and "
            "model.safetensors (convert original weight files with "
            "robustok.adapters.load_external(kind, file).save_pretrained(dir))"
        )
    return load_by_class(path, tokenizer_classes(), "tokenizer", map_location).eval()
