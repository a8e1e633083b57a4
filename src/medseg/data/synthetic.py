"""The built-in synthetic dataset: textured objects on a textured background, generated from a seed.

Every case is a pure function of ``(seed, split, index)``, so nothing is stored on disk. An image holds a
smooth, low-frequency coloured background, one to four foreground objects (about 3% of images have none) and
one to three distractors. Objects and distractors take the local background colour shifted by a random, signed
offset, so their colours overlap the background's and no global intensity threshold separates them; what
marks an object is its texture (stripes, a checker pattern, speckle or rings) and, for a multi-class task, its
shape. The whole image is then blurred and noised.

Binary task (``num_classes == 2``): any shape with any texture is foreground. Multi-class task: class ``k`` is
one shape family with one texture (class 1 striped ellipses, class 2 chequered rectangles, class 3 speckled
triangles, class 4 ringed blobs, then further shape/texture pairs), at most 16 foreground classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg.config import ConfigError, DataConfig
from medseg.data.errors import DataError
from medseg.data.readers import CaseRecord, DatasetReader, LoadedCase
from medseg.data.registry import register_reader

__all__ = ["SPLITS", "SyntheticReader", "generate_case"]


def gaussian_filter(*args: Any, **kwargs: Any) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter``, imported on first use (SciPy takes a quarter second to import)."""
    from scipy.ndimage import gaussian_filter as scipy_gaussian_filter

    return scipy_gaussian_filter(*args, **kwargs)


SPLITS = ("train", "val", "test")
SHAPES = ("ellipse", "rectangle", "triangle", "blob")
TEXTURES = ("stripes", "checker", "speckle", "rings")
MAX_CLASSES = len(SHAPES) * len(TEXTURES) + 1

_EMPTY_PROBABILITY = 0.03
_OBJECT_COUNTS = (1, 2, 3, 4)
_OBJECT_COUNT_PROBS = (0.35, 0.3, 0.2, 0.15)
_MIN_VISIBLE_SHARE = 0.004  # share of the frame a shape must cover

Grid = tuple[np.ndarray, np.ndarray]


def _class_look(class_index: int) -> tuple[str, str]:
    """Shape and texture of foreground class ``class_index`` (1-based) of a multi-class task."""
    i = class_index - 1
    return SHAPES[i % len(SHAPES)], TEXTURES[(i + i // len(SHAPES)) % len(TEXTURES)]


def _rotated(grid: Grid, cy: float, cx: float, angle: float) -> Grid:
    """Pixel coordinates relative to (cy, cx), rotated by ``angle``: (v, u)."""
    yy, xx = grid
    dy, dx = yy - cy, xx - cx
    cos, sin = np.cos(angle), np.sin(angle)
    return dx * sin + dy * cos, dx * cos - dy * sin


def _shape(rng: np.random.Generator, kind: str, grid: Grid, size: int) -> tuple[np.ndarray, float, float]:
    """A random shape of family ``kind``: its boolean mask and centre (y, x)."""
    radius = size * rng.uniform(0.1, 0.24)
    cy, cx = rng.uniform(0, size, 2)
    v, u = _rotated(grid, cy, cx, rng.uniform(0, np.pi))
    if kind == "ellipse":
        a, b = radius * rng.uniform(0.6, 1.0, 2)
        mask = (u / a) ** 2 + (v / b) ** 2 <= 1
    elif kind == "rectangle":
        a, b = radius * rng.uniform(0.5, 0.9, 2)
        mask = (np.abs(u) <= a) & (np.abs(v) <= b)
    elif kind == "triangle":
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.3, 0.3, 3)
        corners = radius * rng.uniform(0.9, 1.2, 3)[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
        mask = np.ones_like(u, dtype=bool)
        for k in range(3):
            (x0, y0), (x1, y1) = corners[k], corners[(k + 1) % 3]
            mask &= (x1 - x0) * (v - y0) - (y1 - y0) * (u - x0) >= 0
    else:  # blob: a radius modulated by a few low harmonics
        phi, dist = np.arctan2(v, u), np.hypot(u, v)
        outline = np.ones_like(phi)
        for harmonic in (2, 3, 4):
            outline += rng.uniform(0.05, 0.2) * np.cos(harmonic * phi + rng.uniform(0, 2 * np.pi))
        mask = dist <= radius * 0.85 * outline
    return mask, cy, cx


def _texture(rng: np.random.Generator, kind: str, grid: Grid, size: int, cy: float, cx: float) -> np.ndarray:
    """A zero-mean texture field of unit amplitude."""
    period = max(3.0, size * rng.uniform(0.045, 0.075))
    v, u = _rotated(grid, cy, cx, rng.uniform(0, np.pi))
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "stripes":
        return np.sin(2 * np.pi * u / period + phase)
    if kind == "checker":
        return 1.5 * np.sin(2 * np.pi * u / period + phase) * np.sin(2 * np.pi * v / period)
    if kind == "speckle":
        speckle = gaussian_filter(rng.standard_normal(u.shape), 0.6)
        return speckle / speckle.std()
    return np.sin(2 * np.pi * np.hypot(u, v) / period + phase)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth, low-frequency coloured field, ``(S, S, 3)`` float."""
    base = rng.uniform(70, 185, 3)
    sigma = size * rng.uniform(0.08, 0.16)
    shared = gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    shared *= rng.uniform(20, 40) / shared.std()
    tint = np.stack([gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap") for _ in range(3)], -1)
    tint *= rng.uniform(5, 15) / tint.std()
    return base + shared[..., None] + tint


def _offset(rng: np.random.Generator) -> np.ndarray:
    """A signed colour shift of an object against its local background."""
    return rng.choice([-1.0, 1.0]) * rng.uniform(8, 28) * rng.uniform(0.7, 1.3, 3)


def _visible_shape(rng: np.random.Generator, kind: str, grid: Grid, size: int) -> tuple[np.ndarray, float, float]:
    """Draw shapes of family ``kind`` until one covers enough of the frame."""
    while True:
        mask, cy, cx = _shape(rng, kind, grid, size)
        if mask.mean() >= _MIN_VISIBLE_SHARE:
            return mask, cy, cx


def generate_case(size: int, num_classes: int, seed: int, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Generate one synthetic image and its mask.

    Args:
        size: side of the square image in pixels.
        num_classes: classes including background (2 = binary).
        seed: dataset seed.
        split: ``train``, ``val`` or ``test``.
        index: case number within the split.

    Returns:
        The image ``(S, S, 3)`` uint8 and the mask ``(S, S)`` int64.
    """
    rng = np.random.default_rng([seed % 2**63, SPLITS.index(split), index])
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    grid = (yy, xx)
    background = _background(rng, size)
    image = background.copy()
    mask = np.zeros((size, size), dtype=np.int64)

    for _ in range(rng.integers(1, 4)):  # distractors: shifted colour and a faint shading, no texture
        shape, _, _ = _visible_shape(rng, rng.choice(SHAPES), grid, size)
        shading = rng.uniform(-6, 6) * (yy - size / 2) / size
        image[shape] = background[shape] + _offset(rng) + shading[shape][:, None]

    count = 0 if rng.random() < _EMPTY_PROBABILITY else rng.choice(_OBJECT_COUNTS, p=_OBJECT_COUNT_PROBS)
    for _ in range(count):
        label = int(rng.integers(1, num_classes))
        if num_classes == 2:
            shape_kind, texture_kind = rng.choice(SHAPES), rng.choice(TEXTURES)
        else:
            shape_kind, texture_kind = _class_look(label)
        shape, cy, cx = _visible_shape(rng, shape_kind, grid, size)
        amplitude = rng.uniform(14, 28) * rng.uniform(0.8, 1.2, 3)
        texture = _texture(rng, texture_kind, grid, size, cy, cx)
        image[shape] = background[shape] + _offset(rng) + texture[shape][:, None] * amplitude
        mask[shape] = label

    blur = rng.uniform(0.4, 0.9)
    image = np.stack([gaussian_filter(image[..., c], blur) for c in range(3)], -1)
    image += rng.normal(0, rng.uniform(3, 9), image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


@register_reader("synthetic")
class SyntheticReader(DatasetReader):
    """Reader of the synthetic dataset (``data.dataset: synthetic``); needs no folder.

    Case ids are ``<split>_<index>`` (e.g. ``train_0007``); counts, size and seed come from
    ``data.synthetic``. The official split is train/val/test.

    Args:
        data_cfg: the data section of the experiment.
        root: ignored.

    Raises:
        ConfigError: more classes than there are shape/texture families.
    """

    needs_root = False

    def __init__(self, data_cfg: DataConfig, root: Path | None = None) -> None:
        super().__init__(data_cfg, None)
        if data_cfg.num_classes > MAX_CLASSES:
            raise ConfigError(
                f"the synthetic dataset has at most {MAX_CLASSES} classes; data.num_classes={data_cfg.num_classes}"
            )
        cfg = data_cfg.synthetic
        self._counts = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}

    def _ids(self, split: str) -> list[str]:
        count = self._counts[split]
        width = max(4, len(str(count - 1)))
        return [f"{split}_{index:0{width}d}" for index in range(count)]

    def list_cases(self) -> list[CaseRecord]:
        """Every generated case.

        Returns:
            Records without files, sorted by case id.
        """
        ids = sorted(case for split in SPLITS for case in self._ids(split))
        return [CaseRecord(case, None, None) for case in ids]

    def official_split(self) -> dict[str, list[str]]:
        """The generated split.

        Returns:
            ``{"train": [...], "val": [...], "test": [...]}``.
        """
        return {split: self._ids(split) for split in SPLITS}

    def load(self, case_id: str) -> LoadedCase:
        """Generate one case.

        Args:
            case_id: ``<split>_<index>`` as listed by :meth:`list_cases`.

        Returns:
            The image ``(S, S, 3)`` uint8 and the mask ``(S, S)`` int64.

        Raises:
            DataError: an id that is not part of this dataset.
        """
        split, _, number = case_id.rpartition("_")
        index = int(number) if number.isdigit() else -1
        if split not in self._counts or not 0 <= index < self._counts[split] or self._ids(split)[index] != case_id:
            raise DataError(
                f"case {case_id!r} is not in the synthetic dataset "
                f"({', '.join(f'{name}: {count}' for name, count in self._counts.items())} cases)"
            )
        cfg = self.data_cfg.synthetic
        image, mask = generate_case(cfg.size, self.data_cfg.num_classes, cfg.seed, split, index)
        return LoadedCase(case_id=case_id, image=image, mask=mask)
