"""One generic registry for models, datasets, tasks and suites.

Entries are cheap records (metadata plus a lazy loader); registering one never imports
torch or touches the disk. A miss raises :class:`UnknownNameError` with close matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from harness.core.errors import UserError

T = TypeVar("T")


class RegistryError(UserError):
    """Base class of registry errors; the message is meant for the user as is."""


class UnknownNameError(RegistryError, KeyError):
    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class DuplicateNameError(RegistryError, ValueError):
    pass


class Registry(Generic[T]):
    """Name -> entry, with aliases, duplicate rejection and did-you-mean.

    >>> r = Registry[int]("number")
    >>> r.register("one", 1, aliases=("uno",))
    1
    >>> r.get("uno")
    1
    >>> r.get("onee")
    Traceback (most recent call last):
    ...
    harness.core.registry.UnknownNameError: unknown number 'onee'; did you mean: one?
    """

    def __init__(self, kind: str, normalize: Callable[[str], str] = str.lower):
        self.kind = kind
        self._normalize = normalize
        self._entries: dict[str, T] = {}
        self._canonical: dict[str, str] = {}  # normalised name or alias -> canonical name
        self._aliases: dict[str, list[str]] = {}

    def register(self, name: str, entry: T, aliases: tuple[str, ...] = ()) -> T:
        for key in (name, *aliases):
            norm = self._normalize(key)
            if norm in self._canonical:
                raise DuplicateNameError(
                    f"{self.kind} {key!r} is already registered (as {self._canonical[norm]!r})"
                )
        if len(set(map(self._normalize, (name, *aliases)))) != 1 + len(aliases):
            raise DuplicateNameError(f"{self.kind} {name!r} repeats a name among its aliases")
        self._entries[name] = entry
        self._aliases[name] = list(aliases)
        for key in (name, *aliases):
            self._canonical[self._normalize(key)] = name
        return entry

    def resolve(self, name: str) -> str:
        """Canonical name for ``name`` (or one of its aliases)."""
        norm = self._normalize(name)
        if norm in self._canonical:
            return self._canonical[norm]
        choices = list(self._canonical)
        close = difflib.get_close_matches(norm, choices, n=3, cutoff=0.5)
        close = list(dict.fromkeys(self._canonical[c] for c in close))
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        if not close and self._entries:
            hint = f"; known: {', '.join(sorted(self._entries))}"
        raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}")

    def get(self, name: str) -> T:
        return self._entries[self.resolve(name)]

    def aliases(self, name: str) -> list[str]:
        return list(self._aliases[self.resolve(name)])

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._normalize(name) in self._canonical

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]
