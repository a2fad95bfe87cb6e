"""`Registry`: a name -> object table for an extension point, with errors that name the config key and choices.

>>> from robustok.registry import Registry
>>> COLOURS = Registry("colour", "model.colour")
>>> COLOURS.register("red", 0xFF0000)
16711680
>>> COLOURS.lookup("red")
16711680
"""

from __future__ import annotations

from typing import Any, Generic, Iterator, Optional, TypeVar

from robustok.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (`what`), chosen by the config key `key`."""

    def __init__(self, what: str, key: str):
        self.what, self.key = what, key
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: Optional[T] = None) -> Any:
        """Add `entry` under `name` (returns it); without `entry`, a decorator that registers what it wraps.
        Registering a name twice is an error (remove it with `unregister` first)."""

        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ConfigError(f"{self.what} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add(entry) if entry is not None else add

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def lookup(self, name: str) -> T:
        """The entry `name`, or a `ConfigError` naming the key and the registered names."""
        if name not in self._entries:
            raise ConfigError(f"{self.key}: unknown {self.what} {name!r}; choose one of {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())

    def __getitem__(self, name: str) -> T:
        return self.lookup(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
