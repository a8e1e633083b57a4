"""ResUNet++ (Jha et al., "ResUNet++: An Advanced Architecture for Medical Image Segmentation", ISM 2019).

Follows the official code (DebeshJha/ResUNetPlusPlus, Keras, and DebeshJha/ResUNetplusplus-PyTorch-), which applies
squeeze-excitation in every residual block, not only after encoder blocks 1-3 as the paper figure draws::

    input ── stem(16) ─────────────────────────────────────────────── c1 (H)
               └ ResBlock(32, s2) ─────────────────────────────────── c2 (H/2)
                   └ ResBlock(64, s2) ─────────────────────────────── c3 (H/4)
                       └ ResBlock(128, s2) ────────────────────────── c4 (H/8)
                           └ ASPP bridge (256) ────────────────────── b  (H/8)
    d1 = ResBlock(attention(c3, b)  ↑2 ⊕ c3 -> 128)                       (H/4)
    d2 = ResBlock(attention(c2, d1) ↑2 ⊕ c2 -> 64)                        (H/2)
    d3 = ResBlock(attention(c1, d2) ↑2 ⊕ c1 -> 32)                        (H)
    logits = Conv1x1(ASPP(d3 -> 16))

* Stem: ``SE(Conv3x3-BN-ReLU-Conv3x3(x) + BN(Conv1x1(x)))``; every other block is a pre-activation residual block
  with squeeze-excitation (r = 8, linears without bias), see :class:`~medseg.models.layers.residual.PreActResidualSE`.
* ASPP sums four dilated 3x3 branches (rates 1, 6, 12, 18, each with BN, no ReLU) and applies a 1x1 convolution.
* The attention block has no sigmoid (kept as coded); up-sampling is nearest-neighbour.

With filters (16, 32, 64, 128, 256) and 3 -> 1 channels the model has 4,062,993 parameters, the 4.063 M of the
official code. It returns logits (the Keras model ends in a sigmoid, the PyTorch one does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.layers.aspp import SummedASPP
from medseg.models.layers.attention import ResUNetPPAttention
from medseg.models.layers.residual import PreActResidualSE
from medseg.models.layers.se import SqueezeExcitation
from medseg.models.registry import register_model
from medseg.models.skips import build_skips

__all__ = ["ResUNetPlusPlus"]


class _Stem(nn.Module):
    """``SE(Conv3x3-BN-ReLU-Conv3x3(x) + BN(Conv1x1(x)))`` at full resolution."""

    def __init__(self, in_channels: int, out_channels: int, se_reduction: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1), nn.BatchNorm2d(out_channels))
        self.se = SqueezeExcitation(out_channels, se_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.main(x) + self.shortcut(x))


class _Decoder(nn.Module):
    """Attention on the deeper feature, nearest up-sampling x2, concatenation ``[up, skip]``, residual block."""

    def __init__(self, skip_channels: int, deep_channels: int, out_channels: int, se_reduction: int) -> None:
        super().__init__()
        self.attention = ResUNetPPAttention(skip_channels, deep_channels)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.block = PreActResidualSE(deep_channels + skip_channels, out_channels, 1, se_reduction)

    def forward(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        up = self.up(self.attention(skip, deep))
        return self.block(torch.cat([up, skip], dim=1))


@register_model(
    "resunetpp",
    paper="Jha et al., ISM 2019 (DebeshJha/ResUNetPlusPlus official code)",
    default_kwargs={"in_channels": 3, "num_classes": 1},
    reference_params=4_063_000,
)
class ResUNetPlusPlus(SegmentationModel):
    """ResUNet++ with squeeze-excitation in every block, ASPP bridge and head, and sigmoid-free attention.

    Args:
        in_channels: image channels.
        num_classes: logit channels (1 for a binary task, as in the paper).
        filters: the five widths: stem, the three strided encoder blocks and the ASPP bridge; the decoder
            mirrors them (``filters[3]``, ``filters[2]``, ``filters[1]``) and the head ASPP has ``filters[0]``.
        se_reduction: squeeze ratio of every squeeze-excitation (8 in the official code); a width below it
            gets a hidden size of 1.
        skip: skip connections: ``identity`` (as published) or ``tamosc`` (UTANet's mixture of skip experts over
            the three decoder skips; balance loss in ``aux_losses["tamosc_balance"]`` during training).
        skip_params: keyword arguments of the skip module (see :class:`~medseg.models.skips.TaMoSC`).

    Example:
        >>> model = ResUNetPlusPlus(in_channels=3, num_classes=1)
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 1, 64, 64])
    """

    output_stride = 8

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        filters: Sequence[int] = (16, 32, 64, 128, 256),
        se_reduction: int = 8,
        skip: str = "identity",
        skip_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if len(filters) != 5:
            raise ValueError(f"ResUNet++ needs five filter widths, got {list(filters)}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        f0, f1, f2, f3, f4 = filters
        self.stem = _Stem(in_channels, f0, se_reduction)
        self.enc2 = PreActResidualSE(f0, f1, 2, se_reduction)
        self.enc3 = PreActResidualSE(f1, f2, 2, se_reduction)
        self.enc4 = PreActResidualSE(f2, f3, 2, se_reduction)
        self.bridge = SummedASPP(f3, f4)
        self.skips = build_skips(skip, [f0, f1, f2], skip_params)
        self.dec1 = _Decoder(f2, f4, f3, se_reduction)
        self.dec2 = _Decoder(f1, f3, f2, se_reduction)
        self.dec3 = _Decoder(f0, f2, f1, se_reduction)
        self.head = nn.Sequential(SummedASPP(f1, f0), nn.Conv2d(f0, num_classes, kernel_size=1))

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        """Run ResUNet++.

        Args:
            x: image batch ``(B, in_channels, H, W)``, H and W multiples of 8.

        Returns:
            Logits, the four encoder stages (H .. H/8), the ASPP bridge (H/8) and the three decoder stages
            (H/4 .. H); ``final`` is the last decoder stage, which the ASPP + 1x1 head turns into logits.
        """
        c1 = self.stem(x)
        c2 = self.enc2(c1)
        c3 = self.enc3(c2)
        c4 = self.enc4(c3)
        bridge = self.bridge(c4)
        (s1, s2, s3), aux_losses = self.skips([c1, c2, c3])
        d1 = self.dec1(s3, bridge)
        d2 = self.dec2(s2, d1)
        d3 = self.dec3(s1, d2)
        return SegOutput(
            logits=self.head(d3),
            encoder=[c1, c2, c3, c4],
            bottleneck=bridge,
            decoder=[d1, d2, d3],
            final=d3,
            aux_losses=aux_losses,
        )
