"""ASC-Seg: Adaptive Structure alignment and Cross-scale decoding, docs/methods/asc_seg.md#architecture.

Official code: ILoveBSPC/ASC-Seg ``c1a81be`` (BSPC version) and ILoveIcme2025/ASC-Seg ``ebc1613`` (ICME version),
``models/Encoder.py``, ``Decoder.py``, ``Model.py``; the reported model has widths [8, 16, 24, 32] (``train.py``).
At 256 px::

    image 3@256
    e1 = ASE(3 -> 8)                      8@256 ────────────────────────────────┐
    e2 = ASE(maxpool, 8 -> 16)           16@128 ──────────────────────┐         │
    e3 = ASE(maxpool, 16 -> 24)          24@64  ────────────┐         │         │
    e4 = ASE(maxpool, 24 -> 32)          32@32              │         │         │
    d4 = CNSD(e4)                        32@32 ── FAC(d4, e3)          │         │   head 4 (x8)
    d3 = CNSD(FAC(d4, e3))               24@64 ──────────── FAC(d3, e2)         │   head 3 (x4)
    d2 = CNSD(FAC(d3, e2))               16@128 ─────────────────────── FAC(d2, e1)  head 2 (x2)
    d1 = CNSD(FAC(d2, e1))                8@256                                      head 1 = the prediction

**ASE** (adaptive structure encoder) block = [maxpool 2] -> IPCB -> PMB(x) + DCB(x):

* IPCB (inverted pyramid convolutions): Conv7x7 -> Conv3x3 -> Conv1x1, each with bias, BN and ReLU.
* PMB (parallel Mamba): tokens X (row-major), one LayerNorm reused three times; the normalised tokens are split into
  4 channel chunks that all go through **one shared** Mamba (d_model C/4, d_state 16, d_conv 4, expand 2) with a
  residual; concatenate -> LN -> Linear(C, C) -> + X = S; FFN on LN(S): Conv1x1 -> depthwise Conv7x7 -> GELU ->
  Conv1x1. The block returns the FFN output only (no residual from S), as coded. The four chunks are scanned as one
  batch of 4B sequences (exact: they share the weights).
* DCB (deformable convolution): y = GELU(BN(Conv1x1(x))); offsets = BN(Conv3x3(y) -> 18); z = depthwise deformable
  Conv3x3 (DCNv1, no bias) of y; output GELU(BN(Conv1x1(z))) * x + x.

**CNSD** (cross-scale noise suppression decoder) = ReLU(SFM(MSFA(x)) + x):

* MSFA: 8 branches, each Conv3x3 (C -> C/2, dilation d) + BN + ReLU -> Conv1x1 + BN: d = 1, 2, 3, 4 at native
  resolution; d = 1, 3 between a bilinear up-sampling and a max-pool; d = 1, 3 between a max-pool and a bilinear
  up-sampling. Concatenated (4C) -> grouped Conv3x3 (4C -> C, groups C) + BN + ReLU -> Conv1x1 + BN.
* SFM = DFB -> SAB -> CAB. DFB (denoising focus): BN, three depthwise 7/5/3 branches (BN, GELU, Conv1x1, BN),
  summed and normalised to t, high-pass h = t - AvgPool3(t), output t * σ(BN(Conv1x1(h))) + t. SAB (spatial
  attention): average- and max-pooled (3x3, stride 1) paths Conv1x1 -> BN -> GELU -> Conv1x1 (-> 1) -> BN, a
  Conv7x7 (2 -> 1) + BN + σ gate, x * gate + x. CAB (channel attention): GMP + GAP -> Conv1x1 -> BN -> GELU ->
  Conv1x1 -> BN -> σ, x * s + x (its BatchNorm over 1x1 maps needs batches of 2 or more in training).
* FAC (feature alignment connector): σ(BN(Conv1x1(Up2(d)))) * σ(e) + e; the deep feature gates the skip.

All up-samplings are bilinear with ``align_corners=True``; every decoder level halves its input, so H and W must be
multiples of 16.

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
import torch.nn.functional as F
from torch import nn

from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.layers.deform_conv import DeformConv2d
from medseg.models.layers.mamba import Mamba
from medseg.models.registry import register_model

__all__ = ["CAB", "CNSD", "DCB", "DFB", "FAC", "IPCB", "MSFA", "PMB", "SAB", "ASCSeg", "ASEBlock"]

_PAPER = "ASC-Seg, BSPC and ICME 2025 versions (ILoveBSPC/ASC-Seg, ILoveIcme2025/ASC-Seg)"
_MAMBA_CHUNK_SIZE = 1024
"""Chunk length of the CPU selective scan in the PMBs: their scans are long and narrow (65,536 steps of 4 channels at
level 1 for a 256 px input), where long chunks cost fewer sequential steps and their buffers stay small."""


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, **conv_kwargs: int) -> list[nn.Module]:
    """Conv2d (with bias) followed by BatchNorm2d, as a list of modules for an ``nn.Sequential``."""
    return [
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=conv_kwargs.pop("padding", kernel_size // 2), **conv_kwargs
        ),
        nn.BatchNorm2d(out_channels),
    ]


# ---------------------------------------------------------------------------------------------------------- encoder


class IPCB(nn.Sequential):
    """Inverted pyramid convolution block: Conv7x7 -> Conv3x3 -> Conv1x1, each with BN and ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            *_conv_bn(in_channels, out_channels, 7),
            nn.ReLU(),
            *_conv_bn(out_channels, out_channels, 3),
            nn.ReLU(),
            *_conv_bn(out_channels, out_channels, 1),
            nn.ReLU(),
        )


class PMB(nn.Module):
    """Parallel Mamba block: one shared Mamba over four channel chunks, then a convolutional FFN (NCHW in and out).

    Args:
        channels: channels C (a multiple of 4).
        chunk_size: chunk length of the CPU selective scan.
    """

    def __init__(self, channels: int, chunk_size: int = _MAMBA_CHUNK_SIZE) -> None:
        super().__init__()
        if channels % 4:
            raise ValueError(f"the parallel Mamba block splits channels into 4 chunks; got {channels} channels")
        self.norm = nn.LayerNorm(channels)
        self.mamba = Mamba(channels // 4, d_state=16, d_conv=4, expand=2, chunk_size=chunk_size)
        self.proj = nn.Linear(channels, channels)
        self.ffn = nn.Sequential(
            nn.Conv2d(channels, channels, 1),
            nn.Conv2d(channels, channels, 7, padding=3, groups=channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``(B, C, H, W)``; returns the FFN output ``(B, C, H, W)``."""
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C), row-major
        normed = self.norm(tokens)
        chunks = torch.cat(normed.chunk(4, dim=-1), dim=0)  # (4B, HW, C/4): one Mamba call for the four chunks
        mixed = torch.cat((self.mamba(chunks) + chunks).chunk(4, dim=0), dim=-1)
        stage = self.proj(self.norm(mixed)) + tokens
        return self.ffn(self.norm(stage).transpose(1, 2).reshape(batch, channels, height, width))


class DCB(nn.Module):
    """Deformable convolution block: a depthwise deformable 3x3 convolution whose offsets are predicted from its input.

    Args:
        channels: channels C.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pre = nn.Sequential(*_conv_bn(channels, channels), nn.GELU())
        self.offset = nn.Sequential(*_conv_bn(channels, 2 * 3 * 3, 3))
        self.deform = DeformConv2d(channels, kernel_size=3, padding=1)
        self.balance = nn.Sequential(*_conv_bn(channels, channels))
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``GELU(balance(deform(y, offset(y)))) * x + x`` with ``y = pre(x)``."""
        y = self.pre(x)
        return self.act(self.balance(self.deform(y, self.offset(y)))) * x + x


class ASEBlock(nn.Module):
    """Adaptive structure encoder block: ``[maxpool] -> IPCB -> PMB(x) + DCB(x)``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        pool: start with a 2x2 max-pool.
        chunk_size: chunk length of the PMB's selective scan.
    """

    def __init__(self, in_channels: int, out_channels: int, pool: bool, chunk_size: int = _MAMBA_CHUNK_SIZE) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.ipcb = IPCB(in_channels, out_channels)
        self.pmb = PMB(out_channels, chunk_size)
        self.dcb = DCB(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ipcb(self.pool(x))
        return self.pmb(x) + self.dcb(x)


# ---------------------------------------------------------------------------------------------------------- decoder


class _MSFABranch(nn.Module):
    """Conv3x3 (C -> C/2, dilation d) + BN + ReLU -> Conv1x1 + BN, optionally between a resampling pair."""

    def __init__(self, channels: int, dilation: int, resample: str = "native") -> None:
        super().__init__()
        self.resample = resample
        half = channels // 2
        self.body = nn.Sequential(
            *_conv_bn(channels, half, 3, padding=dilation, dilation=dilation), nn.ReLU(), *_conv_bn(half, half)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up_down":
            return F.max_pool2d(self.body(_up2(x)), 2)
        if self.resample == "down_up":
            return _up2(self.body(F.max_pool2d(x, 2)))
        return self.body(x)


class MSFA(nn.Module):
    """Multi-scale feature aggregation: eight dilated / resampled branches fused by a grouped convolution.

    Args:
        channels: channels C (even).
    """

    _BRANCHES = (
        (1, "native"),
        (2, "native"),
        (3, "native"),
        (4, "native"),
        (1, "up_down"),
        (3, "up_down"),
        (1, "down_up"),
        (3, "down_up"),
    )

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(_MSFABranch(channels, d, mode) for d, mode in self._BRANCHES)
        self.fuse = nn.Sequential(
            *_conv_bn(4 * channels, channels, 3, groups=channels), nn.ReLU(), *_conv_bn(channels, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))


class DFB(nn.Module):
    """Denoising focus block: multi-kernel depthwise features, gated by their high-pass residual.

    Args:
        channels: channels C.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm_in = nn.BatchNorm2d(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*_conv_bn(channels, channels, k, groups=channels), nn.GELU(), *_conv_bn(channels, channels))
            for k in (7, 5, 3)
        )
        self.norm_sum = nn.BatchNorm2d(channels)
        self.gate = nn.Sequential(*_conv_bn(channels, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.norm_in(x)
        t = self.norm_sum(sum(branch(normed) for branch in self.branches))
        high = t - F.avg_pool2d(t, 3, stride=1, padding=1)
        return t * self.gate(high) + t


class SAB(nn.Module):
    """Spatial attention block: average- and max-pooled saliency maps fused by a 7x7 convolution into a gate.

    Args:
        channels: channels C.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()

        def saliency(pool: nn.Module) -> nn.Sequential:
            return nn.Sequential(pool, *_conv_bn(channels, channels), nn.GELU(), *_conv_bn(channels, 1))

        self.avg = saliency(nn.AvgPool2d(3, stride=1, padding=1))
        self.max = saliency(nn.MaxPool2d(3, stride=1, padding=1))
        self.gate = nn.Sequential(*_conv_bn(2, 1, 7), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(torch.cat([self.avg(x), self.max(x)], dim=1)) * x + x


class CAB(nn.Module):
    """Channel attention block: ``x * σ(MLP(GMP(x) + GAP(x))) + x`` with a 1x1-convolution MLP and BatchNorm.

    Args:
        channels: channels C.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Sequential(
            *_conv_bn(channels, channels), nn.GELU(), *_conv_bn(channels, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_max_pool2d(x, 1) + F.adaptive_avg_pool2d(x, 1)
        return self.score(pooled) * x + x


class CNSD(nn.Module):
    """Cross-scale noise suppression decoder block: ``ReLU(SFM(MSFA(x)) + x)`` with SFM = DFB -> SAB -> CAB.

    Args:
        channels: channels C.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.msfa = MSFA(channels)
        self.sfm = nn.Sequential(DFB(channels), SAB(channels), CAB(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.sfm(self.msfa(x)) + x)


class FAC(nn.Module):
    """Feature alignment connector: ``σ(BN(Conv1x1(Up2(deep)))) * σ(skip) + skip``.

    Args:
        deep_channels: channels of the deeper decoder feature.
        skip_channels: channels of the encoder skip (and of the output).
    """

    def __init__(self, deep_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.align = nn.Sequential(*_conv_bn(deep_channels, skip_channels), nn.Sigmoid())

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.align(_up2(deep)) * torch.sigmoid(skip) + skip


# ------------------------------------------------------------------------------------------------------------ model


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
        mamba_chunk_size: int = _MAMBA_CHUNK_SIZE,
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
