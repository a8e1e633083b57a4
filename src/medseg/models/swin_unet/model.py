"""Swin-UNet (Cao et al., "Swin-Unet: Unet-like Pure Transformer for Medical Image Segmentation", ECCV-W 2022,
arXiv 2105.05537).

Official code: HuCaoFighting/Swin-Unet (``networks/swin_transformer_unet_skip_expand_decoder_sys.py``,
``networks/vision_transformer.py``). A U-shaped network of Swin Transformer blocks, channels-last ``(B, H, W, C)``
inside; tiny configuration at 224 px::

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

* Swin block (Liu et al., ICCV 2021): ``x + DropPath(W-MSA(LN(x)))`` then ``x + DropPath(MLP(LN(x)))``, MLP ratio 4,
  GELU, qkv bias, a learnt relative-position bias table of ``(2w - 1)^2`` entries per head, windows of ``w = 7``.
  Odd blocks shift the windows by ``w // 2`` with a cyclic roll and mask (-100) pairs of tokens that come from
  different regions. As in the official code, a stage whose token map (at ``img_size``) is not larger than the
  window uses one window of the map's size and never shifts: at 224 the 7x7 bottleneck stage has no shifted blocks.
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
the window are padded at the bottom and right before the window partition and cropped after it, the way the Swin v1
detection and segmentation code does (the padded tokens are zeros after the first LayerNorm and are not masked;
the shift mask is computed on the padded map). At ``img_size`` with the default window nothing is padded and the
result equals the official network. A 1-channel input is repeated to 3 channels, as in the official ``SwinUnet``.

Module and parameter names follow the official ``SwinTransformerSys`` (``patch_embed``, ``layers.i.blocks.j.attn``,
``layers.i.downsample``, ``layers_up``, ``concat_back_dim``, ``norm``, ``norm_up``, ``up``, ``output``), so a Swin-T
ImageNet checkpoint (``swin_tiny_patch4_window7_224.pth``) loads by name through :func:`load_swin_pretrained`, which
also initialises the decoder blocks from the mirrored encoder blocks as the official ``load_from`` does. The
relative-position index and shift masks are derived buffers and are not saved.

Features (``forward_features``, NCHW, tiny at 224; docs/methods/reseg_unet.md#other-backbones and
docs/methods/selfreg_unet.md#instrumented-networks): ``encoder`` = the last Swin-block output of ``layers.0 .. 2``
before merging (96@56, 192@28, 384@14); ``bottleneck`` = ``layers.3`` after ``norm`` (768@7); ``decoder`` = the last
Swin-block output of ``layers_up.1 .. 3`` before expansion (384@14, 192@28, 96@56); ``final`` = the output of the
final 4x expansion (96@224), before the 1x1 output convolution. ``encoder_blocks`` and ``decoder_blocks`` hold every
Swin block's output of ``layers.0 .. 3`` and ``layers_up.1 .. 3`` (the official SelfReg ``enc_feats``/``dec_feats``,
docs/methods/selfreg_unet.md#instrumented-networks; the bottleneck stage's blocks are before ``norm``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.encoders import EncoderWeightsError
from medseg.models.layers.drop_path import DropPath
from medseg.models.layers.tokens import PatchEmbed, PatchExpand, PatchMerging, init_token_weights, tokens_to_nchw
from medseg.models.registry import register_model

__all__ = [
    "SwinTransformerBlock",
    "SwinUNet",
    "WindowAttention",
    "load_swin_pretrained",
]

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


class _SwinStage(nn.Module):
    """Swin blocks of one stage (regular and shifted windows alternating) plus its optional resampling layer.

    ``forward`` runs the blocks only; the network applies ``downsample`` (encoder) or ``upsample`` (decoder) itself
    so that it can read the block output first.
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

        def stage(i: int, **resample: bool) -> _SwinStage:
            return _SwinStage(
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


_DERIVED_SUFFIXES = ("relative_position_index", "attn_mask")
"""Buffers of a Swin checkpoint that this implementation recomputes instead of loading."""


def _describe(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_swin_pretrained(model: SwinUNet, path: str | Path) -> list[str]:
    """Initialise a :class:`SwinUNet` from a Swin Transformer ImageNet checkpoint, like the official ``load_from``.

    The checkpoint's encoder tensors (``patch_embed``, ``layers.i``, ``norm``) fill the encoder, and the Swin blocks
    of ``layers.i`` also fill the mirrored decoder stage ``layers_up.(n - 1 - i)``. The classifier (``head``) and the
    derived buffers (``relative_position_index``, ``attn_mask``) are ignored; the skip reductions, the patch
    expansions, ``norm_up`` and the output convolution keep their random initialisation. As in the official code,
    a tensor whose shape differs from the model's (for example a relative-position table when a small ``img_size``
    shrinks a stage's window) is skipped with a warning.

    Args:
        model: the network to fill in place.
        path: ``.pth`` file holding ``{"model": state_dict}`` in the official Swin naming.

    Returns:
        The names of the model tensors skipped because of a shape mismatch (empty for the matching configuration).

    Raises:
        EncoderWeightsError: the file is missing or unreadable, holds no ``"model"`` state dict, or its encoder
            keys do not match the model's stages and blocks (e.g. another depth); the message names the keys.
    """
    path = Path(path)
    if not path.is_file():
        raise EncoderWeightsError(f"Swin checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise EncoderWeightsError(f"cannot read Swin checkpoint {path}: {error}") from error
    state = checkpoint.get("model") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = _describe(sorted(map(str, checkpoint))) if isinstance(checkpoint, Mapping) else type(checkpoint)
        raise EncoderWeightsError(
            f"{path} is not a Swin ImageNet checkpoint: expected its state dict under the key 'model' "
            f"(as in swin_tiny_patch4_window7_224.pth), found {found}"
        )
    source = {k: v for k, v in state.items() if not k.startswith("head.") and not k.endswith(_DERIVED_SUFFIXES)}
    target = model.state_dict()
    encoder_keys = [k for k in target if k.startswith(("patch_embed.", "layers.", "norm."))]
    missing = [k for k in encoder_keys if k not in source]
    unexpected = [k for k in source if k not in target]
    if missing or unexpected:
        problems = [f"missing keys: {_describe(missing)}"] if missing else []
        problems += [f"unexpected keys: {_describe(unexpected)}"] if unexpected else []
        raise EncoderWeightsError(
            f"{path} does not match this Swin-UNet encoder (check embed_dim, depths, num_heads); {'; '.join(problems)}"
        )
    last = len(model.layers) - 1
    weights = dict(source)
    for key, value in source.items():
        if not key.startswith("layers."):
            continue
        stage, _, rest = key.removeprefix("layers.").partition(".")
        mirrored = f"layers_up.{last - int(stage)}.{rest}"
        if rest.startswith("blocks.") and mirrored in target:
            weights[mirrored] = value
    skipped = [k for k, v in weights.items() if v.shape != target[k].shape]
    if skipped:
        warnings.warn(
            f"{path}: {len(skipped)} tensor(s) of another shape were left at random initialisation: "
            f"{_describe(skipped)}",
            stacklevel=2,
        )
    model.load_state_dict({k: v for k, v in weights.items() if k not in skipped}, strict=False)
    return skipped
