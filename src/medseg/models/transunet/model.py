"""TransUNet, R50-ViT-B/16 hybrid (Chen et al., "TransUNet: Transformers Make Strong Encoders for Medical Image
Segmentation", arXiv 2102.04306, 2021).

Official code: Beckschen/TransUNet (``networks/vit_seg_modeling.py``, ``vit_seg_modeling_resnet_skip.py``,
``vit_seg_configs.py``; ``train.py`` sets ``n_skip = 3`` and a 14x14 grid at 224 px). A ResNetV2 stem feeds a ViT on
the 1/16 feature map, and a cascaded up-sampler decodes with CNN skips::

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

* ResNetV2 (BiT flavour): weight-standardised convolutions (per output channel, biased variance, eps 1e-5),
  GroupNorm(32, eps 1e-6). A bottleneck unit is ``relu(GN(proj(x)) + GN(conv1x1(relu(GN(conv3x3_s(relu(GN(
  conv1x1(x))))))))``, the stride on the 3x3 convolution; the projection (``downsample`` + ``gn_proj``, whose
  GroupNorm has one group per channel as in the official code) exists when the stride or the width changes.
  Units per block (3, 4, 9), widths 256 / 512 / 1024 with bottleneck widths 64 / 128 / 256.
* The max-pool has no padding, so block1 runs on (H/4 - 1)^2; its skip is zero-padded at the bottom and right to
  H/4, as the official code does.
* ViT block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``, LayerNorm eps 1e-6, separate query / key / value Linears,
  exact GELU, dropout 0.1 on the embeddings and in the MLP. No class token.
* Up-sampling is bilinear with ``align_corners=True`` (``nn.UpsamplingBilinear2d``). With ``n_skip = 3`` the 16-channel
  skip of the config is never used.
* Initialisation as the official code: PyTorch defaults, except the MLP Linears (Xavier-uniform weights, normal(1e-6)
  biases) and zero position embeddings.

Size at 224 px, 3 -> 9 classes: 105,277,081 parameters (docs/methods/index.md#baselines: 105.28 M).

Input sizes. Height and width must be multiples of ``output_stride = 16``. The position embeddings are learnt for the
grid of ``img_size`` (14x14 at 224); another grid interpolates them bilinearly (``align_corners=True``, the linear
``scipy.ndimage.zoom`` the official loader uses). A 1-channel input is repeated to 3 channels, as in the official code.

Module and parameter names follow the official ``VisionTransformer`` (``transformer.embeddings.hybrid_model``,
``transformer.encoder.layer.i``, ``decoder.conv_more``, ``decoder.blocks.i``, ``segmentation_head``).
:func:`load_transunet_pretrained` reads the official ``R50+ViT-B_16.npz`` (ImageNet-21k, JAX key names) into the
encoder the way the official ``load_from`` does, position-embedding resize included.

Features (``forward_features``, NCHW, at 224; docs/methods/reseg_unet.md#other-backbones): ``encoder`` = the CNN skips
shallow to deep (64@112, 256@56, 512@28); ``bottleneck`` = the ViT tokens after ``encoder_norm`` as 768@14; ``decoder``
= the four decoder blocks (256@28, 128@56, 64@112, 16@224); ``final`` = the last of them (16@224), before the head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.encoders import EncoderWeightsError
from medseg.models.registry import register_model

__all__ = [
    "PreActBottleneck",
    "ResNetV2",
    "StdConv2d",
    "TransUNet",
    "load_transunet_pretrained",
    "resize_position_embeddings",
]


class StdConv2d(nn.Conv2d):
    """Convolution with weight standardisation: each output filter is normalised to zero mean and unit variance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, unbiased=False)
        weight = (self.weight - mean) / torch.sqrt(var + 1e-5)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class PreActBottleneck(nn.Module):
    """ResNetV2 bottleneck unit, named as in the official code although it normalises *after* each convolution.

    ``relu(GN(proj(x)) + GN(conv1x1(relu(GN(conv3x3(relu(GN(conv1x1(x)))))))))``, the stride on the 3x3 convolution.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        mid_channels: bottleneck width.
        stride: stride of the 3x3 convolution and of the projection.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.gn1 = nn.GroupNorm(32, mid_channels, eps=1e-6)
        self.conv1 = StdConv2d(in_channels, mid_channels, kernel_size=1, bias=False)
        self.gn2 = nn.GroupNorm(32, mid_channels, eps=1e-6)
        self.conv2 = StdConv2d(mid_channels, mid_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.gn3 = nn.GroupNorm(32, out_channels, eps=1e-6)
        self.conv3 = StdConv2d(mid_channels, out_channels, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = StdConv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
            self.gn_proj = nn.GroupNorm(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.gn_proj(self.downsample(x))
        y = self.relu(self.gn1(self.conv1(x)))
        y = self.relu(self.gn2(self.conv2(y)))
        return self.relu(residual + self.gn3(self.conv3(y)))


class ResNetV2(nn.Module):
    """The hybrid stem: ``root`` (StdConv7x7 s2, GN, ReLU), a 3x3 s2 max-pool and three blocks of bottleneck units.

    Args:
        units: bottleneck units in ``block1`` .. ``block3``.
        width: root width; the blocks output ``4 * width``, ``8 * width`` and ``16 * width`` channels.
        in_channels: image channels.
    """

    def __init__(self, units: Sequence[int] = (3, 4, 9), width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        if len(units) != 3:
            raise ValueError(f"ResNetV2 needs three block depths, got {list(units)}")
        self.width = width
        self.root = nn.Sequential()
        self.root.add_module("conv", StdConv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False))
        self.root.add_module("gn", nn.GroupNorm(32, width, eps=1e-6))
        self.root.add_module("relu", nn.ReLU(inplace=True))
        self.body = nn.Sequential()
        previous = width
        for index, depth in enumerate(units):
            out_channels, mid_channels = width * 4 * 2**index, width * 2**index
            block = nn.Sequential()
            for unit in range(depth):
                stride = 2 if index and not unit else 1
                block.add_module(f"unit{unit + 1}", PreActBottleneck(previous, out_channels, mid_channels, stride))
                previous = out_channels
            self.body.add_module(f"block{index + 1}", block)

    @property
    def out_channels(self) -> int:
        """Channels of the deepest map (``16 * width``)."""
        return self.width * 16

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the stem.

        Args:
            x: image batch ``(B, C, H, W)``, H and W multiples of 16.

        Returns:
            The ``16 * width`` map at H/16 and the skips shallow to deep: root (H/2), block1 zero-padded to H/4,
            block2 (H/8).
        """
        height, width = x.shape[-2:]
        x = self.root(x)
        skips = [x]
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        blocks = list(self.body)
        for scale, block in zip((4, 8), blocks[:-1], strict=True):
            x = block(x)
            skips.append(F.pad(x, (0, width // scale - x.shape[-1], 0, height // scale - x.shape[-2])))
        return blocks[-1](x), skips


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


class _Embeddings(nn.Module):
    """ResNetV2 stem, 1x1 patch projection and learnt position embeddings for a ``grid``."""

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


class _Encoder(nn.Module):
    def __init__(self, hidden: int, num_layers: int, num_heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Block(hidden, num_heads, mlp_dim, dropout) for _ in range(num_layers))
        self.encoder_norm = nn.LayerNorm(hidden, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layer:
            x = block(x)
        return self.encoder_norm(x)


class _Transformer(nn.Module):
    """Holds the embeddings and the ViT encoder under the official names; :class:`TransUNet` runs them."""

    def __init__(self, embeddings: _Embeddings, encoder: _Encoder) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.encoder = encoder


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _DecoderBlock(nn.Module):
    """Bilinear x2 up-sampling, optional skip concatenation, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = _conv_bn_relu(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class _DecoderCup(nn.Module):
    """Holds ``conv_more`` and the decoder blocks under the official names; :class:`TransUNet` runs them."""

    def __init__(self, hidden: int, head_channels: int, channels: Sequence[int], skip_channels: Sequence[int]):
        super().__init__()
        self.conv_more = _conv_bn_relu(hidden, head_channels)
        inputs = [head_channels, *channels[:-1]]
        self.blocks = nn.ModuleList(
            _DecoderBlock(i, o, s) for i, o, s in zip(inputs, channels, skip_channels, strict=True)
        )


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
        embeddings = _Embeddings(
            resnet_units, resnet_width, stem_channels, hidden_size, img_size // self.output_stride, dropout
        )
        self.transformer = _Transformer(embeddings, _Encoder(hidden_size, num_layers, num_heads, mlp_dim, dropout))
        self.decoder = _DecoderCup(hidden_size, head_channels, decoder_channels, skip_channels)
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


_Convert = Callable[[np.ndarray], np.ndarray]


def _conv(kernel: np.ndarray) -> np.ndarray:
    """HWIO -> OIHW."""
    return kernel.transpose(3, 2, 0, 1)


def _dense(kernel: np.ndarray) -> np.ndarray:
    """``(in, out)`` or ``(in, heads, head_dim)`` -> ``(out, in)``."""
    return kernel.reshape(kernel.shape[0], -1).T


def _dense_from_heads(kernel: np.ndarray) -> np.ndarray:
    """``(heads, head_dim, out)`` -> ``(out, in)``."""
    return kernel.reshape(-1, kernel.shape[-1]).T


def _flat(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1)


def _npz_mapping(model: TransUNet) -> dict[str, tuple[str, _Convert]]:
    """``{model parameter: (npz key, conversion)}`` for the encoder, position embeddings excluded."""
    mapping: dict[str, tuple[str, _Convert]] = {}
    embeddings = "transformer.embeddings."
    mapping[embeddings + "patch_embeddings.weight"] = ("embedding/kernel", _conv)
    mapping[embeddings + "patch_embeddings.bias"] = ("embedding/bias", _flat)
    resnet = embeddings + "hybrid_model."
    mapping[resnet + "root.conv.weight"] = ("conv_root/kernel", _conv)
    mapping[resnet + "root.gn.weight"] = ("gn_root/scale", _flat)
    mapping[resnet + "root.gn.bias"] = ("gn_root/bias", _flat)
    for block_name, block in model.transformer.embeddings.hybrid_model.body.named_children():
        for unit_name, unit in block.named_children():
            ours, theirs = f"{resnet}body.{block_name}.{unit_name}.", f"{block_name}/{unit_name}/"
            convs = {"conv1": "conv1", "conv2": "conv2", "conv3": "conv3"}
            norms = {"gn1": "gn1", "gn2": "gn2", "gn3": "gn3"}
            if unit.downsample is not None:
                convs["downsample"], norms["gn_proj"] = "conv_proj", "gn_proj"
            for module, name in convs.items():
                mapping[f"{ours}{module}.weight"] = (f"{theirs}{name}/kernel", _conv)
            for module, name in norms.items():
                mapping[f"{ours}{module}.weight"] = (f"{theirs}{name}/scale", _flat)
                mapping[f"{ours}{module}.bias"] = (f"{theirs}{name}/bias", _flat)
    encoder = "transformer.encoder."
    mapping[encoder + "encoder_norm.weight"] = ("Transformer/encoder_norm/scale", _flat)
    mapping[encoder + "encoder_norm.bias"] = ("Transformer/encoder_norm/bias", _flat)
    layers = {
        "attn.query": ("MultiHeadDotProductAttention_1/query", _dense),
        "attn.key": ("MultiHeadDotProductAttention_1/key", _dense),
        "attn.value": ("MultiHeadDotProductAttention_1/value", _dense),
        "attn.out": ("MultiHeadDotProductAttention_1/out", _dense_from_heads),
        "ffn.fc1": ("MlpBlock_3/Dense_0", _dense),
        "ffn.fc2": ("MlpBlock_3/Dense_1", _dense),
    }
    norms = {"attention_norm": "LayerNorm_0", "ffn_norm": "LayerNorm_2"}
    for index in range(len(model.transformer.encoder.layer)):
        ours, theirs = f"{encoder}layer.{index}.", f"Transformer/encoderblock_{index}/"
        for module, (name, convert) in layers.items():
            mapping[f"{ours}{module}.weight"] = (f"{theirs}{name}/kernel", convert)
            mapping[f"{ours}{module}.bias"] = (f"{theirs}{name}/bias", _flat)
        for module, name in norms.items():
            mapping[f"{ours}{module}.weight"] = (f"{theirs}{name}/scale", _flat)
            mapping[f"{ours}{module}.bias"] = (f"{theirs}{name}/bias", _flat)
    return mapping


_POSITION_KEY = "Transformer/posembed_input/pos_embedding"


def _position_embeddings(stored: np.ndarray, grid: int) -> torch.Tensor:
    """The npz position embeddings ``(1, n, D)`` for a ``grid x grid`` model, as the official ``load_from``.

    Equal token counts are copied; one extra token (the class token of ImageNet pre-training) is dropped; otherwise
    the class token is dropped and the square grid resized.
    """
    tokens = torch.from_numpy(np.ascontiguousarray(stored, dtype=np.float32))
    count = tokens.shape[1]
    if count == grid * grid:
        return tokens
    if count - 1 == grid * grid:
        return tokens[:, 1:]
    old = round((count - 1) ** 0.5)
    if old * old != count - 1:
        raise EncoderWeightsError(f"{_POSITION_KEY} holds {count} tokens: not a class token plus a square grid")
    return resize_position_embeddings(tokens[:, 1:], (old, old), (grid, grid))


def load_transunet_pretrained(model: TransUNet, path: str | Path) -> None:
    """Fill the encoder of a :class:`TransUNet` from the official ImageNet-21k ``R50+ViT-B_16.npz``.

    As the official ``load_from``: the ResNetV2 stem, the patch projection, the position embeddings (the class token
    dropped, the grid resized bilinearly when ``img_size`` differs from the pre-training grid), the ViT blocks and
    ``encoder_norm`` are loaded; the decoder and the segmentation head keep their random initialisation. Convolution
    kernels are stored HWIO, dense kernels ``(in, out)`` (attention ``(in, heads, head_dim)`` and
    ``(heads, head_dim, out)``). Other keys of the file (``cls``, ``head``, ``pre_logits``) are ignored.

    Args:
        model: the network to fill in place.
        path: ``.npz`` file with the original JAX key names (``conv_root/kernel``, ``block1/unit1/conv1/kernel``,
            ``Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel``, ...).

    Raises:
        EncoderWeightsError: the file is missing or unreadable, keys are missing (the message lists them, e.g. for a
            plain ViT without the ResNet stem, or fewer layers) or arrays have the wrong size for this model.
    """
    path = Path(path)
    if not path.is_file():
        raise EncoderWeightsError(f"TransUNet weights file not found: {path}")
    try:
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:
        raise EncoderWeightsError(f"cannot read {path} as a numpy .npz archive: {error}") from error
    mapping = _npz_mapping(model)
    missing = [key for key, _ in mapping.values() if key not in arrays]
    missing += [] if _POSITION_KEY in arrays else [_POSITION_KEY]
    if missing:
        shown = ", ".join(missing[:8]) + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else "")
        raise EncoderWeightsError(f"{path} is not an R50+ViT checkpoint matching this TransUNet; missing keys: {shown}")
    target = model.state_dict()
    weights: dict[str, torch.Tensor] = {}
    mismatched = []
    for name, (key, convert) in mapping.items():
        array = np.asarray(arrays[key], dtype=np.float32)
        if array.size != target[name].numel():
            mismatched.append(f"{key} {array.shape} -> {name} {tuple(target[name].shape)}")
            continue
        weights[name] = torch.from_numpy(np.ascontiguousarray(convert(array))).reshape(target[name].shape)
    if mismatched:
        shown = "; ".join(mismatched[:5]) + (f" (+{len(mismatched) - 5} more)" if len(mismatched) > 5 else "")
        raise EncoderWeightsError(f"{path} has arrays of the wrong size for this TransUNet: {shown}")
    position_name = "transformer.embeddings.position_embeddings"
    position = _position_embeddings(arrays[_POSITION_KEY], model.transformer.embeddings.grid)
    if position.shape != target[position_name].shape:
        raise EncoderWeightsError(
            f"{path}: {_POSITION_KEY} {tuple(position.shape)} does not fit {tuple(target[position_name].shape)}"
        )
    weights[position_name] = position
    model.load_state_dict(weights, strict=False)
