"""Squeeze-and-excitation channel attention (Hu et al., CVPR 2018)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SqueezeExcitation"]


class SqueezeExcitation(nn.Module):
    """Global average pool -> Linear(C -> C/r) -> ReLU -> Linear(C/r -> C) -> sigmoid -> channel scale.

    Both linear layers have no bias, as in ResUNet++.

    Args:
        channels: channels of the feature to recalibrate.
        reduction: squeeze ratio ``r``; the hidden width is ``channels // reduction`` (at least 1).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.excite = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel of ``x`` ``(B, C, H, W)`` by its excitation weight in (0, 1)."""
        weights = self.excite(self.pool(x).flatten(1))
        return x * weights[:, :, None, None]
