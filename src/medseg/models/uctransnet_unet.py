"""The plain U-Net baseline of the UCTransNet repository (Wang et al., AAAI 2022; McGregorWwww/UCTransNet).

The U-Net that UCTransNet is compared with and pre-trained from (P-UCT protocol), as coded in ``nets/UNet.py``::

    x1 = CBN(64)                  (H)        d1 = 2 x CBN([ConvT(d2), x1] -> 64)    (H)
    x2 = pool -> 2 x CBN(128)     (H/2)      d2 = 2 x CBN([ConvT(d3), x2] -> 64)    (H/2)
    x3 = pool -> 2 x CBN(256)     (H/4)      d3 = 2 x CBN([ConvT(d4), x3] -> 128)   (H/4)
    x4 = pool -> 2 x CBN(512)     (H/8)      d4 = 2 x CBN([ConvT(x5), x4] -> 256)   (H/8)
    x5 = pool -> 2 x CBN(512)     (H/16, bottleneck)
    logits = Conv1x1(d1)

CBN is Conv3x3 (with bias) -> BN -> ReLU. Unlike the classic U-Net the stem is a single CBN, the bottleneck keeps
8x the base width, and every ConvT (2x2, stride 2) keeps the width of the deeper feature before the concatenation.

The up-sampling is the 2x2 transposed convolution of ``nets/UNet.py`` (commit 4cf4b3c, where a nearest
``nn.Upsample`` line is commented out; with it the model would have 13.36 M parameters). With base 64 and 3 -> 1
channels the model has 14,751,873 parameters, within 0.01% of the 14.7510 M (thop) of the ASC-Seg comparison
table. The official module ends in a sigmoid when it has one output channel; this one returns logits.
"""

from __future__ import annotations

import torch
from torch import nn

from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.layers.vgg import VGGBlock
from medseg.models.registry import register_model

__all__ = ["UCTransNetUNet"]


class _Up(nn.Module):
    """Transposed-convolution up-sampling at constant width, concatenation ``[up, skip]`` and two CBNs."""

    def __init__(self, deep_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(deep_channels, deep_channels, kernel_size=2, stride=2)
        self.conv = VGGBlock(deep_channels + skip_channels, out_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(deep), skip], dim=1))


@register_model(
    "unet_uct",
    paper="UCTransNet repository U-Net baseline (Wang et al., AAAI 2022, McGregorWwww/UCTransNet nets/UNet.py)",
    default_kwargs={"in_channels": 3, "num_classes": 1},
    reference_params=14_751_000,
)
class UCTransNetUNet(SegmentationModel):
    """U-Net with a single-convolution stem and transposed-convolution up-sampling, as in UCTransNet's baseline.

    Args:
        in_channels: image channels.
        num_classes: logit channels (1 for a binary task).
        base_channels: stem width ``C``; the encoder uses C, 2C, 4C, 8C, 8C and the decoder 4C, 2C, C, C.

    Example:
        >>> model = UCTransNetUNet(in_channels=3, num_classes=1, base_channels=8)
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 1, 64, 64])
    """

    output_stride = 16

    def __init__(self, in_channels: int = 3, num_classes: int = 1, base_channels: int = 64) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        c = base_channels
        self.inc = VGGBlock(in_channels, c, num_convs=1)
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), VGGBlock(cin, cout))
            for cin, cout in [(c, 2 * c), (2 * c, 4 * c), (4 * c, 8 * c), (8 * c, 8 * c)]
        )
        self.up = nn.ModuleList(
            _Up(deep, skip, out)
            for deep, skip, out in [(8 * c, 8 * c, 4 * c), (4 * c, 4 * c, 2 * c), (2 * c, 2 * c, c), (c, c, c)]
        )
        self.head = nn.Conv2d(c, num_classes, kernel_size=1)

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        """Run the U-Net.

        Args:
            x: image batch ``(B, in_channels, H, W)``, H and W multiples of 16.

        Returns:
            Logits, the four encoder stages (H .. H/8), the bottleneck (H/16) and the four decoder stages
            (H/8 .. H); ``final`` is the last decoder stage.
        """
        features = [self.inc(x)]
        for block in self.down:
            features.append(block(features[-1]))
        *encoder, bottleneck = features
        decoder = []
        deep = bottleneck
        for block, skip in zip(self.up, reversed(encoder), strict=True):
            deep = block(deep, skip)
            decoder.append(deep)
        return SegOutput(logits=self.head(deep), encoder=encoder, bottleneck=bottleneck, decoder=decoder, final=deep)
