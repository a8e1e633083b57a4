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

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from medseg.config import ConfigError
from medseg.data.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "check_label_map",
    "format_names",
    "list_image_files",
    "mask_classes",
    "mask_values",
    "read_image",
    "read_image_size",
    "read_mask",
    "to_class_indices",
    "verify_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_GREY_MODES = {"1", "L", "LA", "La"}
_COLOUR_MODES = {"P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
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


def read_image_size(path: Path) -> tuple[int, int]:
    """Read an image's size from its header, without decoding the pixels.

    Args:
        path: image file.

    Returns:
        ``(height, width)``.

    Raises:
        DataError: a file that is not a readable image.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception as error:  # Pillow raises many types for damaged files; all mean "unreadable"
        raise DataError(f"cannot read image {path}: {error}") from None
    return height, width


def verify_image(path: Path) -> tuple[int, int]:
    """Decode an image completely (without converting it), so truncated or corrupt files are found.

    JPEG files are decoded at reduced scale: the whole stream is still read, in a fraction of the time.

    Args:
        path: image file.

    Returns:
        ``(height, width)`` at full size.

    Raises:
        DataError: a file that is not a readable image.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except Exception as error:  # Pillow raises many types for damaged files; all mean "unreadable"
        raise DataError(f"cannot read image {path}: {error}") from None
    return height, width


def read_image(path: Path) -> np.ndarray:
    """Read an 8-bit grey, palette or colour image.

    Args:
        path: image file.

    Returns:
        ``(H, W, 3)`` uint8 for colour and palette images, ``(H, W, 1)`` uint8 for grey ones.

    Raises:
        DataError: unreadable file or unsupported pixel format (e.g. 16-bit).
    """
    with _open(path, "image") as image:
        if image.mode in _GREY_MODES:
            return np.array(image.convert("L"))[..., None]
        if image.mode in _COLOUR_MODES:
            return np.array(image.convert("RGB"))
        raise DataError(
            f"image {path} has unsupported pixel format {image.mode!r}; use 8-bit grey, palette or RGB(A) images"
        )


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
