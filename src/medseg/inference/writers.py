"""What ``medseg predict`` writes, and a writer that writes it in the background (numpy, Pillow, nibabel).

- label maps as PNG: 0/255 for a binary task, the class indices for a multi-class one (8-bit, 16-bit above 255);
- probabilities, when asked: ``.npz`` (``probabilities``, float32 ``(K, H, W)``, K = 1 for a binary task;
  ``(K, z, y, x)`` for a volume) or a float32 TIFF with one page per channel (for a volume, one ``(y, x)`` page per
  channel and slice: channel 0's z slices first);
- overlays: the predicted classes blended over the image, or over one slice of a volume (PNG);
- label volumes as NIfTI (:func:`medseg.inference.volumes.write_label_volume`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medseg.engine.outputs import writing

__all__ = [
    "PROBABILITY_FORMATS",
    "BackgroundWriter",
    "mask_array",
    "write_mask",
    "write_overlay",
    "write_probabilities",
    "write_volume_overlay",
]

PROBABILITY_FORMATS = ("npz", "tiff")
"""The file formats probabilities can be written in."""


def mask_array(labels: np.ndarray, binary: bool) -> np.ndarray:
    """A label map as the pixels of its mask file.

    Args:
        labels: class indices.
        binary: the task is binary (0/1 become 0/255).

    Returns:
        uint8 (uint16 for more than 256 classes) array.
    """
    if binary:
        return (labels > 0).astype(np.uint8) * 255
    return labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16)


def write_mask(path: Path, labels: np.ndarray, binary: bool) -> None:
    """Write a label map as PNG (see :func:`mask_array`).

    Args:
        path: the ``.png`` file.
        labels: ``(H, W)`` class indices.
        binary: the task is binary.
    """
    with writing(path):
        Image.fromarray(mask_array(labels, binary)).save(path)


def write_probabilities(path: Path, probs: np.ndarray, fmt: str) -> Path:
    """Write probabilities next to a mask.

    Args:
        path: the file name without its ending.
        probs: ``(K, H, W)`` or ``(K, z, y, x)`` probabilities.
        fmt: ``npz`` or ``tiff`` (one page per channel, or per channel and slice: ``K * z`` pages ``(y, x)``,
            channel by channel).

    Returns:
        The file written (``<path>.npz`` or ``<path>.tif``).
    """
    probs = np.ascontiguousarray(probs, dtype=np.float32)
    if fmt == "npz":
        target = path.with_name(path.name + ".npz")
        with writing(target):
            np.savez_compressed(target, probabilities=probs)
        return target
    target = path.with_name(path.name + ".tif")
    pages = [Image.fromarray(page, mode="F") for page in probs.reshape(-1, *probs.shape[-2:])]
    with writing(target):
        pages[0].save(target, save_all=True, append_images=pages[1:])
    return target


def write_overlay(path: Path, image: np.ndarray, labels: np.ndarray) -> None:
    """Write the predicted classes blended over the image (PNG).

    Args:
        path: the ``.png`` file.
        image: the raw image as read.
        labels: ``(H, W)`` class indices.
    """
    from medseg.reports.overlays import overlay

    with writing(path):
        Image.fromarray(overlay(image, labels)).save(path)


def write_volume_overlay(path: Path, volume: np.ndarray, labels: np.ndarray, slice_axis: int) -> None:
    """Write the predicted classes blended over the slice of a volume with the most predicted foreground (PNG; the
    first slice when none has any).

    Args:
        path: the ``.png`` file.
        volume: ``(z, y, x)`` or ``(z, y, x, C)`` intensities (:mod:`medseg.inference.volumes`).
        labels: ``(z, y, x)`` class indices.
        slice_axis: the NIfTI voxel axis the volume was sliced along.
    """
    from medseg.inference.volumes import volume_slices

    label_slices = volume_slices(labels, slice_axis)
    chosen = int(np.count_nonzero(label_slices.reshape(len(label_slices), -1), axis=1).argmax())
    write_overlay(path, volume_slices(volume, slice_axis)[chosen], label_slices[chosen])


class BackgroundWriter:
    """Runs file writes in threads while the model predicts the next batch.

    A failed write is raised at the next :meth:`submit` (or at :meth:`close`), so a full disk stops the run early.

    Args:
        threads: writer threads (Pillow's and zlib's compression release the GIL).
        limit: writes queued at most; :meth:`submit` waits for the oldest beyond it (bounds the memory held).
    """

    def __init__(self, threads: int = 2, limit: int = 16) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="medseg-writer")
        self.limit = limit
        self.pending: list[Future[Any]] = []

    def _reap(self, wait_oldest: bool) -> None:
        """Drop the finished writes, raising the error of a failed one; first wait for the oldest if asked."""
        if wait_oldest and self.pending:
            self.pending[0].result()
        still = []
        for future in self.pending:
            if future.done():
                future.result()
            else:
                still.append(future)
        self.pending = still

    def submit(self, write: Callable[..., Any], *args: Any) -> None:
        """Queue a write.

        Args:
            write: the function that writes.
            *args: its arguments.

        Raises:
            OutputWriteError: an earlier write failed.
        """
        self._reap(wait_oldest=len(self.pending) >= self.limit)
        self.pending.append(self.pool.submit(write, *args))

    def close(self) -> None:
        """Wait for every write.

        Raises:
            OutputWriteError: a write failed.
        """
        self.pool.shutdown(wait=True)
        self._reap(wait_oldest=False)

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.close()
        else:
            self.pool.shutdown(wait=True, cancel_futures=True)
