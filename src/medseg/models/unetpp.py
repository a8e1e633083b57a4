"""U-Net++ (Zhou et al., "UNet++: A Nested U-Net Architecture for Medical Image Segmentation", DLMIA 2018).

Nested, densely connected skip pathways between an encoder and a decoder of VGG blocks, in the layout of the
widely used 4uiiurz1/pytorch-nested-unet ``NestedUNet`` (the authors' Keras code is MrGiovanni/UNetPlusPlus). Node
``X(i, j)`` sits at depth ``i`` (resolution H / 2^i) and column ``j``::

    X(i, 0) = VGG(pool(X(i-1, 0)))                                   encoder, widths 32, 64, 128, 256, 512
    X(i, j) = VGG([X(i, 0), ..., X(i, j-1), up(X(i+1, j-1))])        nested skips, j >= 1

    X00 ── X01 ── X02 ── X03 ── X04 ── head 4 (logits)
      X10 ── X11 ── X12 ── X13
        X20 ── X21 ── X22
          X30 ── X31
            X40

VGG is two Conv3x3 (with bias) -> BN -> ReLU; up is bilinear x2 with ``align_corners=True``.

The model returns the head on ``X(0, 4)`` as ``logits``. With ``deep_supervision=True`` three more 1x1 heads on
``X(0, 1)``, ``X(0, 2)`` and ``X(0, 3)`` fill ``aux_logits`` (in that order, all at full resolution), as the four
outputs of the reference code, whose last one is ``logits`` here. With widths 32..512 and 3 -> 1 channels the model
has 9,163,329 parameters (9,163,428 with deep supervision), the 9.16 M quoted for this layout; it mirrors the
modules of the reference code one for one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.layers.vgg import VGGBlock
from medseg.models.registry import register_model

__all__ = ["UNetPlusPlus"]


@register_model(
    "unetpp",
    paper="Zhou et al., DLMIA 2018 (4uiiurz1/pytorch-nested-unet NestedUNet layout)",
    default_kwargs={"in_channels": 3, "num_classes": 1},
    reference_params=9_160_000,
)
class UNetPlusPlus(SegmentationModel):
    """U-Net++ with nested dense skips and optional deep supervision.

    Args:
        in_channels: image channels.
        num_classes: logit channels (1 for a binary task).
        filters: the five depth widths, shallow to deep.
        deep_supervision: add heads on ``X(0, 1..3)`` whose outputs go to ``SegOutput.aux_logits``.

    Example:
        >>> model = UNetPlusPlus(in_channels=3, num_classes=1, deep_supervision=True)
        >>> len(model.forward_features(torch.zeros(1, 3, 32, 32)).aux_logits)
        3
    """

    output_stride = 16

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        filters: Sequence[int] = (32, 64, 128, 256, 512),
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        if len(filters) != 5:
            raise ValueError(f"U-Net++ needs five filter widths, got {list(filters)}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.deep_supervision = deep_supervision
        self.depth = depth = len(filters)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.nodes = nn.ModuleDict()
        for i in range(depth):
            self.nodes[f"{i}_0"] = VGGBlock(filters[i - 1] if i else in_channels, filters[i])
            for j in range(1, depth - i):
                self.nodes[f"{i}_{j}"] = VGGBlock(j * filters[i] + filters[i + 1], filters[i])
        self.head = nn.Conv2d(filters[0], num_classes, kernel_size=1)
        self.aux_heads = nn.ModuleList(
            nn.Conv2d(filters[0], num_classes, kernel_size=1) for _ in range(depth - 2 if deep_supervision else 0)
        )

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        """Run U-Net++.

        Args:
            x: image batch ``(B, in_channels, H, W)``, H and W multiples of 16.

        Returns:
            Logits from ``X(0, 4)``; ``encoder`` is ``X(0..3, 0)``, ``bottleneck`` is ``X(4, 0)``, ``decoder`` the
            outer diagonal ``X(3, 1), X(2, 2), X(1, 3), X(0, 4)`` and ``final`` is ``X(0, 4)``; ``aux_logits`` holds
            the heads on ``X(0, 1..3)`` when deep supervision is on.
        """
        depth = self.depth
        grid: list[list[torch.Tensor]] = [[] for _ in range(depth)]
        grid[0].append(self.nodes["0_0"](x))
        for diagonal in range(1, depth):
            grid[diagonal].append(self.nodes[f"{diagonal}_0"](self.pool(grid[diagonal - 1][0])))
            for i in reversed(range(diagonal)):
                j = diagonal - i
                inputs = [*grid[i], self.up(grid[i + 1][j - 1])]
                grid[i].append(self.nodes[f"{i}_{j}"](torch.cat(inputs, dim=1)))
        decoder = [grid[i][depth - 1 - i] for i in reversed(range(depth - 1))]
        aux_logits = (
            [head(feature) for head, feature in zip(self.aux_heads, grid[0][1:-1], strict=True)]
            if self.deep_supervision
            else []
        )
        return SegOutput(
            logits=self.head(grid[0][-1]),
            encoder=[grid[i][0] for i in range(depth - 1)],
            bottleneck=grid[depth - 1][0],
            decoder=decoder,
            final=grid[0][-1],
            aux_logits=aux_logits,
        )
