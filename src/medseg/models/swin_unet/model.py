"""The Swin-UNet model: a Swin Transformer encoder and a mirrored decoder with concatenated skips, channels-last
``(B, H, W, C)`` inside. Tiny configuration at 224 px (docs/methods/swin_unet.md#architecture)::

    image 3@224 ── PatchEmbed (Conv4x4 s4, LN) ──────────────────────────────────── 96@56 ───── skip 0
      layers.0: 2 Swin(96, 3 heads)   -> PatchMerging ──────────────────────────── 192@28 ───── skip 1
      layers.1: 2 Swin(192, 6 heads)  -> PatchMerging ──────────────────────────── 384@14 ───── skip 2
      layers.2: 2 Swin(384, 12 heads) -> PatchMerging ──────────────────────────── 768@7
      layers.3: 2 Swin(768, 24 heads) -> LN (norm)                        bottleneck 768@7
    layers_up.0: PatchExpand                                                         384@14
    layers_up.1: cat(skip 2), Linear(768 -> 384), 2 Swin(384) -> PatchExpand          192@28
    layers_up.2: cat(skip 1), Linear(384 -> 192), 2 Swin(192) -> PatchExpand          96@56
    layers_up.3: cat(skip 0), Linear(192 -> 96),  2 Swin(96)  -> LN (norm_up)         96@56
    up: Linear(96 -> 1536) -> 4x4 pixel shuffle -> LN(96) -> Conv1x1(96 -> classes, no bias)   classes@224

* Windows of ``w = 7``; odd blocks shift them by ``w // 2``. As in the official code, a stage whose token map (at
  ``img_size``) is not larger than the window uses one window of the map's size and never shifts: at 224 the 7x7
  bottleneck stage has no shifted blocks.
* PatchMerging: 2x2 neighbours in the order (0,0), (1,0), (0,1), (1,1), LN(4C), Linear(4C -> 2C, no bias).
  PatchExpand: Linear(C -> 2C, no bias), 2x2 pixel shuffle (channels read as ``(p1, p2, c)``), LN(C/2).
* Skips are each encoder stage's **input** (the patch embedding and the merged maps), concatenated after the
  decoder's up-sampled map and reduced by ``concat_back_dim`` Linears.
* The decoder mirrors the encoder depths (``layers_up.i`` has ``depths[3 - i]`` blocks and the drop-path rates of
  the mirrored encoder stage). The official config file lists ``DECODER_DEPTHS: [2, 2, 2, 1]``, but that value is
  never passed to the network, so the trained model (and the 27.17 M of docs/methods/index.md#baselines) has 2 blocks in
  each of ``layers_up.1 .. 3``; that is what is built here.
* Stochastic depth rises linearly from 0 to ``drop_path_rate`` over the encoder blocks (0.1 by default as in the
  code's constructor; the official Synapse config and SelfReg use 0.2). Linears are trunc-normal(0.02) with zero
  bias, LayerNorms (1, 0).

Size with the tiny configuration, 224 px, 3 -> 9 classes: 27,168,900 parameters (27.17 M in
docs/methods/index.md#baselines).

Input sizes. ``img_size`` fixes the window size and shift of every stage, as the official code does; the network
then accepts any height and width divisible by ``output_stride = patch_size * 2 ** (len(depths) - 1)`` (32 for the
tiny model): three merges halve the patch grid, so it must be divisible by 8. Token maps that are not multiples of
the window are padded (:mod:`medseg.models.swin_unet.blocks`); at ``img_size`` with the default window nothing is
padded and the result equals the official network. A 1-channel input is repeated to 3 channels, as in the official
``SwinUnet``.

Module and parameter names follow the official ``SwinTransformerSys`` (``patch_embed``, ``layers.i.blocks.j.attn``,
``layers.i.downsample``, ``layers_up``, ``concat_back_dim``, ``norm``, ``norm_up``, ``up``, ``output``), so a Swin-T
ImageNet checkpoint (``swin_tiny_patch4_window7_224.pth``) loads by name through :func:`load_swin_pretrained`.

Features (``forward_features``, NCHW, tiny at 224; docs/methods/reseg_unet.md#other-backbones and
docs/methods/selfreg_unet.md#instrumented-networks): ``encoder`` = the last Swin-block output of ``layers.0 .. 2``
before merging (96@56, 192@28, 384@14); ``bottleneck`` = ``layers.3`` after ``norm`` (768@7); ``decoder`` = the last
Swin-block output of ``layers_up.1 .. 3`` before expansion (384@14, 192@28, 96@56); ``final`` = the output of the
final 4x expansion (96@224), before the 1x1 output convolution. ``encoder_blocks`` and ``decoder_blocks`` hold every
Swin block's output of ``layers.0 .. 3`` and ``layers_up.1 .. 3`` (the official SelfReg ``enc_feats``/``dec_feats``,
docs/methods/selfreg_unet.md#instrumented-networks; the bottleneck stage's blocks are before ``norm``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.layers.tokens import PatchEmbed, PatchExpand, init_token_weights, tokens_to_nchw
from medseg.models.registry import register_model
from medseg.models.swin_unet.blocks import SwinStage
from medseg.models.swin_unet.weights import load_swin_pretrained

__all__ = ["SwinUNet"]


@register_model(
    "swin_unet",
    paper="Cao et al., Swin-Unet, ECCV Workshops 2022, arXiv 2105.05537 (HuCaoFighting/Swin-Unet)",
    default_kwargs={"in_channels": 3, "num_classes": 9},
    reference_params=27_170_000,
)
class SwinUNet(SegmentationModel):
    """Swin-UNet: Swin Transformer encoder and mirrored decoder with concatenated skips, channels-last inside.

    Args:
        in_channels: image channels (1 is repeated to 3, as in the official code).
        num_classes: logit channels.
        img_size: reference input side; it fixes each stage's window size and shift (see the module docstring).
        patch_size: side of the patch embedding; the final expansion up-samples by the same factor.
        embed_dim: width of the first stage; stage ``i`` has ``embed_dim * 2**i`` channels.
        depths: Swin blocks per encoder stage; the decoder mirrors them.
        num_heads: attention heads per encoder stage; the decoder mirrors them.
        window_size: window side.
        mlp_ratio: MLP hidden width over the block width.
        qkv_bias: learn a bias for the query, key and value projections.
        drop_path_rate: largest stochastic-depth probability (the last encoder block's).
        pretrained: optional local path of a Swin ImageNet checkpoint (state dict under ``"model"``, e.g.
            ``swin_tiny_patch4_window7_224.pth``), loaded with :func:`load_swin_pretrained`.

    Example:
        >>> model = SwinUNet(num_classes=2, img_size=64, embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 1, 1, 1),
        ...                  window_size=4)
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 2, 64, 64])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 9,
        img_size: int = 224,
        patch_size: int = 4,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.1,
        pretrained: str | Path | None = None,
    ) -> None:
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        if len(depths) < 2 or len(num_heads) != len(depths):
            raise ValueError(f"depths and num_heads need one entry per stage (at least 2), got {depths}, {num_heads}")
        dims = [embed_dim * 2**i for i in range(len(depths))]
        if any(dim % heads for dim, heads in zip(dims, num_heads, strict=True)):
            raise ValueError(f"stage widths {dims} must be divisible by num_heads {num_heads}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.output_stride = patch_size * 2 ** (len(depths) - 1)
        if img_size % self.output_stride:
            raise ValueError(f"img_size must be divisible by {self.output_stride}, got {img_size}")

        count = sum(depths)
        rates = [drop_path_rate * i / (count - 1) if count > 1 else 0.0 for i in range(count)]
        stage_rates = [rates[sum(depths[:i]) : sum(depths[: i + 1])] for i in range(len(depths))]
        windows = []
        for i in range(len(depths)):
            resolution = img_size // patch_size // 2**i
            windows.append((resolution, 0) if resolution <= window_size else (window_size, window_size // 2))

        def stage(i: int, **resample: bool) -> SwinStage:
            return SwinStage(
                dims[i], depths[i], num_heads[i], *windows[i], mlp_ratio, qkv_bias, stage_rates[i], **resample
            )

        last = len(depths) - 1
        self.patch_embed = PatchEmbed(3 if in_channels == 1 else in_channels, embed_dim, patch_size)
        self.layers = nn.ModuleList(stage(i, downsample=i < last) for i in range(len(depths)))
        self.layers_up = nn.ModuleList([PatchExpand(dims[last], dims[last] // 2)])
        self.layers_up.extend(stage(last - i, upsample=i < last) for i in range(1, len(depths)))
        self.concat_back_dim = nn.ModuleList([nn.Identity()])  # index 0 unused: keeps the official indices
        self.concat_back_dim.extend(nn.Linear(2 * dims[last - i], dims[last - i]) for i in range(1, len(depths)))
        self.norm = nn.LayerNorm(dims[last])
        self.norm_up = nn.LayerNorm(embed_dim)
        self.up = PatchExpand(embed_dim, embed_dim, scale=patch_size)
        self.output = nn.Conv2d(embed_dim, num_classes, kernel_size=1, bias=False)
        self.apply(init_token_weights)
        if pretrained is not None:
            load_swin_pretrained(self, pretrained)

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        """Run Swin-UNet.

        Args:
            x: image batch ``(B, in_channels, H, W)``, H and W multiples of ``output_stride``.

        Returns:
            Logits and the NCHW features listed in the module docstring.
        """
        self.check_input(x)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        tokens = self.patch_embed(x)
        skips, encoder_blocks = [], []
        for layer in self.layers:
            skips.append(tokens)
            blocks = layer(tokens)
            encoder_blocks.append(blocks)
            tokens = blocks[-1]
            if layer.downsample is not None:
                tokens = layer.downsample(tokens)
        bottleneck = self.norm(tokens)
        tokens = self.layers_up[0](bottleneck)
        decoder_blocks = []
        for index in range(1, len(self.layers_up)):
            tokens = self.concat_back_dim[index](torch.cat([tokens, skips[-1 - index]], dim=-1))
            blocks = self.layers_up[index](tokens)
            decoder_blocks.append(blocks)
            tokens = blocks[-1]
            if self.layers_up[index].upsample is not None:
                tokens = self.layers_up[index].upsample(tokens)
        final = tokens_to_nchw(self.up(self.norm_up(tokens)))
        encoder_maps = [[tokens_to_nchw(t) for t in blocks] for blocks in encoder_blocks]
        decoder_maps = [[tokens_to_nchw(t) for t in blocks] for blocks in decoder_blocks]
        return SegOutput(
            logits=self.output(final),
            encoder=[blocks[-1] for blocks in encoder_maps[:-1]],
            bottleneck=tokens_to_nchw(bottleneck),
            decoder=[blocks[-1] for blocks in decoder_maps],
            final=final,
            encoder_blocks=encoder_maps,
            decoder_blocks=decoder_maps,
        )
