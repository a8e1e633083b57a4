"""Attention U-Net (Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018).

A U-Net whose skip features are re-weighted by additive attention gates driven by the decoder, in the layout of
the widely used LeeJunHyun/Image_Segmentation ``AttU_Net`` (the authors' code is ozan-oktay/Attention-Gated-Networks)::

    x1 = conv(64)                 (H)        d2 = conv([gate(up(d3), x1), up(d3)]) -> 64    (H)
    x2 = pool -> conv(128)        (H/2)      d3 = conv([gate(up(d4), x2), up(d4)]) -> 128   (H/2)
    x3 = pool -> conv(256)        (H/4)      d4 = conv([gate(up(d5), x3), up(d5)]) -> 256   (H/4)
    x4 = pool -> conv(512)        (H/8)      d5 = conv([gate(up(x5), x4), up(x5)]) -> 512   (H/8)
    x5 = pool -> conv(1024)       (H/16, bottleneck)
    logits = Conv1x1(d2)

* conv: two Conv3x3 (with bias) -> BN -> ReLU; pool: max-pool 2x2.
* up: nearest up-sampling x2 followed by Conv3x3 -> BN -> ReLU that halves the width.
* gate: :class:`~medseg.models.layers.attention.AdditiveAttentionGate` with ``F_int`` half the skip width,
  applied at the skip resolution (the gating signal is the up-sampled decoder feature).

With base 64 and 3 -> 1 channels the model has 34,878,573 parameters: it reproduces the 34.88 M commonly quoted
for LeeJunHyun's ``AttU_Net(img_ch=3, output_ch=1)``, whose modules it mirrors one for one.
"""

from __future__ import annotations

import torch
from torch import nn

from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.layers.attention import AdditiveAttentionGate
from medseg.models.layers.vgg import VGGBlock
from medseg.models.registry import register_model

__all__ = ["AttentionUNet"]


class _Up(nn.Module):
    """Gate the skip with the up-sampled deeper feature, concatenate ``[gated skip, up]`` and apply two convs."""

    def __init__(self, deep_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), VGGBlock(deep_channels, out_channels, num_convs=1)
        )
        self.gate = AdditiveAttentionGate(out_channels, out_channels, out_channels // 2)
        self.conv = VGGBlock(2 * out_channels, out_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(deep)
        return self.conv(torch.cat([self.gate(up, skip), up], dim=1))


@register_model(
    "attention_unet",
    paper="Oktay et al., MIDL 2018 (LeeJunHyun/Image_Segmentation AttU_Net layout)",
    default_kwargs={"in_channels": 3, "num_classes": 1},
    reference_params=34_880_000,
)
class AttentionUNet(SegmentationModel):
    """U-Net with additive attention gates on the four skip connections.

    Args:
        in_channels: image channels.
        num_classes: logit channels (1 for a binary task).
        base_channels: width of the first stage; stages use 1x, 2x, 4x, 8x, 16x this.

    Example:
        >>> model = AttentionUNet(in_channels=3, num_classes=1, base_channels=8)
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 1, 64, 64])
    """

    output_stride = 16

    def __init__(self, in_channels: int = 3, num_classes: int = 1, base_channels: int = 64) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        widths = [base_channels * 2**i for i in range(5)]
        self.pool = nn.MaxPool2d(2)
        self.enc = nn.ModuleList(
            VGGBlock(cin, cout) for cin, cout in zip([in_channels, *widths[:-1]], widths, strict=True)
        )
        self.dec = nn.ModuleList(_Up(widths[i + 1], widths[i]) for i in reversed(range(4)))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        """Run the Attention U-Net.

        Args:
            x: image batch ``(B, in_channels, H, W)``, H and W multiples of 16.

        Returns:
            Logits, the four encoder stages (H .. H/8), the bottleneck (H/16) and the four decoder stages
            (H/8 .. H); ``final`` is the last decoder stage.
        """
        features = [self.enc[0](x)]
        for block in self.enc[1:]:
            features.append(block(self.pool(features[-1])))
        *encoder, bottleneck = features
        decoder = []
        deep = bottleneck
        for block, skip in zip(self.dec, reversed(encoder), strict=True):
            deep = block(deep, skip)
            decoder.append(deep)
        return SegOutput(logits=self.head(deep), encoder=encoder, bottleneck=bottleneck, decoder=decoder, final=deep)
