"""Layers shared by ASC-Seg's encoder and decoder blocks: Conv + BatchNorm, bilinear x2 up-sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["conv_bn", "up2"]


def up2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 up-sampling with ``align_corners=True`` (every up-sampling of ASC-Seg)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, **conv_kwargs: int) -> list[nn.Module]:
    """Conv2d (with bias) followed by BatchNorm2d, as a list of modules for an ``nn.Sequential``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: convolution kernel side; the padding defaults to ``kernel_size // 2``.
        **conv_kwargs: other ``nn.Conv2d`` arguments (``padding``, ``dilation``, ``groups``).

    Returns:
        ``[Conv2d, BatchNorm2d]``.
    """
    return [
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=conv_kwargs.pop("padding", kernel_size // 2), **conv_kwargs
        ),
        nn.BatchNorm2d(out_channels),
    ]
