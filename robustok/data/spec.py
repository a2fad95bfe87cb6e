"""The one parser of data spec strings, used by training/evaluation data and by FID image sources.

Valid specs: `fashion-mnist:train`, `fashion-mnist:test` (exact names), `wds:<shard pattern>`, a folder path and,
where the caller allows it, a samples/statistics `.npz` file. Anything else is an error that lists these forms,
never a silent fallback (a folder named `fashion-mnist-rgb` is that folder; `fashion-mnist-test` is an error).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from robustok.errors import DataError

NAMED: dict[str, tuple[str, str]] = {
    "fashion-mnist:train": ("fashion-mnist", "train"),
    "fashion-mnist:test": ("fashion-mnist", "test"),
}


def register_named_spec(name: str, kind: str, value: str) -> None:
    """Make the exact spec `name` parse as `DataSpec(kind, value)` (`kind`: a key of
    `robustok.data.datasets.DATASET_KINDS`, e.g. a data set added by a plug-in)."""
    NAMED[name] = (kind, value)


@dataclass(frozen=True)
class DataSpec:
    kind: str  # "fashion-mnist" | "wds" | "folder" | "npz" | a registered kind
    value: str  # the split, the shard pattern or the path

    @property
    def local_path(self) -> Optional[Path]:
        """The file or folder this spec reads on the local file system (a shard pattern: the folder of its
        shards), or None (an embedded data set, a URL)."""
        if self.kind in ("folder", "npz"):
            return Path(self.value)
        if self.kind == "wds" and "://" not in self.value:
            return Path(self.value).parent if "{" in self.value else Path(self.value)
        return None


def valid_forms(allow_npz: bool = False) -> str:
    forms = list(NAMED) + ["wds:<shard pattern>", "a folder of images"]
    if allow_npz:
        forms.append("a samples/statistics .npz file")
    return ", ".join(forms)


def parse_data_spec(spec: str, allow_npz: bool = False, what: str = "data spec") -> DataSpec:
    """Classify `spec`; raise `DataError` naming it (and the valid forms) if it is none of them."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"{what} is empty; expected one of: {valid_forms(allow_npz)}")
    if spec in NAMED:
        return DataSpec(*NAMED[spec])
    if spec.startswith("wds:"):
        if not spec[4:].strip():
            raise DataError(f"{what} {spec!r}: no shard pattern after 'wds:'")
        return DataSpec("wds", spec[4:])
    path = Path(spec)
    if path.is_dir():
        return DataSpec("folder", spec)
    if allow_npz and path.suffix == ".npz":
        if not path.is_file():
            raise DataError(f"{spec}: file not found")
        return DataSpec("npz", spec)
    if path.exists():
        raise DataError(f"{spec}: is a file, not a folder; expected one of: {valid_forms(allow_npz)}")
    if spec.startswith("fashion-mnist") or (":" in spec and "/" not in spec.split(":", 1)[0]):
        raise DataError(f"unknown data set name {spec!r}; expected one of: {valid_forms(allow_npz)}")
    raise DataError(f"{spec}: data folder not found (expected one of: {valid_forms(allow_npz)})")


def data_path(spec: str) -> Optional[Path]:
    """The local file or folder a data spec reads (see `DataSpec.local_path`); None if it names none or is
    not a valid spec (that error is reported where the spec is used)."""
    try:
        return parse_data_spec(spec, allow_npz=True).local_path
    except DataError:
        return None
