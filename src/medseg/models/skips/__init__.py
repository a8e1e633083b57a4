"""Skip-connection modules that replace a U-Net's plain encoder-to-decoder skips."""

from medseg.models.skips.tamosc import Expert, Routing, TaMoSC, UnusedExpertPolicy, balance_loss

__all__ = ["Expert", "Routing", "TaMoSC", "UnusedExpertPolicy", "balance_loss"]
