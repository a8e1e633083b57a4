"""Atrous spatial pyramid pooling, in the summed form used by ResUNet++ (Jha et al., ISM 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["SummedASPP"]


class SummedASPP(nn.Module):
    """Parallel dilated 3x3 convolutions, each followed by BatchNorm, summed and projected by a 1x1 convolution.

    Unlike DeepLab's ASPP there is no ReLU, no image-pooling branch and no concatenation: the branches are added.

    Args:
        in_channels: input channels.
        out_channels: channels of every branch and of the output.
        rates: dilation rate of each branch (padding equals the rate, so the size is kept).
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int] = (1, 6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=rate, dilation=rate),
                nn.BatchNorm2d(out_channels),
            )
            for rate in rates
        )
        self.project = nn.Conv2d(out_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, out_channels, H, W)`` for ``x`` ``(B, in_channels, H, W)``."""
        total = self.branches[0](x)
        for branch in self.branches[1:]:
            total = total + branch(x)
        return self.project(total)
