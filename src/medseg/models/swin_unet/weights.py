"""Loading a Swin Transformer ImageNet checkpoint (``swin_tiny_patch4_window7_224.pth``) into a Swin-UNet."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from medseg.models.encoders import EncoderWeightsError

__all__ = ["load_swin_pretrained"]


_DERIVED_SUFFIXES = ("relative_position_index", "attn_mask")
"""Buffers of a Swin checkpoint that this implementation recomputes instead of loading."""


def _describe(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_swin_pretrained(model: nn.Module, path: str | Path) -> list[str]:
    """Initialise a :class:`SwinUNet` from a Swin Transformer ImageNet checkpoint, like the official ``load_from``.

    The checkpoint's encoder tensors (``patch_embed``, ``layers.i``, ``norm``) fill the encoder, and the Swin blocks
    of ``layers.i`` also fill the mirrored decoder stage ``layers_up.(n - 1 - i)``. The classifier (``head``) and the
    derived buffers (``relative_position_index``, ``attn_mask``) are ignored; the skip reductions, the patch
    expansions, ``norm_up`` and the output convolution keep their random initialisation. As in the official code,
    a tensor whose shape differs from the model's (for example a relative-position table when a small ``img_size``
    shrinks a stage's window) is skipped with a warning.

    Args:
        model: the :class:`~medseg.models.swin_unet.SwinUNet` to fill in place.
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
