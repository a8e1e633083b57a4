"""TransUNet's ViT encoder on the 1/16 map: patch and position embeddings, attention, MLP, blocks.

ViT block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``, LayerNorm eps 1e-6, separate query / key / value Linears,
exact GELU, dropout 0.1 on the embeddings and in the MLP, no class token. PyTorch default initialisation except the
MLP Linears (Xavier-uniform weights, normal(1e-6) biases) and zero position embeddings, as the official code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.transunet.resnet_v2 import ResNetV2

__all__ = ["Embeddings", "Encoder", "Transformer", "resize_position_embeddings"]


def resize_position_embeddings(
    embeddings: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]
) -> torch.Tensor:
    """Resize ``(1, h*w, D)`` position embeddings from an ``old_grid`` to a ``new_grid`` of tokens.

    Bilinear with ``align_corners=True``, which is the linear ``scipy.ndimage.zoom`` of the official loader.

    Args:
        embeddings: ``(1, old_h * old_w, D)`` row-major grid embeddings (no class token).
        old_grid: ``(old_h, old_w)``.
        new_grid: ``(new_h, new_w)``.

    Returns:
        ``(1, new_h * new_w, D)``.
    """
    dim = embeddings.shape[-1]
    grid = embeddings.reshape(1, *old_grid, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bilinear", align_corners=True)
    return grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim)


class _Attention(nn.Module):
    def __init__(self, hidden: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, hidden = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, tokens, self.num_heads, hidden // self.num_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)))
        return self.out(out.transpose(1, 2).reshape(batch, tokens, hidden))


class _Mlp(nn.Module):
    def __init__(self, hidden: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class _Block(nn.Module):
    """Pre-norm ViT block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, hidden: int, num_heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.ffn = _Mlp(hidden, mlp_dim, dropout)
        self.attn = _Attention(hidden, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attention_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class Embeddings(nn.Module):
    """ResNetV2 stem, 1x1 patch projection and learnt position embeddings for a ``grid``.

    Args:
        units: bottleneck units of the three ResNetV2 blocks.
        width: ResNetV2 root width.
        in_channels: image channels.
        hidden: token width.
        grid: side of the token grid the position embeddings are learnt for.
        dropout: dropout on the embedded tokens.
    """

    def __init__(
        self, units: Sequence[int], width: int, in_channels: int, hidden: int, grid: int, dropout: float
    ) -> None:
        super().__init__()
        self.grid = grid
        self.hybrid_model = ResNetV2(units, width, in_channels)
        self.patch_embeddings = nn.Conv2d(self.hybrid_model.out_channels, hidden, kernel_size=1)
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid, hidden))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int], list[torch.Tensor]]:
        x, skips = self.hybrid_model(x)
        x = self.patch_embeddings(x)
        size = (x.shape[-2], x.shape[-1])
        position = self.position_embeddings
        if size != (self.grid, self.grid):
            position = resize_position_embeddings(position, (self.grid, self.grid), size)
        return self.dropout(x.flatten(2).transpose(1, 2) + position), size, skips


class Encoder(nn.Module):
    """``num_layers`` pre-norm ViT blocks (``layer.i``) and a final LayerNorm (``encoder_norm``).

    Args:
        hidden: token width.
        num_layers: ViT blocks.
        num_heads: attention heads.
        mlp_dim: MLP hidden width.
        dropout: dropout in the MLPs.
    """

    def __init__(self, hidden: int, num_layers: int, num_heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Block(hidden, num_heads, mlp_dim, dropout) for _ in range(num_layers))
        self.encoder_norm = nn.LayerNorm(hidden, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layer:
            x = block(x)
        return self.encoder_norm(x)


class Transformer(nn.Module):
    """Holds the embeddings and the ViT encoder under the official names; :class:`TransUNet` runs them.

    Args:
        embeddings: the stem and token embeddings.
        encoder: the ViT blocks.
    """

    def __init__(self, embeddings: Embeddings, encoder: Encoder) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.encoder = encoder
