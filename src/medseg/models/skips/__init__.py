"""Skip-connection modules that replace a U-Net's plain encoder-to-decoder skips (``model.params.skip``).

Importing this package registers the built-in modules; external packages register theirs through the
``medseg.skips`` entry-point group.
"""

from medseg.models.skips.factory import (
    SKIPS,
    IdentitySkips,
    SkipConnections,
    SkipInfo,
    apply_skips,
    build_skips,
    identity_skips,
    register_skip,
)
from medseg.models.skips.tamosc import BALANCE_LOSS, Expert, Routing, TaMoSC, UnusedExpertPolicy, balance_loss

__all__ = [
    "BALANCE_LOSS",
    "SKIPS",
    "Expert",
    "IdentitySkips",
    "Routing",
    "SkipConnections",
    "SkipInfo",
    "TaMoSC",
    "UnusedExpertPolicy",
    "apply_skips",
    "balance_loss",
    "build_skips",
    "identity_skips",
    "register_skip",
]
