"""Errors that the CLI reports as one clear line (no traceback)."""


class RobustokError(Exception):
    """A user-facing problem: bad input, a missing file, an incompatible checkpoint."""


class ConfigError(RobustokError, ValueError):
    """An unknown config key, a wrong type or an invalid value; the message names the key."""


class DataError(RobustokError, ValueError):
    """Unreadable or unusable data; the message names the file."""


class CheckpointError(RobustokError, ValueError):
    """A checkpoint or model directory that cannot be loaded into the requested model."""


class WriteError(RobustokError):
    """A write failed: the disk is full or failing (`code`: the errno, `path`: the file or folder). The message
    names the path (and the space needed); nothing was replaced and temporary files were removed. The CLI exits
    with status 1 (not a bad input: free space and rerun)."""

    def __init__(self, message: str, code: int, path: str = ""):
        super().__init__(message)
        self.code, self.path = code, path
