"""The classic U-Net (Ronneberger et al., MICCAI 2015) as laid out in the widely used milesial/Pytorch-UNet.

Four down-sampling stages of double 3x3 convolutions (base width 64 doubling to 1024), a symmetric decoder with
either transposed-convolution or bilinear up-sampling, and concatenated skips. With bilinear up-sampling the
bottleneck and the decoder halve their widths, which is what makes the 17.26 M (1 -> 9) figure; the transposed
version has 31.04 M parameters (3 -> 9). Both counts are those of the official code with the defaults.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.layers import DoubleConv
from medseg.models.registry import register_model
from medseg.models.skips import build_skips

__all__ = ["UNet"]


class _Down(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class _Up(nn.Module):
    """Up-sample the deeper feature, concatenate ``[skip, up]`` and apply a double convolution."""

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool) -> None:
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(deep)
        pad_h, pad_w = skip.shape[-2] - up.shape[-2], skip.shape[-1] - up.shape[-1]
        if pad_h or pad_w:
            up = F.pad(up, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return self.conv(torch.cat([skip, up], dim=1))


@register_model(
    "unet",
    paper="Ronneberger et al., MICCAI 2015 (milesial/Pytorch-UNet layout)",
    default_kwargs={"in_channels": 3, "num_classes": 9},
    reference_params=31_040_000,
)
class UNet(SegmentationModel):
    """Classic U-Net.

    Args:
        in_channels: image channels.
        num_classes: logit channels (1 for a binary task).
        base_channels: width of the first stage; stages use 1x, 2x, 4x, 8x, 16x this.
        bilinear: bilinear up-sampling (halved decoder widths) instead of transposed convolutions.
        skip: skip connections: ``identity`` (plain) or ``tamosc`` (UTANet's mixture of skip experts over the four
            encoder stages; its balance loss is reported in ``aux_losses["tamosc_balance"]`` during training).
        skip_params: keyword arguments of the skip module (see :class:`~medseg.models.skips.TaMoSC`).

    Example:
        >>> model = UNet(in_channels=3, num_classes=2)
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 2, 64, 64])
    """

    output_stride = 16

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_channels: int = 64,
        bilinear: bool = False,
        skip: str = "identity",
        skip_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        widths = [base_channels * 2**i for i in range(5)]
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(in_channels, widths[0])
        self.down1 = _Down(widths[0], widths[1])
        self.down2 = _Down(widths[1], widths[2])
        self.down3 = _Down(widths[2], widths[3])
        self.down4 = _Down(widths[3], widths[4] // factor)
        self.skips = build_skips(skip, widths[:4], skip_params)
        self.up1 = _Up(widths[4], widths[3] // factor, bilinear)
        self.up2 = _Up(widths[3], widths[2] // factor, bilinear)
        self.up3 = _Up(widths[2], widths[1] // factor, bilinear)
        self.up4 = _Up(widths[1], widths[0], bilinear)
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        """Run the U-Net.

        Args:
            x: image batch ``(B, in_channels, H, W)``.

        Returns:
            Logits, the four encoder stages (H .. H/8), the bottleneck (H/16) and the four decoder stages
            (H/8 .. H); ``final`` is the last decoder stage.
        """
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        bottleneck = self.down4(x4)
        (s1, s2, s3, s4), aux_losses = self.skips([x1, x2, x3, x4])
        d1 = self.up1(bottleneck, s4)
        d2 = self.up2(d1, s3)
        d3 = self.up3(d2, s2)
        d4 = self.up4(d3, s1)
        return SegOutput(
            logits=self.head(d4),
            encoder=[x1, x2, x3, x4],
            bottleneck=bottleneck,
            decoder=[d1, d2, d3, d4],
            final=d4,
            aux_losses=aux_losses,
        )
