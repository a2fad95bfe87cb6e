"""Checks at the boundary: numeric ranges of config fields and CLI options, writable output paths, and a note
when a data set holds fewer images than `--num-images` asked for (`note_fewer`).

Config dataclasses declare ranges as a class attribute `BOUNDS = {"field": "<rule>"}` and data-spec fields as
`DATA_SPECS = ("field", ...)` (those also allowed to be a `.npz` in `NPZ_SPECS`); `check_bounds` walks a loaded
config (nested dataclasses included) and raises
`ConfigError` naming the dotted key and the problem (the rule and the value, or why the spec is not valid).
A rule is `>=1`, `>0`, `<=1`, `[0,1]`, `[0,1)`, `(0,1]`, ... (ends included with brackets, excluded with
parentheses). CLI options use the same rules through `bounded(int, ">=1")` as their argparse `type`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from robustok.errors import ConfigError

_CMP = re.compile(r"^(>=|>|<=|<)\s*(-?[\d.e+-]+)$")
_INTERVAL = re.compile(r"^([\[(])\s*(-?[\d.e+-]+)\s*,\s*(-?[\d.e+-]+|inf)\s*([\])])$")


def in_range(value: float, rule: str) -> bool:
    """True if `value` satisfies `rule` (see the module docstring); NaN never does."""
    if isinstance(value, float) and math.isnan(value):
        return False
    m = _CMP.match(rule)
    if m:
        op, bound = m.group(1), float(m.group(2))
        return {">=": value >= bound, ">": value > bound, "<=": value <= bound, "<": value < bound}[op]
    m = _INTERVAL.match(rule)
    if not m:
        raise ValueError(f"malformed range rule {rule!r}")
    lo_br, lo, hi, hi_br = m.group(1), float(m.group(2)), float(m.group(3)), m.group(4)
    return ((value >= lo) if lo_br == "[" else (value > lo)) and ((value <= hi) if hi_br == "]" else (value < hi))


def describe_rule(rule: str) -> str:
    """`>=1` -> `>= 1`; `[0,1)` -> `in [0, 1)`."""
    m = _CMP.match(rule)
    return f"{m.group(1)} {m.group(2)}" if m else "in " + rule.replace(",", ", ")


def check_value(key: str, value: Any, rule: str) -> None:
    """Raise `ConfigError` naming `key` if `value` is not a number satisfying `rule`."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not in_range(value, rule):
        raise ConfigError(f"{key} must be {describe_rule(rule)}, got {value!r}")


def check_bounds(cfg: Any, prefix: str = "") -> None:
    """Check every field of dataclass `cfg` (recursively) against its class's `BOUNDS`."""
    if not dataclasses.is_dataclass(cfg):
        return
    rules = getattr(type(cfg), "BOUNDS", {})
    specs = getattr(type(cfg), "DATA_SPECS", ())
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_bounds(value, key + ".")
        elif f.name in specs and value:
            from robustok.data.spec import parse_data_spec
            from robustok.errors import DataError

            try:
                parse_data_spec(value, allow_npz=f.name in getattr(type(cfg), "NPZ_SPECS", ()), what=key)
            except DataError as err:
                raise ConfigError(f"{key}: {err}") from None
        elif f.name in rules:
            if isinstance(value, (list, tuple)):
                for i, v in enumerate(value):
                    check_value(f"{key}[{i}]", v, rules[f.name])
            else:
                check_value(key, value, rules[f.name])


def bounded(cast: Callable[[str], Any], rule: str) -> Callable[[str], Any]:
    """An argparse `type` that parses with `cast` and rejects values outside `rule` (argparse names the option)."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {cast.__name__}, got {text!r}") from None
        if not in_range(value, rule):
            raise argparse.ArgumentTypeError(f"must be {describe_rule(rule)}, got {text}")
        return value

    parse.__name__ = cast.__name__
    return parse


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_dir(directory: Path, what: str, path: Path) -> None:
    """Create and remove a temp file in `directory` (os.access is meaningless for root or read-only mounts)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".robustok-write-check.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise ConfigError(f"{what} {path}: cannot write in {directory} ({err.strerror or err})") from None


def check_writable(path: str | Path | None, what: str, kind: str = "file") -> None:
    """Fail early (before any computation) if output `path` cannot be created.

    kind="file": the path must not be a folder and its nearest existing parent must be a writable folder;
    kind="dir": the path must be a folder or not exist yet, under a writable folder. Nothing is left on disk.
    """
    if path is None or path == "":
        return
    p = Path(path)
    if kind == "dir" and p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {p}: exists and is not a folder")
    if kind == "file" and p.is_dir():
        raise ConfigError(f"{what} {p}: is a folder, expected a file path")
    anchor = _existing_ancestor(p if kind == "dir" else p.parent)
    if not anchor.is_dir():
        raise ConfigError(f"{what} {p}: cannot be created because {anchor} is a file, not a folder")
    _probe_dir(p if kind == "dir" and p.is_dir() else anchor, what, p)


def note_fewer(asked: int | None, got: int, what: str) -> None:
    """Print a note (stderr) when `--num-images asked` exceeds the `got` images `what` holds (they all were used)."""
    import sys

    if asked is not None and got < asked:
        print(f"note: --num-images {asked} exceeds the {got} images of {what}; all {got} were used", file=sys.stderr)
