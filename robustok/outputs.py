"""Output folders that never clobber what a user already has and never collide with another run.

`staged_output(out, overwrite)` refuses a non-empty `out` unless `overwrite`, takes the lock `.<name>.lock` next
to `out` (a second writer to the same `out` stops at once, naming the holder), and gives a build folder of this
run alone, `.<name>.build-<pid>-<random>` (its merge parts, under `torchrun`, in `.<name>.parts-<pid>-<random>`).
`Staged.commit()` (rank 0) checks `out` again, moves an existing `out` aside, renames the build folder into place
and only then removes the old one. A run that fails before the commit leaves `out` exactly as it was and removes
its own build folder; one that is killed leaves its folders behind, and the next run into the same `out` removes
them once their process is gone. A run never deletes another run's folders (nor `--overwrite`'s target before
the new one is complete).

`check_disjoint(out, inputs)` refuses an output that is, contains or lies inside one of the command's inputs.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional

from robustok.errors import RobustokError, WriteError
from robustok.hub import disk_errno, write_error
from robustok.train.lock import pid_alive


class OutputExistsError(RobustokError):
    """The output folder already holds files and `--overwrite` was not given."""


class OutputOverlapError(RobustokError):
    """The output path is, contains or lies inside one of the command's inputs."""


def check_out(out: str | Path, overwrite: bool, what: str = "--out") -> None:
    """Refuse an existing, non-empty folder `out` unless `overwrite`; refuse a path that is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RobustokError(f"{what} {out}: exists and is not a folder")
    if out.is_dir() and not overwrite:
        names = sorted(p.name for p in out.iterdir())
        if names:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise OutputExistsError(
                f"{what} {out}: already exists and is not empty ({shown}); pass --overwrite "
                "to replace it, or choose another folder (nothing was changed)"
            )


def check_disjoint(out: str | Path, inputs: Mapping[str, Optional[str | Path]], what: str = "--out") -> None:
    """Refuse (before any work, `--overwrite` or not) an output path that is, contains or lies inside one of
    `inputs` (label -> path; None and non-path entries such as `fashion-mnist:train` are skipped)."""
    target = Path(out).resolve()
    for label, path in inputs.items():
        if path is None or not Path(path).exists():
            continue
        src = Path(path).resolve()
        if target == src:
            how = "is"
        elif src.is_relative_to(target):
            how = "contains"
        elif target.is_relative_to(src):
            how = "lies inside"
        else:
            continue
        raise OutputOverlapError(
            f"{what} {out}: {how} the input {label} {path}; writing there would replace or "
            "change what this command reads: choose another output path (nothing was changed)"
        )


_active: set[str] = set()  # this process's build folders in use (its own pid is no sign of a dead run)


def remove_stale(out: str | Path) -> list[Path]:
    """Clear what runs into `out` that are gone left next to it; return the folders removed. A set-aside `out`
    (`.old-`: the run died between its two renames, leaving no `out`) is renamed back to `out`, never deleted
    unless `out` exists again; build and parts folders are removed. Folders of live processes are never touched."""
    out = Path(out)
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    ours = re.compile(rf"\.{re.escape(out.name)}\.(build|parts|old)-(\d+)-([0-9a-f]+)")
    found = sorted((m.group(1) != "old", p, m) for p in out.parent.iterdir() if (m := ours.fullmatch(p.name)))
    for _, p, m in found:  # set-aside folders first: the user's previous output goes back into place
        pid = int(m.group(2))
        mine = pid == os.getpid() and f"{pid}-{m.group(3)}" in _active
        if mine or (pid != os.getpid() and pid_alive(pid)):
            continue
        if m.group(1) == "old" and not (out.exists() or out.is_symlink()):
            p.rename(out)
            continue
        if p.is_symlink():
            p.unlink()
        else:
            shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def _busy(what: str, out: Path):
    def message(lock: Path, holder: str) -> str:
        return (
            f"{what} {out}: another run is writing it ({holder}; lock {lock.name}); wait for it to finish or "
            "choose another folder (nothing was changed)"
        )

    return message


@dataclass
class Staged:
    """The folders of one run's output: `build` becomes `out` at `commit()`; `parts` holds the ranks' merge parts."""

    out: Path
    build: Path
    parts: Path
    overwrite: bool
    what: str

    def commit(self) -> Path:
        """Move the complete `build` folder to `out` (rank 0 only). An existing `out` (allowed by `overwrite`, or
        empty) is renamed aside first and removed only after the new folder is in place."""
        from robustok.train.faults import fault_point

        check_out(self.out, self.overwrite, self.what)  # again: the folder may have been filled meanwhile
        fault_point("commit")
        old = self.build.with_name(self.build.name.replace(".build-", ".old-"))
        out = self.out
        if out.exists() or out.is_symlink():
            out.rename(old)
        try:
            self.build.rename(out)
        except BaseException:
            if (old.exists() or old.is_symlink()) and not out.exists():
                old.rename(out)  # put the user's folder back
            raise
        if old.is_symlink():
            old.unlink()  # a link the user had at `out`: the link goes, the folder it pointed to stays
        else:
            shutil.rmtree(old, ignore_errors=True)
        return out


def _start(out: Path, overwrite: bool, what: str, stack: contextlib.ExitStack) -> Staged:
    """Rank 0's part of `staged_output`: lock, clean stale folders, create this run's build folder."""
    from robustok.train.lock import path_lock

    if not out.parent.is_dir():
        try:
            out.parent.mkdir(parents=True)
        except OSError as err:
            raise RobustokError(f"{what} {out}: cannot create its folder ({err.strerror or err})") from None
    stack.enter_context(path_lock(out.with_name(f".{out.name}.lock"), _busy(what, out)))
    remove_stale(out)
    check_out(out, overwrite, what)  # after remove_stale: it may have put a set-aside `out` back
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    _active.add(token)
    stack.callback(_active.discard, token)
    staged = Staged(
        out, out.with_name(f".{out.name}.build-{token}"), out.with_name(f".{out.name}.parts-{token}"), overwrite, what
    )
    try:
        staged.build.mkdir()
    except OSError as err:
        raise RobustokError(
            f"{what} {out}: cannot create {staged.build.name} next to it ({err.strerror or err})"
        ) from None
    return staged


def _discard(staged: Staged, world: int) -> None:
    """Remove a failed run's folders (one process; under `torchrun` other ranks may still write into them, so
    the next run into the same output removes them)."""
    if world == 1:
        shutil.rmtree(staged.build, ignore_errors=True)
        shutil.rmtree(staged.parts, ignore_errors=True)


@contextlib.contextmanager
def staged_output(out: str | Path, overwrite: bool, what: str = "--out") -> Iterator[Staged]:
    """This run's `Staged` folders for `out` (every rank gets rank 0's), with `out`'s lock held by rank 0 for
    the block. Call `commit()` on rank 0 inside the block. On an error the build and parts folders are removed
    (one process; under `torchrun` the next run removes them), a full or failing disk raising a `WriteError`
    that names the file; on success the parts folder is removed."""
    from robustok.distributed import barrier, broadcast_object, rank_world

    out = Path(out)
    rank, world = rank_world()
    with contextlib.ExitStack() as stack:
        staged, error = None, None
        if rank == 0:
            try:
                staged = _start(out, overwrite, what, stack)
            except RobustokError as err:
                if world == 1:
                    raise
                error = str(err)
        if world > 1:  # every rank raises rank 0's error, or gets its folders
            staged, error = broadcast_object((staged, error))
            if error is not None:
                raise RobustokError(error)
        if staged is None:  # cannot happen: rank 0 started the folders or raised, the other ranks got them
            raise RobustokError(f"{what} {out}: no output folders were started")
        try:
            yield staged
        except (OSError, WriteError) as err:
            code = err.code if isinstance(err, WriteError) else disk_errno(err)
            _discard(staged, world)
            if code is None:
                raise
            failed = Path(err.path if isinstance(err, WriteError) else err.filename or staged.build)
            raise write_error(
                code, out, label=f"{what} {out}", file=failed.name if failed != staged.build else None
            ) from None
        except BaseException:
            _discard(staged, world)
            raise
        barrier()
        if rank == 0:
            shutil.rmtree(staged.build, ignore_errors=True)  # gone already unless the block did not commit
            shutil.rmtree(staged.parts, ignore_errors=True)
        barrier()


@contextlib.contextmanager
def output_lock(out: str | Path, what: str = "--out") -> Iterator[None]:
    """Hold `out`'s lock (the one `staged_output` takes) for outputs written in place, e.g. resumable shards."""
    from robustok.train.lock import path_lock

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with path_lock(out.with_name(f".{out.name}.lock"), _busy(what, out)):
        yield
