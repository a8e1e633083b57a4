"""Token-grid layers shared by the Swin-UNet and VM-UNet families (channels-last ``(B, H, W, C)`` tokens)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PatchEmbed", "PatchExpand", "PatchMerging", "init_token_weights", "tokens_to_nchw"]


def tokens_to_nchw(tokens: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, C)`` tokens as an NCHW feature map (the feature contract's layout)."""
    return tokens.permute(0, 3, 1, 2)


def init_token_weights(module: nn.Module) -> None:
    """Swin/VMamba initialisation: truncated-normal (std 0.02) Linear weights, zero biases, unit LayerNorms.

    Args:
        module: a module visited by ``model.apply``.
    """
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` convolution then LayerNorm: NCHW image in, channels-last tokens out."""

    def __init__(self, in_channels: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """Halve the resolution and double the width: concatenate 2x2 neighbours, LayerNorm(4C), Linear(4C -> 2C).

    Args:
        dim: input channels C.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Merge ``(B, H, W, C)`` (H, W even) into ``(B, H/2, W/2, 2C)``."""
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class PatchExpand(nn.Module):
    """Up-sample by ``scale``: Linear(in -> scale^2 * out, no bias), pixel shuffle, LayerNorm(out).

    Args:
        in_dim: input channels.
        out_dim: output channels (``in_dim / 2`` in the decoder, ``in_dim`` in the final 4x expansion).
        scale: up-sampling factor.
    """

    def __init__(self, in_dim: int, out_dim: int, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.expand = nn.Linear(in_dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Expand ``(B, H, W, in_dim)`` into ``(B, scale H, scale W, out_dim)``; channels read as ``(p1, p2, c)``."""
        x = self.expand(x)
        batch, height, width, channels = x.shape
        s = self.scale
        x = x.view(batch, height, width, s, s, channels // (s * s)).transpose(2, 3)
        return self.norm(x.reshape(batch, height * s, width * s, channels // (s * s)))
