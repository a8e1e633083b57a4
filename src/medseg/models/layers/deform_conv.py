"""Depthwise deformable convolution v1 (Dai et al. 2017, "Deformable Convolutional Networks") in pure PyTorch.

For output pixel ``(i, j)``, channel c and kernel tap ``k = (ki, kj)``, the input is read at the shifted position::

    p_k(i, j) = (i s - pad + ki dil + Δy_k(i, j),  j s - pad + kj dil + Δx_k(i, j))
    out[c, i, j] = Σ_k weight[c, k] · bilinear(input[c], p_k(i, j)) + bias[c]

Bilinear sampling treats everything outside the image as zero (each of the four neighbours outside counts as 0),
exactly as ``torchvision.ops.deform_conv2d``. No modulation mask (that is DCNv2). The offsets follow torchvision's
layout: ``2 · G · kh · kw`` channels, for each offset group G and tap k the pair ``(Δy, Δx)``; offset group g drives
the input channels ``g C / G .. (g + 1) C / G - 1``. ASC-Seg's deformable conv block uses 3x3, padding 1,
``groups = C`` and one offset group (18 offset channels), docs/methods/asc_seg.md#architecture.

:func:`deform_conv2d` uses ``torchvision.ops.deform_conv2d`` when torchvision imports and its compiled op runs,
and :func:`deform_conv2d_torch` otherwise. The pure version samples the ``kh · kw`` positions of every output pixel
with one ``grid_sample`` call, so it needs ``batch · C · kh · kw · H_out · W_out`` extra memory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

__all__ = ["DeformConv2d", "deform_conv2d", "deform_conv2d_torch", "torchvision_deform_conv2d"]

IntPair = int | tuple[int, int]


def _output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def deform_conv2d_torch(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> torch.Tensor:
    """Depthwise deformable convolution v1 with ``grid_sample`` (pure PyTorch, differentiable in every input).

    Args:
        input: ``(batch, C, H, W)``.
        offset: ``(batch, 2 G kh kw, H_out, W_out)``, ``(Δy, Δx)`` pairs per offset group and tap.
        weight: depthwise kernels ``(C, 1, kh, kw)``.
        bias: ``(C,)``.
        stride: convolution stride.
        padding: zero padding.
        dilation: kernel dilation.

    Returns:
        ``(batch, C, H_out, W_out)``.
    """
    batch, channels, height, width = input.shape
    if weight.shape[:2] != (channels, 1):
        raise ValueError(f"depthwise weight must be ({channels}, 1, kh, kw), got {tuple(weight.shape)}")
    kh, kw = weight.shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    out_h, out_w = _output_size(height, kh, sh, ph, dh), _output_size(width, kw, sw, pw, dw)
    taps = kh * kw
    groups = offset.shape[1] // (2 * taps)
    if offset.shape != (batch, 2 * groups * taps, out_h, out_w) or groups < 1 or channels % groups:
        raise ValueError(
            f"offset must be (batch={batch}, 2*G*{taps}, {out_h}, {out_w}) with G dividing {channels}, "
            f"got {tuple(offset.shape)}"
        )
    offset = offset.view(batch, groups, taps, 2, out_h, out_w)
    rows = torch.arange(out_h, device=input.device, dtype=offset.dtype) * sh - ph
    cols = torch.arange(out_w, device=input.device, dtype=offset.dtype) * sw - pw
    tap_rows = (torch.arange(kh, device=input.device, dtype=offset.dtype) * dh).repeat_interleave(kw)
    tap_cols = (torch.arange(kw, device=input.device, dtype=offset.dtype) * dw).repeat(kh)
    y = rows[None, :, None] + tap_rows[:, None, None] + offset[:, :, :, 0]  # (batch, G, taps, H_out, W_out)
    x = cols[None, None, :] + tap_cols[:, None, None] + offset[:, :, :, 1]
    # grid_sample with align_corners=False maps pixel p to (2p + 1) / size - 1.
    grid = torch.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], dim=-1)
    sampled = F.grid_sample(
        input.reshape(batch * groups, channels // groups, height, width),
        grid.view(batch * groups, taps * out_h, out_w, 2).to(input.dtype),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    ).view(batch, channels, taps, out_h, out_w)
    out = torch.einsum("bckhw,ck->bchw", sampled, weight.reshape(channels, taps))
    return out if bias is None else out + bias.view(1, -1, 1, 1)


@functools.cache
def torchvision_deform_conv2d() -> Callable[..., torch.Tensor] | None:
    """Return ``torchvision.ops.deform_conv2d`` if it imports and runs on a tiny CPU input, else ``None`` (cached)."""
    try:
        from torchvision.ops import deform_conv2d as tv_deform_conv2d

        tv_deform_conv2d(torch.zeros(1, 1, 3, 3), torch.zeros(1, 18, 3, 3), torch.zeros(1, 1, 3, 3), padding=(1, 1))
    except (ImportError, OSError, RuntimeError):  # absent, or its compiled ops do not match this torch
        return None
    return tv_deform_conv2d


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> torch.Tensor:
    """Depthwise deformable convolution v1: torchvision's kernel when available, :func:`deform_conv2d_torch` otherwise.

    Arguments and result as :func:`deform_conv2d_torch`.
    """
    kernel = torchvision_deform_conv2d()
    if kernel is None:
        return deform_conv2d_torch(input, offset, weight, bias, stride, padding, dilation)
    return kernel(input, offset, weight, bias, stride=_pair(stride), padding=_pair(padding), dilation=_pair(dilation))


class DeformConv2d(nn.Module):
    """Depthwise deformable convolution v1 whose offsets are given at call time (like torchvision's ``DeformConv2d``).

    Args:
        channels: input and output channels (one kernel per channel).
        kernel_size: kernel size.
        stride: stride.
        padding: zero padding.
        dilation: dilation.
        bias: learn a per-channel bias.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: IntPair = 3,
        stride: IntPair = 1,
        padding: IntPair = 1,
        dilation: IntPair = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.weight = nn.Parameter(torch.empty(channels, 1, *_pair(kernel_size)))
        self.bias = nn.Parameter(torch.empty(channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise like ``nn.Conv2d`` (and torchvision's ``DeformConv2d``): Kaiming-uniform weight, fan-in bias."""
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            nn.init.uniform_(self.bias, -(fan_in**-0.5), fan_in**-0.5)

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` ``(batch, C, H, W)`` at positions shifted by ``offset`` ``(batch, 2 G kh kw, H_out, W_out)``.

        Returns:
            ``(batch, C, H_out, W_out)``.
        """
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        channels, kernel = self.weight.shape[0], tuple(self.weight.shape[2:])
        return (
            f"{channels}, kernel_size={kernel}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, bias={self.bias is not None}"
        )
