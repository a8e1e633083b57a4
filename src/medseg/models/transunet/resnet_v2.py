"""TransUNet's hybrid stem: a BiT-flavoured ResNetV2 (docs/methods/transunet.md#architecture).

* Weight-standardised convolutions (per output channel, biased variance, eps 1e-5), GroupNorm(32, eps 1e-6).
* A bottleneck unit is ``relu(GN(proj(x)) + GN(conv1x1(relu(GN(conv3x3_s(relu(GN(conv1x1(x))))))))``, the stride on
  the 3x3 convolution; the projection (``downsample`` + ``gn_proj``, whose GroupNorm has one group per channel as in
  the official code) exists when the stride or the width changes. Units per block (3, 4, 9), widths 256 / 512 / 1024
  with bottleneck widths 64 / 128 / 256.
* The max-pool has no padding, so block1 runs on (H/4 - 1)^2; its skip is zero-padded at the bottom and right to
  H/4, as the official code does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PreActBottleneck", "ResNetV2", "StdConv2d"]


class StdConv2d(nn.Conv2d):
    """Convolution with weight standardisation: each output filter is normalised to zero mean and unit variance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, unbiased=False)
        weight = (self.weight - mean) / torch.sqrt(var + 1e-5)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class PreActBottleneck(nn.Module):
    """ResNetV2 bottleneck unit, named as in the official code although it normalises *after* each convolution.

    ``relu(GN(proj(x)) + GN(conv1x1(relu(GN(conv3x3(relu(GN(conv1x1(x)))))))))``, the stride on the 3x3 convolution.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        mid_channels: bottleneck width.
        stride: stride of the 3x3 convolution and of the projection.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.gn1 = nn.GroupNorm(32, mid_channels, eps=1e-6)
        self.conv1 = StdConv2d(in_channels, mid_channels, kernel_size=1, bias=False)
        self.gn2 = nn.GroupNorm(32, mid_channels, eps=1e-6)
        self.conv2 = StdConv2d(mid_channels, mid_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.gn3 = nn.GroupNorm(32, out_channels, eps=1e-6)
        self.conv3 = StdConv2d(mid_channels, out_channels, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = StdConv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
            self.gn_proj = nn.GroupNorm(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.gn_proj(self.downsample(x))
        y = self.relu(self.gn1(self.conv1(x)))
        y = self.relu(self.gn2(self.conv2(y)))
        return self.relu(residual + self.gn3(self.conv3(y)))


class ResNetV2(nn.Module):
    """The hybrid stem: ``root`` (StdConv7x7 s2, GN, ReLU), a 3x3 s2 max-pool and three blocks of bottleneck units.

    Args:
        units: bottleneck units in ``block1`` .. ``block3``.
        width: root width; the blocks output ``4 * width``, ``8 * width`` and ``16 * width`` channels.
        in_channels: image channels.
    """

    def __init__(self, units: Sequence[int] = (3, 4, 9), width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        if len(units) != 3:
            raise ValueError(f"ResNetV2 needs three block depths, got {list(units)}")
        self.width = width
        self.root = nn.Sequential()
        self.root.add_module("conv", StdConv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False))
        self.root.add_module("gn", nn.GroupNorm(32, width, eps=1e-6))
        self.root.add_module("relu", nn.ReLU(inplace=True))
        self.body = nn.Sequential()
        previous = width
        for index, depth in enumerate(units):
            out_channels, mid_channels = width * 4 * 2**index, width * 2**index
            block = nn.Sequential()
            for unit in range(depth):
                stride = 2 if index and not unit else 1
                block.add_module(f"unit{unit + 1}", PreActBottleneck(previous, out_channels, mid_channels, stride))
                previous = out_channels
            self.body.add_module(f"block{index + 1}", block)

    @property
    def out_channels(self) -> int:
        """Channels of the deepest map (``16 * width``)."""
        return self.width * 16

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the stem.

        Args:
            x: image batch ``(B, C, H, W)``, H and W multiples of 16.

        Returns:
            The ``16 * width`` map at H/16 and the skips shallow to deep: root (H/2), block1 zero-padded to H/4,
            block2 (H/8).
        """
        height, width = x.shape[-2:]
        x = self.root(x)
        skips = [x]
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        blocks = list(self.body)
        for scale, block in zip((4, 8), blocks[:-1], strict=True):
            x = block(x)
            skips.append(F.pad(x, (0, width // scale - x.shape[-1], 0, height // scale - x.shape[-2])))
        return blocks[-1](x), skips
