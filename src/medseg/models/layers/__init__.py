"""Building blocks shared by several architectures."""

from medseg.models.layers.conv import DoubleConv

__all__ = ["DoubleConv"]
