"""Hugging Face Hub references: `hf://<org>/<repo>/<file>` for a weight file, `hf://<org>/<repo>[/<folder>]` for a
model directory, optionally pinned as `hf://<org>/<repo>@<revision>/...`.

`resolve_weights` turns such a reference into a local path through `huggingface_hub` (the optional extra:
`pip install 'robustok[hub]'`). The local cache is read first (`HF_HUB_CACHE`, else huggingface_hub's default),
so a cached file never needs the network; a file that is not cached is downloaded unless `HF_HUB_OFFLINE=1`.
Anything else (a plain path) is returned unchanged. Every loader of weights calls this one function:
`robustok.weight_files.read_checkpoint` (original files: `robustok convert`, DINOv2), `load_tokenizer` and
`load_generator` (directories).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Optional

from robustok.errors import CheckpointError
from robustok.extras import require

PREFIX = "hf://"
_TRUE = {"1", "ON", "YES", "TRUE"}


class HubRef(NamedTuple):
    repo_id: str  # "<org>/<repo>"
    path: str  # file or folder inside the repository ("" = the whole repository)
    revision: Optional[str]  # branch, tag or commit (None: main)


def is_hub_ref(ref: str | Path) -> bool:
    """True for `hf://...` (also as a `Path`, which folds the `//` into one `/`)."""
    return str(ref).startswith("hf:/")


def parse_hub_ref(ref: str | Path) -> HubRef:
    """Split `hf://<org>/<repo>[@<revision>][/<path>]`; `CheckpointError` naming the reference if malformed."""
    text = str(ref)
    body = text[len(PREFIX) :] if text.startswith(PREFIX) else text[len("hf:/") :]
    parts = [p for p in body.split("/") if p]
    if len(parts) < 2 or ".." in parts:
        raise CheckpointError(
            f"{text}: not a Hub reference of the form hf://<org>/<repo>/<file> "
            "(or hf://<org>/<repo> for a model directory)"
        )
    repo, _, revision = parts[1].partition("@")
    return HubRef(f"{parts[0]}/{repo}", "/".join(parts[2:]), revision or None)


def _offline(hub: Any) -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE or bool(hub.constants.HF_HUB_OFFLINE)


def _fetch(hub: Any, ref: HubRef, directory: bool, local_only: bool, cache_dir: Optional[str]) -> Path:
    """The local path of `ref` from the cache (`local_only`) or the Hub; huggingface_hub's errors pass through."""
    common = {"revision": ref.revision, "cache_dir": cache_dir, "local_files_only": local_only}
    if not directory:
        return Path(hub.hf_hub_download(ref.repo_id, ref.path, **common))
    patterns = [f"{ref.path}/*", f"{ref.path}/**"] if ref.path else None
    root = Path(hub.snapshot_download(ref.repo_id, allow_patterns=patterns, **common))
    return root / ref.path if ref.path else root


def resolve_weights(ref: str | Path, directory: bool = False) -> Path:
    """The local path of a weight file (`directory=False`) or model directory given as a path or a Hub reference.

    Hub references are read from the local cache first and downloaded only when missing there and
    `HF_HUB_OFFLINE` is not set. Errors are one `CheckpointError` line naming the reference and what to do.
    """
    if not is_hub_ref(ref):
        return Path(ref)
    text = PREFIX + str(ref)[len("hf:/") :].lstrip("/")
    parsed = parse_hub_ref(text)
    if not directory and not parsed.path:
        raise CheckpointError(
            f"{text}: names a repository, not a file; add the file's path: hf://{parsed.repo_id}/<file>"
        )
    hub = require("huggingface_hub", f"{text}: Hub references")
    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    what = "folder" if directory else "file"
    try:
        path: Optional[Path] = _fetch(hub, parsed, directory, True, cache_dir)
    except Exception:  # noqa: BLE001 - not cached (huggingface_hub raises several types across versions)
        path = None
    if path is not None and (path.is_dir() if directory else path.is_file()):
        return path
    if _offline(hub):
        where = cache_dir or hub.constants.HF_HUB_CACHE
        get = f"hf download {parsed.repo_id}" + (f" {parsed.path}" if parsed.path and not directory else "")
        raise CheckpointError(
            f"{text}: {what} not in the Hugging Face cache ({where}) and HF_HUB_OFFLINE is set; "
            f"fetch it where the Hub is reachable (`{get}`) and copy the cache, or pass a local "
            "path"
        )
    try:
        path = _fetch(hub, parsed, directory, False, cache_dir)
    except Exception as err:  # noqa: BLE001 - any failure of the download is reported in one line
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{text}: {what} not in the Hugging Face cache and not downloadable ({type(err).__name__}: {first})"
        ) from None
    if directory and not path.is_dir():
        raise CheckpointError(f"{text}: no folder {parsed.path!r} in {parsed.repo_id}")
    return path
