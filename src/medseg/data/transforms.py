"""Preprocessing.

:func:`prepare_image` turns a raw ``(H, W, C)`` image into the model's channels and value range at native
size; training, evaluation and inference all use it. :func:`build_transforms` then resizes to
``data.image_size``. Both work on channel-first arrays, so no MONAI image reader (and none of its axis
transposes) is involved. Training augmentation runs later, on whole batches on the training device
(:mod:`medseg.data.augment`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medseg.config import ConfigError, DataConfig
from medseg.data.errors import DataError

if TYPE_CHECKING:
    from monai.transforms import Compose

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "build_transforms", "check_normalization", "prepare_image"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

KEYS = ("image", "mask")


def check_normalization(data_cfg: DataConfig) -> None:
    """Check that ``data.transforms.normalize`` fits ``data.in_channels``.

    Args:
        data_cfg: the data section of the experiment.

    Raises:
        ConfigError: ``imagenet`` without 3 channels, or ``zscore`` without a positive ``mean``/``std`` per
            channel.
    """
    cfg, channels = data_cfg.transforms, data_cfg.in_channels
    if cfg.normalize == "imagenet" and channels != 3:
        raise ConfigError(f"data.transforms.normalize=imagenet needs data.in_channels=3, got {channels}")
    if cfg.normalize == "zscore":
        for key, values in (("mean", cfg.mean), ("std", cfg.std)):
            if values is None or len(values) != channels:
                raise ConfigError(
                    f"data.transforms.normalize=zscore needs data.transforms.{key} with one value per "
                    f"channel (data.in_channels={channels}), got {values}"
                )
        if min(cfg.std or []) <= 0:
            raise ConfigError(f"data.transforms.std must be positive, got {cfg.std}")


def prepare_image(image: np.ndarray, data_cfg: DataConfig, source: str | Path | None = None) -> np.ndarray:
    """Convert a raw image to the model's channels and value range, keeping its size.

    Grey images are repeated to 3 channels when ``data.in_channels == 3``; RGB images become grey by
    luminance (ITU-R 601) when it is 1. Values are normalised per ``data.transforms.normalize``: ``unit``,
    ``imagenet`` and ``zscore`` take them in 0..255 units; ``none`` keeps them as they are (e.g. the float
    images in [0, 1] of ACDC and Synapse) and ``minmax`` rescales each image to [0, 1] whatever its range.

    Args:
        image: ``(H, W, C)`` or ``(H, W)`` array, uint8 or float (0..255, or any range with ``none`` and
            ``minmax``).
        data_cfg: the data section of the experiment.
        source: where the image came from, for error messages.

    Returns:
        ``(C, H, W)`` float32 with ``C = data.in_channels``.

    Raises:
        DataError: an image of the wrong rank or with channels that cannot be converted.
        ConfigError: normalisation settings that do not fit (see :func:`check_normalization`).
    """
    name = f"image {source}" if source is not None else "image"
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise DataError(f"{name} must be (H, W, C) or (H, W), got shape {image.shape}")
    pixels = image.astype(np.float32)
    channels, wanted = pixels.shape[-1], data_cfg.in_channels
    if channels != wanted:
        if channels == 1 and wanted == 3:
            pixels = np.repeat(pixels, 3, axis=-1)
        elif channels == 3 and wanted == 1:
            pixels = (pixels @ LUMA_WEIGHTS)[..., None]
        else:
            raise DataError(f"{name} has {channels} channels; cannot convert it to data.in_channels={wanted}")
    check_normalization(data_cfg)
    cfg = data_cfg.transforms
    if cfg.normalize == "unit":
        pixels /= 255.0
    elif cfg.normalize == "imagenet":
        pixels = (pixels / 255.0 - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    elif cfg.normalize == "zscore":
        pixels = (pixels - np.array(cfg.mean, np.float32)) / np.array(cfg.std, np.float32)
    elif cfg.normalize == "minmax":
        low, high = float(pixels.min()), float(pixels.max())
        pixels = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)


def _add_mask_channel(data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
    """Give a ``(H, W)`` mask the leading channel axis MONAI's spatial transforms expect."""
    out = dict(data)
    if "mask" in data and np.ndim(data["mask"]) == 2:
        out["mask"] = np.asarray(data["mask"])[None]
    return out


def _to_tensors(data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
    """Plain tensors out: image float32 ``(C, S, S)``, mask int64 ``(S, S)``."""
    out = dict(data)
    out["image"] = torch.as_tensor(data["image"]).as_subclass(torch.Tensor).float().contiguous()
    if "mask" in data:
        mask = torch.as_tensor(data["mask"]).as_subclass(torch.Tensor)
        out["mask"] = mask.round().long().squeeze(0).contiguous()
    return out


def build_transforms(data_cfg: DataConfig) -> Compose:
    """Resize a prepared image and its mask to ``data.image_size``; every split gets the same transform.

    Resizing is bilinear for the image (``align_corners=False``, no anti-aliasing, as
    ``torch.nn.functional.interpolate``) and nearest for the mask.

    The input dictionary holds ``image``, a ``(C, H, W)`` float array from :func:`prepare_image`, and
    ``mask``, a ``(1, H, W)`` or ``(H, W)`` integer array; the mask may be left out (inference). The training
    augmentations of ``data.transforms`` are not applied here but to whole batches on the training device
    (:class:`medseg.data.augment.BatchAugment`).

    Args:
        data_cfg: the data section of the experiment.

    Returns:
        A deterministic MONAI ``Compose`` giving ``image`` float32 ``(C, S, S)`` and ``mask`` int64 ``(S, S)``
        tensors, ``S = data.image_size``.

    Raises:
        ConfigError: normalisation settings that do not fit (see :func:`check_normalization`).
    """
    from monai.transforms import Compose, Resized  # imported here: MONAI takes a second to import

    check_normalization(data_cfg)
    size = (data_cfg.image_size, data_cfg.image_size)
    resize = Resized(KEYS, size, mode=("bilinear", "nearest-exact"), allow_missing_keys=True)
    steps: list[Callable[..., Any]] = [_add_mask_channel, resize, _to_tensors]
    return Compose(steps)
