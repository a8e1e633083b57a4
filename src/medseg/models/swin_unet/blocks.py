"""Swin-UNet's building blocks: window partition and shift masks, window attention, the Swin block and a stage.

* Swin block (Liu et al., ICCV 2021): ``x + DropPath(W-MSA(LN(x)))`` then ``x + DropPath(MLP(LN(x)))``, MLP ratio 4,
  GELU, qkv bias, a learnt relative-position bias table of ``(2w - 1)^2`` entries per head. Shifted blocks roll the
  map by ``-shift`` and mask (-100) pairs of tokens that come from different regions.
* Token maps that are not multiples of the window are padded at the bottom and right before the window partition and
  cropped after it, the way the Swin v1 detection and segmentation code does (the padded tokens are zeros after the
  first LayerNorm and are not masked; the shift mask is computed on the padded map).
* The relative-position index and the shift masks are derived (a buffer that is not saved, and computed per call).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.layers.drop_path import DropPath
from medseg.models.layers.tokens import PatchExpand, PatchMerging

__all__ = ["Mlp", "SwinStage", "SwinTransformerBlock", "WindowAttention"]

_MASK_VALUE = -100.0
"""Logit added to pairs of tokens from different regions of a shifted window (the official value)."""


def _partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W, C)`` with H, W multiples of ``window`` -> ``(B, nW, window * window, C)``, windows row-major."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window, window, width // window, window, channels).transpose(2, 3)
    return x.reshape(batch, -1, window * window, channels)


def _merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`_partition`: ``(B, nW, window * window, C)`` -> ``(B, height, width, C)``."""
    batch, channels = windows.shape[0], windows.shape[-1]
    x = windows.view(batch, height // window, width // window, window, window, channels).transpose(2, 3)
    return x.reshape(batch, height, width, channels)


def _shift_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """Additive mask ``(nW, N, N)`` of shifted-window attention on a ``height x width`` map (multiples of window).

    After the cyclic roll by ``-shift``, each axis holds three regions: ``[0, L - window)``, ``[L - window, L - shift)``
    and ``[L - shift, L)``. Tokens of one window attend to each other only when they come from the same region.
    """

    def regions(length: int) -> torch.Tensor:
        index = torch.arange(length, device=device)
        return (index >= length - window).long() + (index >= length - shift).long()

    region = regions(height)[:, None] * 3 + regions(width)[None, :]
    region = _partition(region[None, :, :, None], window)[0, :, :, 0]
    different = region[:, :, None] != region[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill(different, _MASK_VALUE)


def _relative_position_index(window: int) -> torch.Tensor:
    """``(N, N)`` index into the ``(2 window - 1)^2`` bias table for every pair of tokens of a window (Swin's)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with Swin's learnt relative-position bias.

    Args:
        dim: channels.
        window_size: window side ``w``; the bias table has ``(2w - 1)^2`` rows.
        num_heads: attention heads (``dim`` must be divisible by it).
        qkv_bias: learn a bias for the query, key and value projection.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", _relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend within each window.

        Args:
            windows: ``(B, nW, N, C)`` tokens of ``nW`` windows of ``N = w * w`` tokens.
            mask: additive ``(nW, N, N)`` mask of a shifted partition, or ``None``.

        Returns:
            ``(B, nW, N, C)``.
        """
        batch, count, tokens, channels = windows.shape
        qkv = self.qkv(windows).view(batch, count, tokens, 3, self.num_heads, channels // self.num_heads)
        query, key, value = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(tokens, tokens, self.num_heads).permute(2, 0, 1)
        if mask is not None:
            bias = bias + mask[:, None]
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias.to(query.dtype))
        return self.proj(out.transpose(2, 3).reshape(batch, count, tokens, channels))


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with a hidden width of ``ratio * dim``."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, int(dim * ratio))
        self.act = nn.GELU()
        self.fc2 = nn.Linear(int(dim * ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    """Swin block on a channels-last map: (shifted-)window attention and an MLP, each pre-norm and residual.

    Args:
        dim: channels.
        num_heads: attention heads.
        window_size: window side.
        shift_size: cyclic shift of the windows (0 for a regular partition, ``window_size // 2`` for a shifted one).
        mlp_ratio: MLP hidden width over ``dim``.
        qkv_bias: learn a bias for the query, key and value projection.
        drop_path: stochastic-depth probability of both residual branches.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, window_size), got {shift_size} for window {window_size}")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transform ``(B, H, W, C)`` (any H, W) into ``(B, H, W, C)``."""
        _, height, width, _ = x.shape
        window, shift = self.window_size, self.shift_size
        y = self.norm1(x)
        pad_bottom, pad_right = -height % window, -width % window
        y = F.pad(y, (0, 0, 0, pad_right, 0, pad_bottom))
        padded_height, padded_width = height + pad_bottom, width + pad_right
        mask = None
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
            mask = _shift_mask(padded_height, padded_width, window, shift, y.device)
        y = _merge(self.attn(_partition(y, window), mask), window, padded_height, padded_width)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        x = x + self.drop_path(y[:, :height, :width])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinStage(nn.Module):
    """Swin blocks of one stage (regular and shifted windows alternating) plus its optional resampling layer.

    ``forward`` runs the blocks only; the network applies ``downsample`` (encoder) or ``upsample`` (decoder) itself
    so that it can read the block output first.

    Args:
        dim: channels.
        depth: Swin blocks.
        num_heads: attention heads.
        window_size: window side.
        shift_size: cyclic shift of the odd blocks (0: never shift).
        mlp_ratio: MLP hidden width over ``dim``.
        qkv_bias: learn a bias for the query, key and value projections.
        drop_path: stochastic-depth probability of each block.
        downsample: end with a :class:`~medseg.models.layers.tokens.PatchMerging` (encoder stages but the last).
        upsample: end with a :class:`~medseg.models.layers.tokens.PatchExpand` (decoder stages but the last).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path: Sequence[float],
        downsample: bool = False,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim, num_heads, window_size, shift_size if i % 2 else 0, mlp_ratio, qkv_bias, drop_path[i]
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None
        self.upsample = PatchExpand(dim, dim // 2) if upsample else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run the Swin blocks (not the merge or expansion) and return every block's output, last block last."""
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs
