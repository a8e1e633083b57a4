"""Helpers that write tiny dataset folders for the reader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medseg.config import DataConfig


def write_image(path: Path, array: np.ndarray) -> Path:
    """Save an array as an image file (format from the suffix), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def square_mask(size: tuple[int, int], value: int = 255, background: int = 0) -> np.ndarray:
    """A uint8 mask with a filled square in the middle."""
    height, width = size
    mask = np.full((height, width), background, dtype=np.uint8)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = value
    return mask


def rgb_image(size: tuple[int, int], seed: int | list[int] = 0) -> np.ndarray:
    """A random RGB uint8 image."""
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def write_binary_folder(root: Path, count: int, size: tuple[int, int] = (24, 32), ext: str = ".png") -> Path:
    """``root/images`` + ``root/masks`` with ``count`` RGB images and 0/255 masks named ``case_XX``."""
    for index in range(count):
        write_image(root / "images" / f"case_{index:02d}{ext}", rgb_image(size, index))
        write_image(root / "masks" / f"case_{index:02d}.png", square_mask(size))
    return root


def folder_config(root: Path, **overrides: object) -> DataConfig:
    """A data section reading ``root`` with the image_folder reader."""
    return DataConfig.model_validate({"dataset": "image_folder", "root": str(root), **overrides})
