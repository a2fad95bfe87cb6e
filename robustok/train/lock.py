"""Exclusive locks: two processes never train into the same `run.dir` at once (`run_lock`), and never write
the same output at once (`path_lock`, used by `robustok.outputs`).

`<dir>/.lock` (a run) or `.<name>.lock` next to an output is held with `fcntl.flock`, which the kernel
releases when the holder dies, so the lock of a killed run is free again (stale locks are taken over); the file
records the holder's pid and host for the error message. Re-entrant within one process (post-training locks its
folder around the training loop).
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Callable, Iterator

from robustok.errors import RobustokError

LOCK_NAME = ".lock"
_held: dict[str, tuple[int, int]] = {}  # resolved path -> (fd, depth)


class RunLockedError(RobustokError):
    """Another live process holds the run folder."""


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_busy(path: Path, holder: str) -> str:
    return (
        f"{path.parent} is in use by another run ({holder}); wait for it to finish or stop it, or choose "
        "another run.dir"
    )


def _acquire_flock(path: Path, busy: Callable[[Path, str], str] = _run_busy) -> int:
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(busy(path, _holder(path))) from None
        try:  # the holder may have released and deleted the file between our open and flock: retry
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _acquire_pidfile(path: Path, busy: Callable[[Path, str], str] = _run_busy) -> int:
    """Platforms without fcntl: an O_EXCL pid file; the file of a dead holder is taken over."""
    for _ in range(2):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            text = _holder(path)
            pid = int(text.split()[1]) if text.startswith("pid ") and text.split()[1].isdigit() else -1
            if pid > 0 and pid_alive(pid):
                raise RunLockedError(busy(path, text)) from None
            path.unlink(missing_ok=True)  # stale: its process is gone
    raise RunLockedError(f"{path.parent}: could not take the lock {path}")


@contextlib.contextmanager
def run_lock(run_dir: str | Path, enabled: bool = True) -> Iterator[None]:
    """Hold `<run_dir>/.lock` for the duration of the block; `RunLockedError` names the holder if taken."""
    if not enabled:
        yield
        return
    run_dir = Path(run_dir)
    created = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # removed again if left empty
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with path_lock(run_dir / LOCK_NAME, _run_busy):
            yield
    finally:
        for d in created:  # a run refused before writing anything leaves no empty folders behind
            try:
                d.rmdir()
            except OSError:
                break


@contextlib.contextmanager
def path_lock(path: str | Path, busy: Callable[[Path, str], str]) -> Iterator[None]:
    """Hold the lock file `path` (its folder must exist) for the block; re-entrant within one process. Taken:
    `RunLockedError(busy(path, holder))`, where holder is e.g. "pid 123 on host"."""
    path = Path(path)
    key = str(path.resolve())
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    try:
        fd = _acquire_flock(path, busy)
    except ImportError:
        fd = _acquire_pidfile(path, busy)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _held[key] = (fd, 1)
    try:
        yield
    finally:
        del _held[key]
        path.unlink(missing_ok=True)  # before closing: nobody can hold a lock on this file meanwhile
        os.close(fd)
