"""Reading images and masks from disk and turning raw mask values into class indices.

Label rule (shared by every file-based reader), applied to the single-channel raw mask:

1. ``mask_threshold`` set: ``mask = (mask >= threshold)``, giving {0, 1} (for lossy JPEG masks).
2. ``label_map`` set: each raw value listed in the map becomes its class; a value not listed must already be a
   valid class index ``0..num_classes-1`` and is kept.
3. No ``label_map``: values must lie in ``0..num_classes-1``, except that a binary task (``num_classes == 2``)
   also accepts masks whose values are all in {0, 255}, read as {0, 1}.

Any other value is a :class:`DataError` naming the file and the unexpected values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from medseg.config import ConfigError
from medseg.data.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "check_image",
    "check_label_map",
    "duplicate_groups",
    "format_names",
    "list_image_files",
    "mask_classes",
    "mask_values",
    "pixel_hash",
    "read_image",
    "read_mask",
    "to_class_indices",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""File endings read as 2D images (by the readers and by ``medseg predict``)."""

_GREY_MODES = {"1", "L", "LA", "La"}
_COLOUR_MODES = {"P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_GREY16_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_MAX_16 = 2**16 - 1
_SCALE_16 = 257.0  # 65535 / 255: 16-bit values onto the 0..255 scale of 8-bit images
_VALUE_CHECKED_MODES = {"I", "F"}  # read_image refuses some of their values: check_image decodes them
_MASK_MODES = {"1", "L", "LA", "La", "P", "PA", "I", "I;16", "I;16B", "I;16L", "RGB", "RGBA", "RGBX"}


def format_names(names: Iterable[object], limit: int = 10) -> str:
    """Join names for an error message, shortened after ``limit`` entries.

    Args:
        names: the names (or values) to list.
        limit: how many to show before ``... and N more``.

    Returns:
        A comma-separated text.
    """
    items = [str(name) for name in names]
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... and {len(items) - limit} more"


def list_image_files(folder: Path, what: str, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """Map file stem to path for every image file of a folder (not recursive, hidden files ignored).

    Args:
        folder: the folder to list.
        what: what the files are (``image`` or ``mask``), for error messages.
        suffixes: the file name suffixes to list (lower case; files match in any letter case).

    Returns:
        Stem -> path, sorted by stem.

    Raises:
        DataError: missing folder, no matching files, or two files with the same stem.
    """
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in suffixes or not path.is_file():
            continue
        if path.stem in found:
            raise DataError(f"two {what} files with the same name stem: {found[path.stem]} and {path}")
        found[path.stem] = path
    if not found:
        raise DataError(f"no {what} files in {folder} (looked for {format_names(suffixes)})")
    return dict(sorted(found.items()))


def _open(path: Path, what: str) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except Exception as error:  # Pillow raises many types for damaged files; all mean "unreadable"
        raise DataError(f"cannot read {what} {path}: {error}") from None
    return image


def _image_kind(image: Image.Image, path: Path) -> str:
    """How :func:`read_image` reads an image of this pixel format: ``grey``, ``colour``, ``grey16`` or ``float``."""
    if image.mode in _GREY_MODES:
        return "grey"
    if image.mode in _COLOUR_MODES:
        return "colour"
    if image.mode in _GREY16_MODES:
        return "grey16"
    if image.mode == "F":
        return "float"
    raise DataError(
        f"image {path} has unsupported pixel format {image.mode!r}; use grey (8 or 16 bit), palette, RGB(A) or "
        "float images"
    )


def _decode(image: Image.Image, path: Path) -> np.ndarray:
    """The pixels of an opened image as :func:`read_image` returns them (its rules are in its docstring)."""
    kind = _image_kind(image, path)
    if kind == "grey":
        return np.array((image.convert("LA") if image.mode == "La" else image).convert("L"))[..., None]
    if kind == "colour":
        return np.array(image.convert("RGB"))
    values = np.asarray(image)
    if kind == "grey16":
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > _MAX_16:
            raise DataError(
                f"image {path} is a 32-bit integer image with values {low}..{high}; only 0..{_MAX_16} "
                "(16-bit) integer images are supported"
            )
        return (values.astype(np.float32) / _SCALE_16)[..., None]
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise DataError(f"image {path} has {bad} pixel(s) that are NaN or infinite")
    return values.astype(np.float32)[..., None]


def check_image(path: Path) -> tuple[int, int]:
    """The cheap part of :func:`read_image`'s validation, run on every case before training starts.

    Reads the header and refuses what :func:`read_image` refuses by pixel format; images whose values
    :func:`read_image` checks (float, 32-bit integer) are decoded and checked in full. Other images have their
    pixel data read through cheaply, so truncated and damaged files are refused before training starts: PNG
    chunks are read and their checksums checked without inflating the pixels, JPEGs are decoded at 1/8 scale,
    other formats in full. An image that fails this is decoded by :func:`read_image`, whose error (or
    acceptance) stands, so nothing is refused here that ``medseg data check`` accepts.

    Args:
        path: image file.

    Returns:
        ``(height, width)``.

    Raises:
        DataError: a file that is not a readable image, an unsupported pixel format, or bad values.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            _image_kind(image, path)
            decode = image.mode in _VALUE_CHECKED_MODES or not _reads_through(image)
    except DataError:
        raise
    except Exception as error:  # Pillow raises many types for damaged files; all mean "unreadable"
        raise DataError(f"cannot read image {path}: {error}") from None
    if decode:
        read_image(path)
    return height, width


def _reads_through(image: Image.Image) -> bool:
    """Whether the pixel data of an opened image can be read to its end (cheaply, see :func:`check_image`)."""
    try:
        if image.format == "PNG":
            image.verify()  # every chunk read and its checksum checked; the pixels are not inflated
            return True
        if image.format == "JPEG":
            image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()
    except Exception:  # Pillow raises many types for damaged data; read_image then gives the verdict
        return False
    return True


def read_image(path: Path) -> np.ndarray:
    """Read a 2D image as an array; the one decoder of training, inference and ``medseg data check``.

    Pixel formats (Pillow modes):

    * 8-bit grey (``L``; ``1`` as 0/255; ``LA`` without its alpha): ``(H, W, 1)`` uint8.
    * 8-bit colour and palette (``RGB``, ``RGBA``, ``P``, ``PA``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ...):
      ``(H, W, 3)`` uint8 RGB (palette colours looked up, alpha dropped). 16-bit colour files are reduced to
      8 bits per channel by Pillow itself (their high byte) and arrive here as ``RGB``.
    * 16-bit grey (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``, and ``I`` with values in 0..65535):
      ``(H, W, 1)`` float32 divided by 257, so 0..65535 becomes 0..255, the scale of 8-bit images (an 8-bit
      value ``v`` stored as 16-bit ``257 * v`` reads as exactly ``v``). ``I`` values outside 0..65535 are an
      error.
    * Float (``F``): ``(H, W, 1)`` float32, the stored values unchanged (normalise them with
      ``data.transforms.normalize: none`` or ``minmax`` unless they are on the 0..255 scale); a NaN or
      infinite pixel is an error.
    * Anything else is an error.

    Args:
        path: image file.

    Returns:
        ``(H, W, 3)`` or ``(H, W, 1)``: uint8 for 8-bit images, float32 for 16-bit and float ones.

    Raises:
        DataError: one line naming the file: unreadable, unsupported pixel format, or bad values.
    """
    with _open(path, "image") as image:
        return _decode(image, path)


def pixel_hash(image: np.ndarray) -> str:
    """A fingerprint of decoded pixels, equal for images with identical pixels.

    A colour image whose three channels are equal is hashed as the grey image it is, so a grey picture counts
    as the same whether it is stored as grey or as RGB.

    Args:
        image: ``(H, W, C)`` array from :func:`read_image`.

    Returns:
        The SHA-1 hex digest of dtype, shape and pixel bytes.
    """
    if image.ndim == 3 and image.shape[2] == 3:
        first = image[..., 0]
        if np.array_equal(image[..., 1], first) and np.array_equal(image[..., 2], first):
            image = first[..., None]
    image = np.ascontiguousarray(image)
    digest = hashlib.sha1(f"{image.dtype.str} {image.shape}".encode(), usedforsecurity=False)
    digest.update(image.data)
    return digest.hexdigest()


def duplicate_groups(hashes: Mapping[str, str]) -> list[list[str]]:
    """Group case ids whose images have the same :func:`pixel_hash`.

    Args:
        hashes: case id -> pixel hash.

    Returns:
        The groups of two or more ids, ids sorted within a group, groups sorted by their first id.
    """
    by_hash: dict[str, list[str]] = {}
    for case, digest in hashes.items():
        by_hash.setdefault(digest, []).append(case)
    return sorted(sorted(ids) for ids in by_hash.values() if len(ids) > 1)


def read_mask(path: Path, threshold: int | None = None) -> np.ndarray:
    """Read a mask as one channel of raw values, optionally binarised.

    Colour masks must have identical channels (after thresholding, when ``threshold`` is set); the first
    channel is kept. Palette masks give their palette indices; 1-bit masks give 0/255, like 8-bit ones.

    Args:
        path: mask file.
        threshold: when set, the result is ``mask >= threshold`` as {0, 1}.

    Returns:
        ``(H, W)`` int64 raw values.

    Raises:
        DataError: unreadable file, unsupported format or disagreeing colour channels.
    """
    with _open(path, "mask") as image:
        if image.mode not in _MASK_MODES:
            raise DataError(f"mask {path} has unsupported pixel format {image.mode!r}")
        mode = image.mode
        values = np.asarray(image.convert("L") if mode == "1" else image).astype(np.int64)
    if values.ndim == 3:
        if mode in {"LA", "La", "PA"}:
            values = values[..., 0]
        else:
            channels = values[..., :3] >= threshold if threshold is not None else values[..., :3]
            if not (np.all(channels[..., 1] == channels[..., 0]) and np.all(channels[..., 2] == channels[..., 0])):
                raise DataError(
                    f"mask {path} is a colour image whose channels differ; masks must be single-channel "
                    "(or grey stored as RGB)"
                )
            values = values[..., 0]
    if threshold is not None:
        values = (values >= threshold).astype(np.int64)
    return values


def check_label_map(label_map: Mapping[int, int] | None, num_classes: int) -> None:
    """Check that every target of ``data.label_map`` is a class index.

    Args:
        label_map: raw value -> class index, or ``None``.
        num_classes: number of classes including background.

    Raises:
        ConfigError: a target outside ``0..num_classes-1``.
    """
    if label_map is None:
        return
    bad = {raw: target for raw, target in label_map.items() if not 0 <= target < num_classes}
    if bad:
        raise ConfigError(
            f"data.label_map maps to classes outside 0..{num_classes - 1} (data.num_classes={num_classes}): {bad}"
        )


def mask_values(raw: np.ndarray) -> np.ndarray:
    """The distinct values of an integer mask.

    Args:
        raw: integer mask of any shape.

    Returns:
        Sorted distinct values (int64).
    """
    low, high = (int(raw.min()), int(raw.max())) if raw.size else (0, 0)
    if low >= 0 and high < 2**16:  # the usual case: fast counting instead of sorting
        return np.flatnonzero(np.bincount(raw.ravel(), minlength=high + 1)).astype(np.int64)
    return np.unique(raw).astype(np.int64)


def mask_classes(
    values: np.ndarray, source: Path | str, num_classes: int, label_map: Mapping[int, int] | None = None
) -> np.ndarray:
    """The class index of each distinct raw mask value, by the module's label rule.

    Args:
        values: sorted distinct raw values (from :func:`mask_values`).
        source: file the mask came from, for error messages.
        num_classes: number of classes including background.
        label_map: raw value -> class index, or ``None``.

    Returns:
        The class of each value (int64, same length as ``values``).

    Raises:
        DataError: values neither mapped nor valid class indices.
    """
    mapping = dict(label_map or {})
    if label_map is None and num_classes == 2 and set(values.tolist()) <= {0, 255}:
        mapping = {255: 1}
    classes = np.array([mapping.get(int(value), int(value)) for value in values], dtype=np.int64)
    unexpected = [int(value) for value, cls in zip(values, classes, strict=True) if not 0 <= cls < num_classes]
    if unexpected:
        hint = "set data.label_map or data.mask_threshold" if label_map is None else "extend data.label_map"
        raise DataError(
            f"mask {source} has values {format_names(unexpected)} that are not classes 0..{num_classes - 1} "
            f"(data.num_classes={num_classes}, data.label_map={label_map}); {hint}"
        )
    return classes


def to_class_indices(
    raw: np.ndarray, source: Path | str, num_classes: int, label_map: Mapping[int, int] | None = None
) -> np.ndarray:
    """Turn raw mask values into class indices by the module's label rule.

    Args:
        raw: integer mask of any shape (already thresholded when a threshold applies).
        source: file the mask came from, for error messages.
        num_classes: number of classes including background.
        label_map: raw value -> class index, or ``None``.

    Returns:
        int64 class indices, shaped like ``raw``.

    Raises:
        DataError: values neither mapped nor valid class indices.
    """
    values = mask_values(raw)
    classes = mask_classes(values, source, num_classes, label_map)
    return classes[np.searchsorted(values, raw)]
