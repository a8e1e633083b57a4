"""Skip-connection modules that replace a U-Net's plain encoder-to-decoder skips."""

from medseg.models.skips.factory import SKIP_KINDS, IdentitySkips, SkipConnections, build_skips
from medseg.models.skips.tamosc import Expert, Routing, TaMoSC, UnusedExpertPolicy, balance_loss

__all__ = [
    "SKIP_KINDS",
    "Expert",
    "IdentitySkips",
    "Routing",
    "SkipConnections",
    "TaMoSC",
    "UnusedExpertPolicy",
    "balance_loss",
    "build_skips",
]
