"""Overlay images: prediction and ground truth drawn on the input image."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["PALETTE", "overlay", "to_display_rgb"]

PALETTE = np.array(
    [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
    ],
    dtype=np.uint8,
)


def to_display_rgb(image: np.ndarray) -> np.ndarray:
    """Turn an (H, W), (H, W, 1) or (H, W, 3) image of any range into uint8 RGB for display.

    Args:
        image: the raw image.

    Returns:
        ``(H, W, 3)`` uint8 image.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8:
        low, high = float(array.min()), float(array.max())
        array = ((array - low) / (high - low if high > low else 1.0) * 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return array[..., :3]


def overlay(
    image: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None = None, alpha: float = 0.45
) -> np.ndarray:
    """Blend predicted classes over the image and draw the ground-truth outline in white.

    Args:
        image: raw image (any layout accepted by :func:`to_display_rgb`).
        prediction: ``(H, W)`` class indices.
        truth: optional ``(H, W)`` ground-truth class indices.
        alpha: opacity of the prediction colours.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.
    """
    canvas = to_display_rgb(image).astype(np.float32)
    labels = np.asarray(prediction).astype(np.int64)
    colours = PALETTE[labels % len(PALETTE)].astype(np.float32)
    foreground = labels > 0
    canvas[foreground] = (1 - alpha) * canvas[foreground] + alpha * colours[foreground]
    if truth is not None:
        truth = np.asarray(truth)
        for value in np.unique(truth[truth > 0]):
            region = truth == value
            edge = region & ~ndimage.binary_erosion(region)
            canvas[edge] = 255.0
    return canvas.clip(0, 255).astype(np.uint8)
