"""Named evaluation protocols (see ``docs/protocols.md``).

Importing this package registers the built-in protocols (:func:`register_protocol`); external packages add theirs
through the ``medseg.protocols`` entry-point group.
"""

from __future__ import annotations

from medseg.protocols import perimage, resunetpp, transunet, uctransnet, vmunet  # noqa: F401  (register them)
from medseg.protocols.base import CaseResult, Protocol, ProtocolContext, resize_bilinear
from medseg.protocols.registry import PROTOCOLS, register_protocol

__all__ = [
    "PROTOCOLS",
    "CaseResult",
    "Protocol",
    "ProtocolContext",
    "get_protocol",
    "list_protocols",
    "register_protocol",
    "resize_bilinear",
]


def list_protocols() -> dict[str, str]:
    """Return every protocol name with its one-sentence description, entry points included."""
    return {name: cls.description for name, cls in PROTOCOLS.items()}


def get_protocol(name: str, context: ProtocolContext) -> Protocol:
    """Build a protocol by name.

    Args:
        name: protocol name, see :func:`list_protocols`.
        context: the task (classes, input size, threshold, empty policy).

    Returns:
        The protocol.

    Raises:
        MedsegError: unknown name (the message lists the valid ones) or a task the protocol does not fit.
    """
    return PROTOCOLS.get(name)(context)
