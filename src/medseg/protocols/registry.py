"""Evaluation protocol registry: ``eval.protocol`` / ``medseg evaluate --protocol`` name -> protocol class.

Built-in protocols register themselves when :mod:`medseg.protocols` is imported; external packages add theirs
through the ``medseg.protocols`` entry-point group (each entry point's name is the protocol name, its value a
:class:`~medseg.protocols.base.Protocol` subclass).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint
from typing import TypeVar

from medseg.protocols.base import Protocol
from medseg.registry import Registry

__all__ = ["PROTOCOLS", "register_protocol"]

P = TypeVar("P", bound=type[Protocol])


def _named(cls: object, name: str) -> type[Protocol]:
    """``cls`` with its :attr:`~medseg.protocols.base.Protocol.name` set to its registry name."""
    if not (isinstance(cls, type) and issubclass(cls, Protocol)):
        raise TypeError(f"{cls!r} is not a subclass of medseg.protocols.Protocol")
    cls.name = name
    return cls


def _from_entry_point(entry_point: EntryPoint, cls: object) -> type[Protocol]:
    return _named(cls, entry_point.name)


PROTOCOLS: Registry[type[Protocol]] = Registry("protocol", "medseg.protocols", from_entry_point=_from_entry_point)
"""Every registered protocol class."""


def register_protocol(name: str) -> Callable[[P], P]:
    """Class decorator registering a :class:`~medseg.protocols.base.Protocol` subclass under ``name``.

    Args:
        name: the protocol name (``eval.protocol``); it becomes the class's ``name`` attribute.

    Returns:
        The decorator, which returns the class.
    """

    def decorator(cls: P) -> P:
        PROTOCOLS.add(name, _named(cls, name))
        return cls

    return decorator
