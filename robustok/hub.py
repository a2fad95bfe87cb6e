"""`save_pretrained` / `from_pretrained`: a model directory is `config.json` + `model.safetensors`.

Models subclass `Pretrained`, set `config_class` (a dataclass) and take the config as their only constructor
argument. Loading checks the class name and every tensor's name and shape, and reports the file on mismatch.
Writes are atomic (temp file + rename), so an interrupted save never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Iterator, Mapping, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from robustok.config import from_dict
from robustok.errors import CheckpointError, ConfigError, WriteError

CONFIG_NAME = "config.json"
FORMAT = "robustok/1"  # config.json + model.safetensors; keys added since: the config classes' ADDED_KEYS
WEIGHTS_NAME = "model.safetensors"
M = TypeVar("M", bound="Pretrained")


TEMP_SUFFIX = ".tmp"


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.pid{os.getpid()}."


def remove_stale_temps(directory: str | Path) -> None:
    """Delete temp files of atomic writes in `directory` whose writing process is gone (a crash mid-write)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for f in directory.glob(f".*.pid*{TEMP_SUFFIX}"):
        m = re.search(r"\.pid(\d+)\.[^.]*\.tmp$", f.name)
        if not m:
            continue
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid()  # our own pid: a dead process's, reused (we write sequentially)
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            f.unlink(missing_ok=True)


DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EIO)


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of a new file under the umask (0644 under the usual 022), which `mkstemp`'s 0600 would not be."""
    return 0o666 & ~_umask()


def size_text(n: float) -> str:
    """Bytes as a short human-readable size (1.5 MB, 77.5 GB)."""
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def free_space(path: str | Path) -> int:
    """Free bytes on the file system holding `path` (or its nearest existing parent)."""
    import shutil

    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def write_error(
    code: int, path: str | Path, need: int | None = None, file: str | None = None, label: str = ""
) -> WriteError:
    """A one-line `WriteError` for a full disk (errno `code` ENOSPC/EDQUOT) or a failing one (EIO), naming `path`
    (as `label`, e.g. "--out X", if given), the file whose write failed (`file`, if not `path` itself), the free
    space there and the space needed: `need` bytes when known, else more than what is free once the failed
    run's partial files are gone (it did not fit)."""
    name = label or str(path)
    where = f" while writing {file}" if file else ""
    if code == errno.EIO:
        return WriteError(
            f"{name}: input/output error{where or ' while writing'} (a failing disk or a lost "
            "mount?); nothing was replaced and temporary files were removed",
            code,
            str(path),
        )
    free = size_text(free_space(path))
    space = f"{free} free, {size_text(need)} needed" if need is not None else f"needs more than the {free} free"
    return WriteError(
        f"{name}: no space left on the device{where} ({space}); nothing was replaced and temporary "
        "files were removed: free some space and run again",
        code,
        str(path),
    )


def disk_errno(err: OSError) -> int | None:
    """The errno of a write error, counting a short write (numpy's `OSError: N requested and M written`, which
    carries no errno) as a full disk; None for other errors."""
    if err.errno is None and "requested and" in str(err) and "written" in str(err):
        return errno.ENOSPC
    return err.errno if err.errno in DISK_ERRORS else None


@contextlib.contextmanager
def atomic_file(path: str | Path, size: int | None = None) -> Iterator[BinaryIO]:
    """A binary file that appears at `path` only when the block ends without error (temp file in the same
    folder, fsync, atomic rename; mode as for a new file under the umask); on error the temp file is removed and
    `path` is untouched. A full or failing disk raises `WriteError` naming `path` and the space needed (`size`
    bytes if known)."""
    from robustok.train.faults import fault_point

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            yield f
            fault_point("write", path)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        code = disk_errno(err)
        if code is not None:
            raise write_error(code, path, size) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder and an atomic rename."""
    with atomic_file(path, len(data)) as f:
        f.write(data)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Atomically write a safetensors file (tensors made contiguous and moved to CPU); see `atomic_file`."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, naming the file if it is missing or corrupt."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None


def load_state_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """`load_state_dict(strict=True)` with an error that names the source and the first mismatches."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if wrong:
            parts.append(f"shape mismatch {wrong[:3]}")
        raise CheckpointError(
            f"{source}: weights do not fit {type(module).__name__} ({'; '.join(parts)}): "
            "is it a checkpoint of another architecture or config?"
        )
    check_finite(state, source)
    module.load_state_dict(state, strict=True)


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Raise `CheckpointError` naming the file and the first tensor holding NaN or infinite values."""
    for k, v in state.items():
        if torch.is_floating_point(v) and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise CheckpointError(
                f"{source}: tensor {k!r} holds {bad} NaN/infinite value(s) of {v.numel()}; "
                "the weights are unusable (a diverged run?)"
            )


def read_model_meta(directory: str | Path, what: str = "robustok model") -> dict:
    """The parsed `config.json` of a model directory, with `CheckpointError` naming the file if unusable."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        inner = sorted(Path(directory).glob(f"*/{CONFIG_NAME}"))
        hint = f" (a training run keeps its model in a sub-folder: try {inner[0].parent})" if inner else ""
        raise CheckpointError(f"{path}: not found; is {directory} a {what} directory?{hint}")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: invalid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not a robustok model config (a JSON object with 'class' and 'config')")
    return meta


def config_from_file(schema: type, data: Any, path: Path) -> Any:
    """A model's config (dataclass `schema`) from the "config" object of its `config.json` at `path`.

    Every key of the file's format (robustok/1) must be there: a missing one is an error naming the file and the
    key (a silent default could load another model). The only keys that may be missing are those added to the
    format later, listed with the reason their default reproduces older files in the schema's `ADDED_KEYS`.
    Unknown keys and bad values are errors naming the file too."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: 'config' is not a JSON object")
    if dataclasses.is_dataclass(schema):
        names = [f.name for f in dataclasses.fields(schema)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise CheckpointError(
                f"{path}: unknown key {unknown[0]!r} for {schema.__name__} (written by a newer "
                f"robustok, or edited?); known keys: {', '.join(names)}"
            )
        added = getattr(schema, "ADDED_KEYS", {})  # a ClassVar of the config class
        missing = [n for n in names if n not in data and n not in added]
        if missing:
            raise CheckpointError(
                f"{path}: key {missing[0]!r} of {schema.__name__} is missing; every "
                f"{FORMAT} file holds it (was the file edited or cut short?): restore it rather "
                "than let a default decide which model this is"
            )
    try:
        return from_dict(schema, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def load_by_class(
    directory: str | Path, classes: Mapping[str, type[M]], what: str, map_location: str | torch.device = "cpu"
) -> M:
    """Load a model directory whose `config.json` names one of `classes` (dispatch by the "class" field)."""
    name = read_model_meta(directory, what).get("class")
    if not isinstance(name, str) or name not in classes:
        raise CheckpointError(
            f"{Path(directory) / CONFIG_NAME}: holds a {name!r}, not a {what} (known: {sorted(classes)})"
        )
    return classes[name].from_pretrained(directory, map_location=map_location)


class Pretrained(torch.nn.Module):
    """Base for models saved as a directory with `config.json` + `model.safetensors`."""

    config_class: ClassVar[type]

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    def save_pretrained(self, directory: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write `config.json` and `model.safetensors` (of `state`, default this model's weights)."""
        directory = Path(directory)
        remove_stale_temps(directory)
        meta = {"class": type(self).__name__, "config": self.config_dict(), "format": FORMAT}
        save_tensors(state if state is not None else self.state_dict(), directory / WEIGHTS_NAME)
        atomic_write_bytes(directory / CONFIG_NAME, json.dumps(meta, indent=2).encode())
        return directory

    @classmethod
    def read_config(cls, directory: str | Path) -> Any:
        meta = read_model_meta(directory, f"robustok {cls.__name__}")
        if meta.get("class") != cls.__name__ or "config" not in meta:
            raise CheckpointError(
                f"{Path(directory) / CONFIG_NAME}: holds a {meta.get('class')!r}, not a robustok {cls.__name__}"
            )
        return config_from_file(cls.config_class, meta["config"], Path(directory) / CONFIG_NAME)

    @classmethod
    def from_pretrained(cls: type[M], directory: str | Path, map_location: str | torch.device = "cpu") -> M:
        """Build the model from `directory/config.json` and load `directory/model.safetensors`."""
        model = cls(cls.read_config(directory))
        path = Path(directory) / WEIGHTS_NAME
        load_state_checked(model, load_tensors(path), str(path))
        return model.to(map_location).eval()

    def frozen_part_names(self) -> list[str]:
        """State-dict prefixes that identify the model in `fingerprint` (default: the whole state dict)."""
        return [""]

    def fingerprint(self) -> str:
        """A short content hash of config + weights: identifies the model that produced data.

        Tokenizers override `frozen_part_names()` to hash only those parts (encoder, projection, codebook): they
        decide the tokens, so a decoder post-trained on them keeps the fingerprint and stays compatible with
        generators and token stores made before.
        """
        prefixes = tuple(self.frozen_part_names())
        config = self.config_dict()
        defaults = {f.name: f.default for f in dataclasses.fields(self.config)}
        for name in getattr(type(self.config), "FINGERPRINT_SKIP_IF_DEFAULT", ()):
            if name in config and config[name] == defaults.get(name):
                del config[name]  # a field added later: at its default, earlier fingerprints stay valid
        h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        for k, v in sorted(self.state_dict().items()):
            if not k.startswith(prefixes):
                continue
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]
