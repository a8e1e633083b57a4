"""Named evaluation protocols (see ``docs/protocols.md``)."""

from __future__ import annotations

from medseg.errors import MedsegError
from medseg.protocols.base import CaseResult, Protocol, ProtocolContext, resize_bilinear
from medseg.protocols.perimage import PerImageBinaryCleanProtocol, PerImageBinaryProtocol, PerImageProtocol
from medseg.protocols.resunetpp import ResUNetPPKvasirProtocol
from medseg.protocols.transunet import (
    TransUNetACDCCleanProtocol,
    TransUNetACDCProtocol,
    TransUNetSynapseCleanProtocol,
    TransUNetSynapseProtocol,
    TransUNetVolumeCleanProtocol,
    TransUNetVolumeProtocol,
)
from medseg.protocols.uctransnet import UCTransNet2DCleanProtocol, UCTransNet2DProtocol
from medseg.protocols.vmunet import VMUNetGlobalProtocol

__all__ = ["CaseResult", "Protocol", "ProtocolContext", "get_protocol", "list_protocols", "resize_bilinear"]

PROTOCOLS: dict[str, type[Protocol]] = {
    cls.name: cls
    for cls in (
        PerImageProtocol,
        PerImageBinaryProtocol,
        PerImageBinaryCleanProtocol,
        UCTransNet2DProtocol,
        UCTransNet2DCleanProtocol,
        VMUNetGlobalProtocol,
        ResUNetPPKvasirProtocol,
        TransUNetSynapseProtocol,
        TransUNetSynapseCleanProtocol,
        TransUNetACDCProtocol,
        TransUNetACDCCleanProtocol,
        TransUNetVolumeProtocol,
        TransUNetVolumeCleanProtocol,
    )
}


def list_protocols() -> dict[str, str]:
    """Return every protocol name with its one-sentence description."""
    return {name: cls.description for name, cls in sorted(PROTOCOLS.items())}


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
    if name not in PROTOCOLS:
        raise MedsegError(f"unknown protocol {name!r}; available: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name](context)
