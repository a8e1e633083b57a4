"""Loading the official ImageNet-21k ``R50+ViT-B_16.npz`` (JAX key names) into a TransUNet encoder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medseg.models.encoders import EncoderWeightsError
from medseg.models.transunet.vit import resize_position_embeddings

__all__ = ["load_transunet_pretrained"]


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


def _npz_mapping(model: nn.Module) -> dict[str, tuple[str, _Convert]]:
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


def load_transunet_pretrained(model: nn.Module, path: str | Path) -> None:
    """Fill the encoder of a :class:`TransUNet` from the official ImageNet-21k ``R50+ViT-B_16.npz``.

    As the official ``load_from``: the ResNetV2 stem, the patch projection, the position embeddings (the class token
    dropped, the grid resized bilinearly when ``img_size`` differs from the pre-training grid), the ViT blocks and
    ``encoder_norm`` are loaded; the decoder and the segmentation head keep their random initialisation. Convolution
    kernels are stored HWIO, dense kernels ``(in, out)`` (attention ``(in, heads, head_dim)`` and
    ``(heads, head_dim, out)``). Other keys of the file (``cls``, ``head``, ``pre_logits``) are ignored.

    Args:
        model: the :class:`~medseg.models.transunet.TransUNet` to fill in place.
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
