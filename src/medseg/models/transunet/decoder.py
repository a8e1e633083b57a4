"""TransUNet's cascaded up-sampler: ``conv_more`` and four decoder blocks with CNN skips."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DecoderCup"]


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _DecoderBlock(nn.Module):
    """Bilinear x2 up-sampling, optional skip concatenation, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = _conv_bn_relu(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class DecoderCup(nn.Module):
    """Holds ``conv_more`` and the decoder blocks under the official names; :class:`TransUNet` runs them.

    Args:
        hidden: token width (input of ``conv_more``).
        head_channels: output of ``conv_more``.
        channels: outputs of the four decoder blocks.
        skip_channels: skip channels concatenated by each block (0 for none).
    """

    def __init__(self, hidden: int, head_channels: int, channels: Sequence[int], skip_channels: Sequence[int]):
        super().__init__()
        self.conv_more = _conv_bn_relu(hidden, head_channels)
        inputs = [head_channels, *channels[:-1]]
        self.blocks = nn.ModuleList(
            _DecoderBlock(i, o, s) for i, o, s in zip(inputs, channels, skip_channels, strict=True)
        )
