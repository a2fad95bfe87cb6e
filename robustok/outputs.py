"""Output folders that never clobber what a user already has: refuse a non-empty folder unless `--overwrite`,
build the new content in a temporary sibling folder, and rename it into place only when it is complete.

`staged_dir(out, overwrite)` gives the temporary folder (`.<name>.tmp` next to `out`; under `torchrun` every rank
gets the same one, created by rank 0); `commit_dir(tmp, out, overwrite)` (rank 0 only) checks `out` again, moves
an existing `out` aside, renames the new folder into place and only then removes the old one. A run that fails
or is killed before the commit leaves `out` exactly as it was (at most a hidden `.<name>.tmp` that the next run
clears).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from robustok.errors import RobustokError


class OutputExistsError(RobustokError):
    """The output folder already holds files and `--overwrite` was not given."""


def check_out(out: str | Path, overwrite: bool, what: str = "--out") -> None:
    """Refuse an existing, non-empty folder `out` unless `overwrite`; refuse a path that is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RobustokError(f"{what} {out}: exists and is not a folder")
    if out.is_dir() and not overwrite:
        names = sorted(p.name for p in out.iterdir())
        if names:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise OutputExistsError(f"{what} {out}: already exists and is not empty ({shown}); pass --overwrite "
                                    "to replace it, or choose another folder (nothing was changed)")


def temp_sibling(out: str | Path, tag: str = "tmp") -> Path:
    """`.<name>.<tag>` in the same folder as `out` (so a rename moves it into place on the same file system)."""
    out = Path(out)
    return out.with_name(f".{out.name}.{tag}")


def staged_dir(out: str | Path, overwrite: bool, what: str = "--out") -> Path:
    """Check `out` (see `check_out`), then (rank 0) clear and create its temporary sibling; every rank returns
    the same path once it exists."""
    from robustok.metrics.distributed import rank_world
    from robustok.train.dist import barrier

    check_out(out, overwrite, what)
    tmp = temp_sibling(out)
    if rank_world()[0] == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
        except OSError as err:
            raise RobustokError(f"{what} {out}: cannot create {tmp.name} next to it "
                                f"({err.strerror or err})") from None
    barrier()
    return tmp


def commit_dir(tmp: str | Path, out: str | Path, overwrite: bool, what: str = "--out") -> Path:
    """Move the complete folder `tmp` to `out` (rank 0 only). An existing `out` (allowed by `overwrite`, or
    empty) is renamed aside first and removed only after the new folder is in place."""
    from robustok.train.faults import fault_point

    tmp, out = Path(tmp), Path(out)
    check_out(out, overwrite, what)  # again: the folder may have been filled while we were working
    fault_point("commit")
    old = temp_sibling(out, f"old-{os.getpid()}")
    if out.exists() or out.is_symlink():
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if (old.exists() or old.is_symlink()) and not out.exists():
            old.rename(out)     # put the user's folder back
        raise
    if old.is_symlink():
        old.unlink()            # a link the user had at `out`: the link goes, the folder it pointed to stays
    else:
        shutil.rmtree(old, ignore_errors=True)
    return out


def discard(tmp: str | Path) -> None:
    """Remove a temporary folder after a failure (one process only: under `torchrun` other ranks may still
    write into it; the next run clears it)."""
    from robustok.metrics.distributed import rank_world

    if rank_world()[1] == 1:
        shutil.rmtree(tmp, ignore_errors=True)
