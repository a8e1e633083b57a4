"""Pre-activation residual block with squeeze-excitation, as in ResUNet++ (Jha et al., ISM 2019)."""

from __future__ import annotations

import torch
from torch import nn

from medseg.models.layers.se import SqueezeExcitation

__all__ = ["PreActResidualSE"]


class PreActResidualSE(nn.Module):
    """``SE(main(x) + shortcut(x))`` with a pre-activation main path.

    main: BN -> ReLU -> Conv3x3 (stride s) -> BN -> ReLU -> Conv3x3; shortcut: Conv1x1 (stride s) -> BN.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first convolution and of the shortcut (2 halves the resolution).
        se_reduction: squeeze ratio of the closing squeeze-excitation.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, se_reduction: int = 8) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride),
            nn.BatchNorm2d(out_channels),
        )
        self.se = SqueezeExcitation(out_channels, se_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, out_channels, H / stride, W / stride)``."""
        return self.se(self.main(x) + self.shortcut(x))
