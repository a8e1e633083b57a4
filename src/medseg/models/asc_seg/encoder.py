"""ASC-Seg's encoder block, ASE (adaptive structure encoder): ``[maxpool 2] -> IPCB -> PMB(x) + DCB(x)``,
docs/methods/asc_seg.md#ase.

* IPCB (inverted pyramid convolutions): Conv7x7 -> Conv3x3 -> Conv1x1, each with bias, BN and ReLU.
* PMB (parallel Mamba): tokens X (row-major), one LayerNorm reused three times; the normalised tokens are split into
  4 channel chunks that all go through **one shared** Mamba (d_model C/4, d_state 16, d_conv 4, expand 2) with a
  residual; concatenate -> LN -> Linear(C, C) -> + X = S; FFN on LN(S): Conv1x1 -> depthwise Conv7x7 -> GELU ->
  Conv1x1. The block returns the FFN output only (no residual from S), as coded. The four chunks are scanned as one
  batch of 4B sequences (exact: they share the weights).
* DCB (deformable convolution): y = GELU(BN(Conv1x1(x))); offsets = BN(Conv3x3(y) -> 18); z = depthwise deformable
  Conv3x3 (DCNv1, no bias) of y; output GELU(BN(Conv1x1(z))) * x + x.
"""

from __future__ import annotations

import torch
from torch import nn

from medseg.models.asc_seg.common import conv_bn
from medseg.models.layers.deform_conv import DeformConv2d
from medseg.models.layers.mamba import Mamba

__all__ = ["DCB", "IPCB", "MAMBA_CHUNK_SIZE", "PMB", "ASEBlock"]

MAMBA_CHUNK_SIZE = 1024
"""Chunk length of the CPU selective scan in the PMBs: their scans are long and narrow (65,536 steps of 4 channels at
level 1 for a 256 px input), where long chunks cost fewer sequential steps and their buffers stay small."""


class IPCB(nn.Sequential):
    """Inverted pyramid convolution block: Conv7x7 -> Conv3x3 -> Conv1x1, each with BN and ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            *conv_bn(in_channels, out_channels, 7),
            nn.ReLU(),
            *conv_bn(out_channels, out_channels, 3),
            nn.ReLU(),
            *conv_bn(out_channels, out_channels, 1),
            nn.ReLU(),
        )


class PMB(nn.Module):
    """Parallel Mamba block: one shared Mamba over four channel chunks, then a convolutional FFN (NCHW in and out).

    Args:
        channels: channels C (a multiple of 4).
        chunk_size: chunk length of the CPU selective scan.
    """

    def __init__(self, channels: int, chunk_size: int = MAMBA_CHUNK_SIZE) -> None:
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
        self.pre = nn.Sequential(*conv_bn(channels, channels), nn.GELU())
        self.offset = nn.Sequential(*conv_bn(channels, 2 * 3 * 3, 3))
        self.deform = DeformConv2d(channels, kernel_size=3, padding=1)
        self.balance = nn.Sequential(*conv_bn(channels, channels))
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

    def __init__(self, in_channels: int, out_channels: int, pool: bool, chunk_size: int = MAMBA_CHUNK_SIZE) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.ipcb = IPCB(in_channels, out_channels)
        self.pmb = PMB(out_channels, chunk_size)
        self.dcb = DCB(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ipcb(self.pool(x))
        return self.pmb(x) + self.dcb(x)
