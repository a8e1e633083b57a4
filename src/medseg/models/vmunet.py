"""VM-UNet (Ruan et al. 2024, "VM-UNet: Vision Mamba UNet for Medical Image Segmentation"),
docs/methods/vmunet.md#architecture.

Official code: JCruan519/VM-UNet (``models/vmunet/vmamba.py``, ``vmunet.py``). A U-shaped network of VSS blocks
(SS2D of VMamba with a residual), channels-last ``(B, H, W, C)`` inside, at 256 px::

    image 3@256 ── PatchEmbed (Conv4x4 s4, LN) ─────────────────────────────── 96@64  ──────── skip 0 (unused)
      stage 0: 2 VSS(96)   -> PatchMerging -> 192@32 ───────────────────────────────────────── skip 1
      stage 1: 2 VSS(192)  -> PatchMerging -> 384@16 ───────────────────────────────────────── skip 2
      stage 2: 2 VSS(384)  -> PatchMerging -> 768@8  ───────────────────────────────────────── skip 3
      stage 3: 2 VSS(768)                                              bottleneck 768@8
    up 0: 2 VSS(768)                                                                            768@8
    up 1: PatchExpand(x + skip 3) -> 2 VSS(384)                                                 384@16
    up 2: PatchExpand(x + skip 2) -> 2 VSS(192)                                                 192@32
    up 3: PatchExpand(x + skip 1) -> 1 VSS(96)                                                  96@64
    final: Linear(96 -> 384) -> 4x4 pixel shuffle -> LN(24) -> Conv1x1(24 -> classes)          classes@256

* VSS block: ``x + DropPath(SS2D(LN(x)))``, no MLP; drop-path rates rise linearly 0 -> 0.2 over the encoder
  blocks and fall 0.2 -> 0 over the decoder blocks.
* PatchMerging: the 2x2 neighbours in the order (0,0), (1,0), (0,1), (1,1), LN(4C), Linear(4C -> 2C, no bias).
  PatchExpand(C): Linear(2C -> 4C, no bias), 2x2 pixel shuffle (channels split as (p1, p2, c)), LN(C).
* Skips are **added** to the decoder input, and each skip is the *input* of an encoder stage (so skip 0, the
  patch embedding, is never used).
* Every ``nn.Linear`` is re-initialised trunc-normal(0.02) with zero bias, every LayerNorm to (1, 0); SS2D's raw
  projection parameters keep their own initialisation.

Size with depths [2, 2, 2, 2] / [2, 2, 2, 1], 3 -> 1 channels: 27,427,561 parameters (the spec's 27.43 M), of
which thop counts 22,037,737 (the spec's 22.04 M; the ASC-Seg table prints 22.0370 M, 0.003% less): thop skips
SS2D's raw ``x_proj_weight``, ``dt_projs_*``, ``A_logs`` and ``Ds``, 5,389,824 in all (:mod:`medseg.models.params`).
With the class defaults of VMamba, depths [2, 2, 9, 2] / [2, 9, 2, 2], it has 44,273,833 (the spec's 44.27 M).

Differences from the official module: ``forward`` returns logits (the official model applies a sigmoid for one
class). As in the official code, a 1-channel input is repeated to 3 channels, so the patch embedding keeps the shape
of VMamba's (other channel counts get their own). Module names follow VMamba (``patch_embed``,
``layers.i.blocks.j.ln_1`` / ``self_attention``, ``layers.i.downsample``), so a VMamba checkpoint's encoder keys load
by name through ``model.checkpoint``.

Features (``forward_features``, NCHW): ``encoder`` = the VSS-block outputs of stages 0-2 (before merging,
H/4 .. H/16), ``bottleneck`` = stage 3 (H/32), ``decoder`` = the four decoder stages (H/32 .. H/4), ``final`` = the
24-channel map after the final expansion (H).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.layers.drop_path import DropPath
from medseg.models.layers.selective_scan import DEFAULT_CHUNK_SIZE
from medseg.models.layers.ss2d import SS2D
from medseg.models.layers.tokens import PatchEmbed, PatchExpand, PatchMerging, init_token_weights, tokens_to_nchw
from medseg.models.registry import register_model

__all__ = ["VMUNet", "VSSBlock"]


def _linspace(stop: float, count: int) -> list[float]:
    """``count`` evenly spaced rates from 0 to ``stop`` (``[0.0]`` for one)."""
    return [stop * (i / (count - 1)) if count > 1 else 0.0 for i in range(count)]


class VSSBlock(nn.Module):
    """Visual state-space block of VMamba v0: ``x + DropPath(SS2D(LN(x)))``, channels-last.

    Args:
        dim: channels.
        drop_path: stochastic-depth probability of the SS2D branch.
        d_state: SSM state size.
        chunk_size: chunk length of the CPU selective scan.
    """

    def __init__(self, dim: int, drop_path: float = 0.0, d_state: int = 16, chunk_size: int = DEFAULT_CHUNK_SIZE):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attention = SS2D(dim, d_state=d_state, chunk_size=chunk_size)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.self_attention(self.ln_1(x)))


class _Stage(nn.Module):
    """VSS blocks of one stage, with the stage's patch merging (encoder) or patch expansion (decoder)."""

    def __init__(
        self,
        dim: int,
        rates: Sequence[float],
        d_state: int,
        chunk_size: int,
        downsample: bool = False,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.upsample = PatchExpand(2 * dim, dim) if upsample else None
        self.blocks = nn.ModuleList(VSSBlock(dim, rate, d_state, chunk_size) for rate in rates)
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Expand (decoder stages after the first), then the VSS blocks; merging is left to the caller."""
        if self.upsample is not None:
            x = self.upsample(x)
        for block in self.blocks:
            x = block(x)
        return x


@register_model(
    "vmunet",
    paper="Ruan et al., VM-UNet, arXiv 2402.02491, 2024 (JCruan519/VM-UNet)",
    default_kwargs={"in_channels": 3, "num_classes": 1},
    reference_params=27_430_000,
)
class VMUNet(SegmentationModel):
    """VM-UNet: VSS-block encoder and decoder with additive skips, channels-last inside.

    Args:
        in_channels: image channels (1 is repeated to 3, as in the official code).
        num_classes: logit channels (1 for a binary task).
        dims: encoder widths, each twice the previous; the decoder mirrors them.
        depths: VSS blocks per encoder stage.
        depths_decoder: VSS blocks per decoder stage, deep to shallow.
        d_state: SSM state size of every SS2D.
        drop_path_rate: largest stochastic-depth probability.
        patch_size: side of the patch embedding (the final expansion uses the same factor).
        chunk_size: chunk length of the CPU selective scan (see :data:`~medseg.models.layers.selective_scan.
            DEFAULT_CHUNK_SIZE`).

    Example:
        >>> model = VMUNet(dims=(8, 16, 32, 64), depths=(1, 1, 1, 1), depths_decoder=(1, 1, 1, 1))
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 1, 64, 64])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        dims: Sequence[int] = (96, 192, 384, 768),
        depths: Sequence[int] = (2, 2, 2, 2),
        depths_decoder: Sequence[int] = (2, 2, 2, 1),
        d_state: int = 16,
        drop_path_rate: float = 0.2,
        patch_size: int = 4,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__()
        dims = list(dims)
        if len(depths) != len(dims) or len(depths_decoder) != len(dims):
            raise ValueError(
                f"dims, depths and depths_decoder need one entry per stage, got {dims}, {depths}, {depths_decoder}"
            )
        if any(b != 2 * a for a, b in itertools.pairwise(dims)) or dims[0] % patch_size:
            raise ValueError(f"dims must double at every stage and dims[0] be divisible by {patch_size}, got {dims}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.output_stride = patch_size * 2 ** (len(dims) - 1)
        encoder_rates = _linspace(drop_path_rate, sum(depths))
        decoder_rates = _linspace(drop_path_rate, sum(depths_decoder))[::-1]
        dims_decoder = dims[::-1]

        self.patch_embed = PatchEmbed(3 if in_channels == 1 else in_channels, dims[0], patch_size)
        self.layers = nn.ModuleList(
            _Stage(dim, encoder_rates[sum(depths[:i]) : sum(depths[: i + 1])], d_state, chunk_size, i < len(dims) - 1)
            for i, dim in enumerate(dims)
        )
        self.layers_up = nn.ModuleList(
            _Stage(
                dim,
                decoder_rates[sum(depths_decoder[:i]) : sum(depths_decoder[: i + 1])],
                d_state,
                chunk_size,
                upsample=i > 0,
            )
            for i, dim in enumerate(dims_decoder)
        )
        self.final_up = PatchExpand(dims[0], dims[0] // patch_size, scale=patch_size)
        self.final_conv = nn.Conv2d(dims[0] // patch_size, num_classes, kernel_size=1)
        self.apply(init_token_weights)

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        """Run VM-UNet.

        Args:
            x: image batch ``(B, in_channels, H, W)``, H and W multiples of 32.

        Returns:
            Logits and the NCHW features listed in the module docstring.
        """
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        tokens = self.patch_embed(x)
        skips, stage_outputs = [], []
        for stage in self.layers:
            skips.append(tokens)
            tokens = stage(tokens)
            stage_outputs.append(tokens)
            if stage.downsample is not None:
                tokens = stage.downsample(tokens)
        decoder = []
        for index, stage in enumerate(self.layers_up):
            if index:
                tokens = tokens + skips[-index]
            tokens = stage(tokens)
            decoder.append(tokens)
        final = tokens_to_nchw(self.final_up(tokens))
        return SegOutput(
            logits=self.final_conv(final),
            encoder=[tokens_to_nchw(t) for t in stage_outputs[:-1]],
            bottleneck=tokens_to_nchw(stage_outputs[-1]),
            decoder=[tokens_to_nchw(t) for t in decoder],
            final=final,
        )
