"""Convolution blocks."""

from __future__ import annotations

from torch import nn

__all__ = ["DoubleConv"]


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions (no bias), each followed by BatchNorm and ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        mid_channels: channels after the first convolution (defaults to ``out_channels``).
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
        mid_channels = mid_channels or out_channels
        super().__init__(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
