"""The 8-bit resizing path of loaders built on OpenCV: ``cv2.resize`` (``INTER_LINEAR``) of uint8 arrays.

UCTransNet's and ResUNet++'s test loaders read the stored 8-bit image and mask, resize both with
``cv2.resize(array, (size, size))`` and only then scale the image to [0, 1] and threshold the mask. On uint8
input OpenCV interpolates in fixed point, so the resized mask holds rounded integers and ``> 0`` keeps a pixel
only when its interpolated value reaches about one half of a grey level. :func:`resize_linear_u8` reproduces
that arithmetic bit for bit (no OpenCV needed):

* source coordinate of output index ``d``: ``float32((d + 0.5) * (src / dst) - 0.5)``, split into ``floor`` and a
  fraction ``f``; horizontally a coordinate left of the first pixel or right of the last one is clamped to that
  pixel with ``f = 0``, vertically only the row index is clamped (the weights are kept);
* weights ``round(f * 2048)`` and ``round((1 - f) * 2048)`` (11 fractional bits, ``float32`` products rounded half
  to even);
* horizontal pass exact in integers: ``h = w0 · s[x0] + w1 · s[x1]``;
* vertical pass as OpenCV's 8-bit kernel (vector and scalar code agree):
  ``((w0 · (h0 >> 4)) >> 16) + ((w1 · (h1 >> 4)) >> 16)``, then ``(v + 2) >> 2``.

An exact 2x reduction, which OpenCV computes with its area kernel, gives the same values: ``(a + b + c + d + 2) >> 2``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medseg.data import LoadedCase
from medseg.data.errors import DataError

__all__ = ["case_mask_u8", "read_mask_u8", "resize_linear_u8", "stored_mask_u8"]

COEF_BITS = 11
COEF_SCALE = 1 << COEF_BITS


def _axis_table(src: int, dst: int, clamp_weights: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``(i0, i1)`` and fixed-point weights ``(w0, w1)`` of one axis, as OpenCV builds them."""
    scale = 1.0 / (dst / src)
    coord = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    index = np.floor(coord).astype(np.int64)
    frac = (coord - index.astype(np.float32)).astype(np.float32)
    if clamp_weights:
        outside = (index < 0) | (index >= src - 1)
        frac[outside] = 0
        index = np.where(index < 0, 0, np.where(index >= src - 1, src - 1, index))
    w1 = np.rint(frac * np.float32(COEF_SCALE)).astype(np.int64)
    w0 = np.rint((np.float32(1) - frac) * np.float32(COEF_SCALE)).astype(np.int64)
    return np.clip(index, 0, src - 1), np.clip(index + 1, 0, src - 1), w0, w1


def resize_linear_u8(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 image exactly as ``cv2.resize(array, (width, height))`` (bilinear, ``INTER_LINEAR``) does.

    Args:
        array: ``(H, W)`` or ``(H, W, C)`` uint8 array.
        size: ``(height, width)`` of the result.

    Returns:
        The resized uint8 array, ``(height, width)`` or ``(height, width, C)``.

    Raises:
        ValueError: an array that is not uint8 or not 2D/3D, or an empty size.
    """
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"expected a (H, W) or (H, W, C) uint8 array, got {array.dtype} {array.shape}")
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    if array.shape[:2] == (height, width):
        return array.copy()
    pixels = array.astype(np.int64)
    if array.ndim == 2:
        pixels = pixels[..., None]
    x0, x1, a0, a1 = _axis_table(array.shape[1], width, clamp_weights=True)
    y0, y1, b0, b1 = _axis_table(array.shape[0], height, clamp_weights=False)
    rows = pixels[:, x0] * a0[None, :, None] + pixels[:, x1] * a1[None, :, None]
    top = (b0[:, None, None] * (rows[y0] >> 4)) >> 16
    bottom = (b1[:, None, None] * (rows[y1] >> 4)) >> 16
    out = np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)
    return out[..., 0] if array.ndim == 2 else out


def read_mask_u8(path: Path) -> np.ndarray:
    """Read a mask file as ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` does for 8-bit files: one grey channel.

    Grey files give their stored values (0/1, 0/255, instance labels, JPEG noise); palette files the grey of their
    palette colours; colour files their luma (``0.299 R + 0.587 G + 0.114 B``, identical for grey stored as RGB).

    Args:
        path: an 8-bit mask image.

    Returns:
        ``(H, W)`` uint8.

    Raises:
        DataError: unreadable file, or not an 8-bit image.
    """
    try:
        with Image.open(path) as image:
            if image.mode not in {"1", "L", "P", "RGB", "RGBA", "LA", "PA"}:
                raise DataError(f"mask {path} is not an 8-bit image (mode {image.mode!r})")
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except OSError as error:
        raise DataError(f"cannot read mask {path}: {error}") from None


def case_mask_u8(case: LoadedCase) -> np.ndarray:
    """The 8-bit mask an OpenCV-based loader reads for ``case``.

    Its mask file in grey (:func:`read_mask_u8`) when the reader names one and it has the mask's size; otherwise
    (generated masks, masks drawn from annotations or merged from several files) the 0/255 image of the class
    mask (:func:`stored_mask_u8`).

    Args:
        case: a loaded 2D case.

    Returns:
        ``(H, W)`` uint8.
    """
    if case.mask_path is not None:
        stored = read_mask_u8(case.mask_path)
        if stored.shape == case.mask.shape:
            return stored
    return stored_mask_u8(case.mask)


def stored_mask_u8(mask: np.ndarray) -> np.ndarray:
    """The 8-bit mask file a binary class-index mask corresponds to: foreground 255, background 0.

    Exact for masks stored as 0/255 (the usual binary PNG, as in the UCTransNet-layout GlaS and MoNuSeg folders);
    used when no mask file is at hand (:func:`case_mask_u8`). For masks stored otherwise the official loaders
    binarise differently after resizing: 0/1 or instance-label masks keep a pixel only at about half coverage,
    lossy JPEG masks keep their faint noise.

    Args:
        mask: ``(H, W)`` class indices (non-zero is foreground).

    Returns:
        ``(H, W)`` uint8 with values 0 and 255.
    """
    return np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8)
