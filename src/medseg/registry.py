"""One extension mechanism for every axis: a registry of named entries, filled by decorators and entry points.

medseg keeps five registries built on :class:`Registry`: models (entry-point group ``medseg.models``), skip modules
(``medseg.skips``), objective terms (``medseg.objectives``), dataset readers (``medseg.readers``) and evaluation
protocols (``medseg.protocols``). Built-in entries register themselves with their axis's decorator when their
module is imported; an installed package adds entries through the axis's entry-point group, whose entry points
are loaded once, at the first look-up (``docs/extending.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from medseg.errors import MedsegError

__all__ = ["EntryPointError", "Registry", "UnknownNameError"]

T = TypeVar("T")


class UnknownNameError(MedsegError, ValueError):
    """A name that is not registered (the message lists the registered ones)."""


class EntryPointError(MedsegError):
    """An entry point of an installed package that cannot be loaded or does not fit its group."""


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"


class Registry(Generic[T]):
    """The named entries of one extension axis.

    The registry reads like a mapping (``name in registry``, ``registry[name]``, iteration over the sorted
    names); every look-up first imports the built-in ``modules`` and loads the entry-point ``group`` (once).

    Args:
        kind: what an entry is, for messages (``"model"``, ``"objective term"`` ...).
        group: the entry-point group that installed packages add entries through (``"medseg.models"`` ...).
        modules: modules that register the built-in entries, imported at the first look-up (for packages that do
            not import them on their own import).
        from_entry_point: turns the object an entry point loads into an entry (default: the object itself);
            raises ``TypeError`` or ``ValueError`` for an object that does not fit the axis.
        error: exception raised for an unknown name.
        listing: the words before the registered names in that exception's message.
    """

    def __init__(
        self,
        kind: str,
        group: str,
        *,
        modules: Sequence[str] = (),
        from_entry_point: Callable[[EntryPoint, object], T] | None = None,
        error: type[Exception] = UnknownNameError,
        listing: str = "available",
    ) -> None:
        self.kind = kind
        self.group = group
        self._modules = tuple(modules)
        self._from_entry_point = from_entry_point
        self._error = error
        self._listing = listing
        self._entries: dict[str, T] = {}
        self._loaded = False

    def add(self, name: str, entry: T) -> None:
        """Register ``entry`` under ``name``.

        Args:
            name: the registry name (what configs and the command line use).
            entry: the entry.

        Raises:
            ValueError: another entry already has that name.
        """
        existing = self._entries.get(name, entry)
        if existing is not entry and existing != entry:
            raise ValueError(f"{_article(self.kind)} {self.kind} named {name!r} is already registered ({existing!r})")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        """The entry registered under ``name``.

        Args:
            name: a registered name.

        Returns:
            The entry.

        Raises:
            Exception: the registry's ``error`` class, with a one-line message listing the registered names.
        """
        self._load()
        if name not in self._entries:
            raise self._error(f"unknown {self.kind} {name!r}; {self._listing}: {', '.join(self.names()) or 'none'}")
        return self._entries[name]

    def names(self) -> list[str]:
        """The sorted registered names, those of installed packages included."""
        self._load()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs sorted by name."""
        return [(name, self._entries[name]) for name in self.names()]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def _load(self) -> None:
        """Import the built-in modules and load the entry-point group, the first time only (until one fails:
        then every look-up tries again, so that the failure is reported each time, not an unknown name)."""
        if self._loaded:
            return
        self._loaded = True  # before the imports: a module they import may look names up
        try:
            for module in self._modules:
                importlib.import_module(module)
            for entry_point in entry_points(group=self.group):
                self._load_entry_point(entry_point)
        except Exception:
            self._loaded = False
            raise

    def _load_entry_point(self, entry_point: EntryPoint) -> None:
        """Import one entry point and register the object it names under its name, unless that name is already
        registered (by the decorator of the module it imported, or by a built-in entry, which wins)."""
        dist = getattr(entry_point, "dist", None)
        where = (
            f"entry point {entry_point.name} = {entry_point.value} of package "
            f"{dist.name if dist is not None else '(unknown)'} (group {self.group})"
        )
        try:
            loaded = entry_point.load()
            if entry_point.name not in self._entries:
                convert = self._from_entry_point
                self.add(entry_point.name, loaded if convert is None else convert(entry_point, loaded))
        except Exception as error:  # any failure of an external package is reported as its entry point's
            raise EntryPointError(f"cannot load the {where}: {type(error).__name__}: {error}") from error
