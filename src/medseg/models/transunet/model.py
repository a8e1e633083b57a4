"""The TransUNet model: a ResNetV2 stem feeds a ViT on the 1/16 map, a cascaded up-sampler decodes with CNN skips.

At 224 px (docs/methods/transunet.md#architecture)::

    image 3@224
      root: StdConv7x7 s2 -> GN -> ReLU ───────────────────────────────────────── 64@112 ──── skip 2
      max-pool 3x3 s2 (no padding, 55x55) -> block1: 3 bottlenecks ─── zero-pad ─ 256@56 ──── skip 1
      block2: 4 bottlenecks (stride 2) ─────────────────────────────────────────── 512@28 ──── skip 0
      block3: 9 bottlenecks (stride 2) ──────────────────────────────────────────── 1024@14
      patch_embeddings: Conv1x1(1024 -> 768), + position embeddings (196 tokens), dropout
      12 ViT blocks (768, 12 heads, MLP 3072) -> LN (encoder_norm)        bottleneck 768@14
    conv_more: Conv3x3(768 -> 512) BN ReLU                                                   512@14
    blocks.0: up x2, cat(skip 0), 2x(Conv3x3 BN ReLU) -> 256                               256@28
    blocks.1: up x2, cat(skip 1), 2x(Conv3x3 BN ReLU) -> 128                               128@56
    blocks.2: up x2, cat(skip 2), 2x(Conv3x3 BN ReLU) -> 64                                64@112
    blocks.3: up x2,              2x(Conv3x3 BN ReLU) -> 16                                16@224
    segmentation_head: Conv3x3(16 -> classes)                                              classes@224

Up-sampling is bilinear with ``align_corners=True`` (``nn.UpsamplingBilinear2d``). With ``n_skip = 3`` the
16-channel skip of the config is never used. Size at 224 px, 3 -> 9 classes: 105,277,081 parameters
(docs/methods/index.md#baselines: 105.28 M).

Input sizes. Height and width must be multiples of ``output_stride = 16``. The position embeddings are learnt for the
grid of ``img_size`` (14x14 at 224); another grid interpolates them bilinearly (``align_corners=True``, the linear
``scipy.ndimage.zoom`` the official loader uses). A 1-channel input is repeated to 3 channels, as in the official code.

Module and parameter names follow the official ``VisionTransformer`` (``transformer.embeddings.hybrid_model``,
``transformer.encoder.layer.i``, ``decoder.conv_more``, ``decoder.blocks.i``, ``segmentation_head``).

Features (``forward_features``, NCHW, at 224; docs/methods/reseg_unet.md#other-backbones): ``encoder`` = the CNN skips
shallow to deep (64@112, 256@56, 512@28); ``bottleneck`` = the ViT tokens after ``encoder_norm`` as 768@14; ``decoder``
= the four decoder blocks (256@28, 128@56, 64@112, 16@224); ``final`` = the last of them (16@224), before the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.registry import register_model
from medseg.models.transunet.decoder import DecoderCup
from medseg.models.transunet.vit import Embeddings, Encoder, Transformer
from medseg.models.transunet.weights import load_transunet_pretrained

__all__ = ["TransUNet"]


@register_model(
    "transunet",
    paper="Chen et al., TransUNet, arXiv 2102.04306, 2021 (Beckschen/TransUNet), R50-ViT-B/16",
    default_kwargs={"in_channels": 3, "num_classes": 9},
    reference_params=105_280_000,
)
class TransUNet(SegmentationModel):
    """TransUNet: ResNetV2 + ViT hybrid encoder and a cascaded up-sampling decoder with CNN skips.

    Args:
        in_channels: image channels (1 is repeated to 3, as in the official code).
        num_classes: logit channels.
        img_size: input side the position embeddings are learnt for (a ``img_size / 16`` grid).
        resnet_units: bottleneck units of the three ResNetV2 blocks.
        resnet_width: ResNetV2 root width (64 for R50; multiples of 32, for the GroupNorms).
        hidden_size: ViT width.
        num_layers: ViT blocks.
        num_heads: attention heads.
        mlp_dim: ViT MLP hidden width.
        dropout: dropout on the embeddings and in the ViT MLPs.
        head_channels: width of ``conv_more`` (the decoder's first convolution).
        decoder_channels: outputs of the four decoder blocks.
        n_skip: CNN skips used by the decoder, deepest first (0 to 3).
        pretrained: optional local path of the official ``R50+ViT-B_16.npz``, loaded with
            :func:`load_transunet_pretrained`.

    Example:
        >>> model = TransUNet(num_classes=2, img_size=64, resnet_units=(1, 1, 1), resnet_width=32, hidden_size=48,
        ...                   num_layers=2, num_heads=4, mlp_dim=96, head_channels=64, decoder_channels=(32, 16, 16, 8))
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 2, 64, 64])
    """

    export_limits: ClassVar[dict[str, str]] = {
        "dynamic_shape": "the position embeddings are resized to the token grid with Python sizes, which a trace fixes"
    }

    output_stride = 16

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 9,
        img_size: int = 224,
        resnet_units: Sequence[int] = (3, 4, 9),
        resnet_width: int = 64,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_dim: int = 3072,
        dropout: float = 0.1,
        head_channels: int = 512,
        decoder_channels: Sequence[int] = (256, 128, 64, 16),
        n_skip: int = 3,
        pretrained: str | Path | None = None,
    ) -> None:
        super().__init__()
        if img_size % self.output_stride:
            raise ValueError(f"img_size must be divisible by {self.output_stride}, got {img_size}")
        if len(decoder_channels) != 4 or not 0 <= n_skip <= 3:
            raise ValueError(
                f"TransUNet needs four decoder_channels and 0 <= n_skip <= 3, got {list(decoder_channels)}, {n_skip}"
            )
        if resnet_width % 32:
            raise ValueError(f"resnet_width must be a multiple of 32 (GroupNorm groups), got {resnet_width}")
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.n_skip = n_skip
        skip_channels = [resnet_width * 8, resnet_width * 4, resnet_width, 0]
        skip_channels = [c if i < n_skip else 0 for i, c in enumerate(skip_channels)]
        stem_channels = 3 if in_channels == 1 else in_channels
        embeddings = Embeddings(
            resnet_units, resnet_width, stem_channels, hidden_size, img_size // self.output_stride, dropout
        )
        self.transformer = Transformer(embeddings, Encoder(hidden_size, num_layers, num_heads, mlp_dim, dropout))
        self.decoder = DecoderCup(hidden_size, head_channels, decoder_channels, skip_channels)
        self.segmentation_head = nn.Sequential(nn.Conv2d(decoder_channels[-1], num_classes, kernel_size=3, padding=1))
        if pretrained is not None:
            load_transunet_pretrained(self, pretrained)

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        """Run TransUNet.

        Args:
            x: image batch ``(B, in_channels, H, W)``, H and W multiples of 16.

        Returns:
            Logits and the NCHW features listed in the module docstring.
        """
        self.check_input(x)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        tokens, (height, width), skips = self.transformer.embeddings(x)
        tokens = self.transformer.encoder(tokens)
        bottleneck = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)
        y = self.decoder.conv_more(bottleneck)
        decoder = []
        for index, block in enumerate(self.decoder.blocks):
            y = block(y, skips[-1 - index] if index < self.n_skip else None)
            decoder.append(y)
        return SegOutput(
            logits=self.segmentation_head(y),
            encoder=skips,
            bottleneck=bottleneck,
            decoder=decoder,
            final=y,
        )
