"""Test-time augmentation: flips, quarter turns and the transpose of an image, and their inverses.

Each transform acts on the last two axes (height, width) of a numpy array or a torch tensor, so it applies to one
image ``(C, H, W)``, a batch ``(N, C, H, W)`` or probabilities alike, and needs no torch for numpy arrays (the
ONNX Runtime predictor uses it too). A prediction with test-time augmentation averages the probabilities of the
input and of each transformed input, every one mapped back with :func:`invert`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np

from medseg.errors import MedsegError

__all__ = ["DEFAULT_TTA", "TTA_TRANSFORMS", "apply", "check_transforms", "invert"]

Array = TypeVar("Array")

_OPS: dict[str, tuple[tuple[str, int], ...]] = {
    "hflip": (("flip", -1),),
    "vflip": (("flip", -2),),
    "rot90": (("rot", 1),),
    "rot180": (("rot", 2),),
    "rot270": (("rot", 3),),
    "transpose": (("swap", 0),),
}

TTA_TRANSFORMS = tuple(_OPS)
"""The transform names: horizontal and vertical flips, quarter turns (counter-clockwise) and the transpose."""

DEFAULT_TTA = ("hflip", "vflip", "rot90", "rot180", "rot270")
"""The transforms of ``eval.tta_transforms`` by default."""


def check_transforms(names: Iterable[str]) -> tuple[str, ...]:
    """Validate transform names.

    Args:
        names: transform names, e.g. ``("hflip", "rot90")``.

    Returns:
        The names, duplicates removed, in their order.

    Raises:
        MedsegError: an unknown name (the message lists the known ones).
    """
    chosen = tuple(dict.fromkeys(names))
    unknown = [name for name in chosen if name not in _OPS]
    if unknown:
        raise MedsegError(f"unknown test-time augmentation {', '.join(unknown)}; use {', '.join(TTA_TRANSFORMS)}")
    return chosen


def _op(x: Any, op: str, value: int) -> Any:
    """One primitive operation on the last two axes of a numpy array or a torch tensor."""
    if isinstance(x, np.ndarray):
        if op == "flip":
            return np.flip(x, axis=value)
        if op == "rot":
            return np.rot90(x, k=value, axes=(-2, -1))
        return np.swapaxes(x, -1, -2)
    if op == "flip":
        return x.flip(value)
    if op == "rot":
        return x.rot90(value, (-2, -1))
    return x.transpose(-1, -2)


def apply(x: Array, name: str) -> Array:
    """Transform an image, a batch or probabilities (the last two axes).

    Args:
        x: numpy array or torch tensor, height and width last.
        name: one of :data:`TTA_TRANSFORMS`.

    Returns:
        The transformed array (a quarter turn or the transpose swaps height and width).
    """
    for op, value in _OPS[name]:
        x = _op(x, op, value)
    return x


def invert(x: Array, name: str) -> Array:
    """Map a prediction of a transformed input back onto the input: the inverse of :func:`apply`.

    Args:
        x: numpy array or torch tensor, height and width last.
        name: the transform the input went through.

    Returns:
        The array in the input's orientation.
    """
    for op, value in reversed(_OPS[name]):
        x = _op(x, op, -value if op == "rot" else value)
    return x
