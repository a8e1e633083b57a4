"""Named evaluation protocols."""

from medseg.protocols.base import CaseResult, PerImageProtocol, Protocol, get_protocol, list_protocols

__all__ = ["CaseResult", "PerImageProtocol", "Protocol", "get_protocol", "list_protocols"]
