"""Plug-ins from outside the package: modules named in `ROBUSTOK_PLUGINS` are imported before a command runs.

    ROBUSTOK_PLUGINS=my_generator,/path/to/my_features.py robustok train-generator ... model.kind=my-kind

Each entry is an importable module name or a `.py` file; importing it runs its `register...` calls (a generator,
a tokenizer backbone, a data set kind, a feature network: see docs/extending.md). torchrun workers inherit the
variable, so every rank registers the same entries.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from robustok.errors import ConfigError

ENV = "ROBUSTOK_PLUGINS"


def load_plugins(value: str | None = None) -> list[str]:
    """Import every plug-in in `value` (default: the environment variable); returns the imported module names."""
    value = os.environ.get(ENV, "") if value is None else value
    names = []
    for entry in (e.strip() for e in value.split(",")):
        if entry:
            names.append(_import(entry))
    return names


def _import(entry: str) -> str:
    if entry.endswith(".py"):
        path = Path(entry)
        if not path.is_file():
            raise ConfigError(f"{ENV}: plug-in file {path} not found")
        name = f"robustok_plugin_{path.stem}"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ConfigError(f"{ENV}: cannot load plug-in file {path} as a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception:
                del sys.modules[name]
                raise
        return name
    try:
        importlib.import_module(entry)
    except ModuleNotFoundError as err:
        if err.name != entry.split(".")[0] and err.name != entry:
            raise
        raise ConfigError(f"{ENV}: cannot import plug-in module {entry!r} (not on PYTHONPATH?)") from None
    return entry
