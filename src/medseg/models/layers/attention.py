"""Attention gates on skip connections.

* :class:`AdditiveAttentionGate`: the additive gate of Attention U-Net (Oktay et al., MIDL 2018), in the
  same-resolution form of the widely used LeeJunHyun/Image_Segmentation ``Attention_block``: the gating signal is
  the up-sampled decoder feature, so no strided projection or resampling of the coefficients is needed.
* :class:`ResUNetPPAttention`: the attention block of ResUNet++ (Jha et al., ISM 2019) as coded officially, which
  has no sigmoid: its output is an unbounded multiplicative map of the decoder feature.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AdditiveAttentionGate", "ResUNetPPAttention"]


def _conv1x1_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1), nn.BatchNorm2d(out_channels))


def _bn_relu_conv3x3(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
    )


class AdditiveAttentionGate(nn.Module):
    """``alpha = sigmoid(BN(psi(ReLU(BN(W_g g) + BN(W_x x)))))``; returns ``alpha * x``.

    ``W_g``, ``W_x`` and ``psi`` are 1x1 convolutions with bias; ``alpha`` has one channel.

    Args:
        gate_channels: channels of the gating signal ``g`` (the up-sampled decoder feature).
        skip_channels: channels of the gated skip feature ``x``.
        inter_channels: channels of the intermediate space ``F_int``.
    """

    def __init__(self, gate_channels: int, skip_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.gate = _conv1x1_bn(gate_channels, inter_channels)
        self.skip = _conv1x1_bn(skip_channels, inter_channels)
        self.relu = nn.ReLU(inplace=True)
        self.psi = nn.Sequential(_conv1x1_bn(inter_channels, 1), nn.Sigmoid())

    def coefficients(self, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Return the attention coefficients ``(B, 1, H, W)`` in (0, 1); ``gate`` and ``skip`` share H and W."""
        return self.psi(self.relu(self.gate(gate) + self.skip(skip)))

    def forward(self, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Return the gated skip feature, shaped like ``skip``."""
        return skip * self.coefficients(gate, skip)


class ResUNetPPAttention(nn.Module):
    """ResUNet++ attention: ``conv(BN-ReLU(maxpool(conv(BN-ReLU(g))) + conv(BN-ReLU(x)))) * x``.

    Every conv is 3x3 with ``C_x`` outputs; ``g`` is the encoder feature at twice the resolution of ``x``.

    Args:
        encoder_channels: channels ``C_g`` of the encoder feature ``g``.
        decoder_channels: channels ``C_x`` of the decoder feature ``x`` (and of the output).
    """

    def __init__(self, encoder_channels: int, decoder_channels: int) -> None:
        super().__init__()
        self.encoder_path = nn.Sequential(_bn_relu_conv3x3(encoder_channels, decoder_channels), nn.MaxPool2d(2))
        self.decoder_path = _bn_relu_conv3x3(decoder_channels, decoder_channels)
        self.combine = _bn_relu_conv3x3(decoder_channels, decoder_channels)

    def forward(self, encoder: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
        """Return the re-weighted decoder feature ``(B, C_x, h, w)`` for ``encoder`` at ``(2h, 2w)``."""
        return self.combine(self.encoder_path(encoder) + self.decoder_path(decoder)) * decoder
