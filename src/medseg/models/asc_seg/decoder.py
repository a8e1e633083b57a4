"""ASC-Seg's decoder blocks: CNSD (cross-scale noise suppression decoder, docs/methods/asc_seg.md#cnsd)
= ReLU(SFM(MSFA(x)) + x), and the FAC skip connector (docs/methods/asc_seg.md#fac).

* MSFA: 8 branches, each Conv3x3 (C -> C/2, dilation d) + BN + ReLU -> Conv1x1 + BN: d = 1, 2, 3, 4 at native
  resolution; d = 1, 3 between a bilinear up-sampling and a max-pool; d = 1, 3 between a max-pool and a bilinear
  up-sampling. Concatenated (4C) -> grouped Conv3x3 (4C -> C, groups C) + BN + ReLU -> Conv1x1 + BN.
* SFM = DFB -> SAB -> CAB. DFB (denoising focus): BN, three depthwise 7/5/3 branches (BN, GELU, Conv1x1, BN),
  summed and normalised to t, high-pass h = t - AvgPool3(t), output t * σ(BN(Conv1x1(h))) + t. SAB (spatial
  attention): average- and max-pooled (3x3, stride 1) paths Conv1x1 -> BN -> GELU -> Conv1x1 (-> 1) -> BN, a
  Conv7x7 (2 -> 1) + BN + σ gate, x * gate + x. CAB (channel attention): GMP + GAP -> Conv1x1 -> BN -> GELU ->
  Conv1x1 -> BN -> σ, x * s + x (its BatchNorm over 1x1 maps needs batches of 2 or more in training).
* FAC (feature alignment connector): σ(BN(Conv1x1(Up2(d)))) * σ(e) + e; the deep feature gates the skip.

All up-samplings are bilinear with ``align_corners=True``.

**Reduced precision on the CPU.** The PMBs hand the decoder channels-last feature maps. PyTorch's CPU convolution
returns wrong weight gradients (NaN, ±1e35 or O(1) relative errors) for a **dilated** bf16 convolution on a
channels-last input of 32 x 32 or more, so ASC-Seg's loss became NaN at its second bf16-autocast step. The dilated
MSFA branches therefore take a contiguous (NCHW) copy of their input when the convolution runs in bf16 or fp16 on the
CPU (:func:`_dilated_conv_input`); float32 runs, other devices and traced graphs are untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.asc_seg.common import conv_bn, up2

__all__ = ["CAB", "CNSD", "DFB", "FAC", "MSFA", "SAB"]


_REDUCED_PRECISION = (torch.bfloat16, torch.float16)


def _dilated_conv_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` in NCHW layout where a dilated CPU convolution would run in reduced precision, else ``x`` as it is.

    A channels-last input makes the CPU backward pass of a dilated bf16 convolution return wrong weight gradients
    (see the module docstring); the NCHW kernels are correct.

    Args:
        x: input of a dilated convolution ``(B, C, H, W)``.

    Returns:
        ``x.contiguous()`` on the CPU under bf16/fp16 autocast or for a bf16/fp16 ``x``; ``x`` otherwise.
    """
    if x.device.type != "cpu":
        return x
    autocast = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") in _REDUCED_PRECISION
    return x.contiguous() if autocast or x.dtype in _REDUCED_PRECISION else x


class _MSFABranch(nn.Module):
    """Conv3x3 (C -> C/2, dilation d) + BN + ReLU -> Conv1x1 + BN, optionally between a resampling pair."""

    def __init__(self, channels: int, dilation: int, resample: str = "native") -> None:
        super().__init__()
        self.resample = resample
        self.dilated = dilation > 1
        half = channels // 2
        self.body = nn.Sequential(
            *conv_bn(channels, half, 3, padding=dilation, dilation=dilation), nn.ReLU(), *conv_bn(half, half)
        )

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(_dilated_conv_input(x) if self.dilated else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up_down":
            return F.max_pool2d(self._body(up2(x)), 2)
        if self.resample == "down_up":
            return up2(self._body(F.max_pool2d(x, 2)))
        return self._body(x)


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
            *conv_bn(4 * channels, channels, 3, groups=channels), nn.ReLU(), *conv_bn(channels, channels)
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
            nn.Sequential(*conv_bn(channels, channels, k, groups=channels), nn.GELU(), *conv_bn(channels, channels))
            for k in (7, 5, 3)
        )
        self.norm_sum = nn.BatchNorm2d(channels)
        self.gate = nn.Sequential(*conv_bn(channels, channels), nn.Sigmoid())

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
            return nn.Sequential(pool, *conv_bn(channels, channels), nn.GELU(), *conv_bn(channels, 1))

        self.avg = saliency(nn.AvgPool2d(3, stride=1, padding=1))
        self.max = saliency(nn.MaxPool2d(3, stride=1, padding=1))
        self.gate = nn.Sequential(*conv_bn(2, 1, 7), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(torch.cat([self.avg(x), self.max(x)], dim=1)) * x + x


class CAB(nn.Module):
    """Channel attention block: ``x * σ(MLP(GMP(x) + GAP(x))) + x`` with a 1x1-convolution MLP and BatchNorm.

    Args:
        channels: channels C.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Sequential(*conv_bn(channels, channels), nn.GELU(), *conv_bn(channels, channels), nn.Sigmoid())

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
        self.align = nn.Sequential(*conv_bn(deep_channels, skip_channels), nn.Sigmoid())

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.align(up2(deep)) * torch.sigmoid(skip) + skip
