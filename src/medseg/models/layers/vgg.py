"""Plain convolution stacks with bias, as in the VGG-style U-Net variants (UCTransNet, U-Net++, Attention U-Net)."""

from __future__ import annotations

from itertools import pairwise

from torch import nn

__all__ = ["VGGBlock"]


class VGGBlock(nn.Sequential):
    """``num_convs`` times Conv3x3 (with bias) -> BatchNorm -> ReLU.

    Unlike :class:`~medseg.models.layers.conv.DoubleConv` the convolutions keep their bias, which is how the
    reference repositories of these baselines build them (it changes the parameter count).

    Args:
        in_channels: input channels.
        out_channels: output channels of the last convolution.
        mid_channels: output channels of the other convolutions (defaults to ``out_channels``).
        num_convs: number of convolutions (at least 1).
    """

    def __init__(
        self, in_channels: int, out_channels: int, mid_channels: int | None = None, num_convs: int = 2
    ) -> None:
        if num_convs < 1:
            raise ValueError(f"num_convs must be at least 1, got {num_convs}")
        mid_channels = mid_channels or out_channels
        widths = [in_channels] + [mid_channels] * (num_convs - 1) + [out_channels]
        layers: list[nn.Module] = []
        for cin, cout in pairwise(widths):
            layers += [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        super().__init__(*layers)
