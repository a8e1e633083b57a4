"""The ASC-Seg model: ASE encoder, CNSD decoder with FAC skips, four deep-supervision heads.

docs/methods/asc_seg.md#architecture; the reported model has widths [8, 16, 24, 32] (official ``train.py``). At
256 px::

    image 3@256
    e1 = ASE(3 -> 8)                      8@256 ────────────────────────────────┐
    e2 = ASE(maxpool, 8 -> 16)           16@128 ──────────────────────┐         │
    e3 = ASE(maxpool, 16 -> 24)          24@64  ────────────┐         │         │
    e4 = ASE(maxpool, 24 -> 32)          32@32              │         │         │
    d4 = CNSD(e4)                        32@32 ── FAC(d4, e3)          │         │   head 4 (x8)
    d3 = CNSD(FAC(d4, e3))               24@64 ──────────── FAC(d3, e2)         │   head 3 (x4)
    d2 = CNSD(FAC(d3, e2))               16@128 ─────────────────────── FAC(d2, e1)  head 2 (x2)
    d1 = CNSD(FAC(d2, e1))                8@256                                      head 1 = the prediction

Every decoder level halves its input, so H and W must be multiples of 16.

**Heads (deep supervision).** The official head i up-samples d_i by 2^(i-1) to the input size, then applies Conv1x1
(-> 1) and a sigmoid. Here each head's Conv1x1 runs at its decoder resolution and the losses up-sample the logits
(:class:`medseg.objectives.deep_supervision.DeepSupervisionTerm`, bilinear, ``align_corners=True``): the same
numbers, since a 1x1 convolution commutes with bilinear interpolation (its weights sum to 1), and the sigmoid
belongs to the loss. ``logits`` = head 1 (from d1, full resolution, the prediction used for validation and test);
``aux_logits`` = [head 2 (d2, H/2), head 3 (d3, H/4), head 4 (d4, H/8)]. The official loss sums BceDice over the four
heads with weight 1 each (docs/methods/asc_seg.md#loss).

Size with widths [8, 16, 24, 32], 3 -> 1 channels: 222,408 parameters (the spec's 0.2224 M); thop counts 218,688
(the paper's 0.2186 M): it skips the Mamba blocks (252 + 552 + 900 + 1296) and the deformable-conv weights
(9 · 80), see :mod:`medseg.models.params`.

Features (``forward_features``): ``encoder`` = [e1, e2, e3], ``bottleneck`` = e4, ``decoder`` = [d4, d3, d2, d1],
``final`` = d1. ``forward`` returns logits (the official model returns the four sigmoid maps).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medseg.models.asc_seg.decoder import CNSD, FAC
from medseg.models.asc_seg.encoder import MAMBA_CHUNK_SIZE, ASEBlock
from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.registry import register_model

__all__ = ["ASCSeg"]

_PAPER = "ASC-Seg, BSPC and ICME 2025 versions (ILoveBSPC/ASC-Seg, ILoveIcme2025/ASC-Seg)"


@register_model(
    "asc_seg",
    paper=_PAPER,
    default_kwargs={"in_channels": 3, "num_classes": 1},
    reference_params=222_400,
)
class ASCSeg(SegmentationModel):
    """ASC-Seg: ASE encoder, CNSD decoder with FAC skips, four deep-supervision heads.

    Args:
        in_channels: image channels.
        num_classes: logit channels of every head (1 for a binary task, as in the paper).
        channels: widths of the four levels, each a multiple of 4 (the reported model: [8, 16, 24, 32]).
        mamba_chunk_size: chunk length of the CPU selective scan in the PMBs (a power of two).

    Example:
        >>> model = ASCSeg(channels=(4, 8, 12, 16))
        >>> out = model.forward_features(torch.zeros(2, 3, 32, 32))
        >>> out.logits.shape, [tuple(a.shape[-2:]) for a in out.aux_logits]
        (torch.Size([2, 1, 32, 32]), [(16, 16), (8, 8), (4, 4)])
    """

    output_stride = 16

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        channels: Sequence[int] = (8, 16, 24, 32),
        mamba_chunk_size: int = MAMBA_CHUNK_SIZE,
    ) -> None:
        super().__init__()
        channels = list(channels)
        if len(channels) != 4:
            raise ValueError(f"ASC-Seg has four levels; got channels {channels}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        widths = [in_channels, *channels]
        self.encoder = nn.ModuleList(
            ASEBlock(widths[i], widths[i + 1], pool=i > 0, chunk_size=mamba_chunk_size) for i in range(4)
        )
        self.decoder = nn.ModuleList(CNSD(c) for c in channels)
        self.connectors = nn.ModuleList(FAC(channels[i + 1], channels[i]) for i in range(3))
        self.heads = nn.ModuleList(nn.Conv2d(c, num_classes, kernel_size=1) for c in channels)

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        """Run ASC-Seg.

        Args:
            x: image batch ``(B, in_channels, H, W)``, H and W multiples of 16.

        Returns:
            ``logits`` from head 1 at ``(H, W)``; ``aux_logits`` from heads 2, 3, 4 at ``H/2``, ``H/4``, ``H/8``;
            ``encoder`` [e1, e2, e3], ``bottleneck`` e4, ``decoder`` [d4, d3, d2, d1], ``final`` d1.
        """
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        decoded = [self.decoder[3](skips[3])]
        for level in (2, 1, 0):
            decoded.append(self.decoder[level](self.connectors[level](decoded[-1], skips[level])))
        d4, d3, d2, d1 = decoded
        return SegOutput(
            logits=self.heads[0](d1),
            encoder=skips[:3],
            bottleneck=skips[3],
            decoder=decoded,
            final=d1,
            aux_logits=[self.heads[1](d2), self.heads[2](d3), self.heads[3](d4)],
        )
