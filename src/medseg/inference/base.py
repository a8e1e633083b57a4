"""What the PyTorch and ONNX Runtime predictors share: the Python API on raw images and volumes, and images read and
prepared for the model in batches (numpy only; this module imports neither torch nor Lightning).

:class:`SlicePredictor` is the base of :class:`medseg.inference.Predictor` (PyTorch) and
:class:`medseg.inference.onnx_predictor.OnnxPredictor` (ONNX Runtime). A subclass prepares one image for its model
and predicts prepared images in batches, in its own array type (a torch tensor or a numpy array); the base turns
that into :meth:`~SlicePredictor.predict` and :meth:`~SlicePredictor.predict_proba` on images, files and batches,
:meth:`~SlicePredictor.predict_volume` and :meth:`~SlicePredictor.predict_volume_proba` slice by slice, and what
``medseg predict`` needs of a predictor (:mod:`medseg.inference.run`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.inference.postprocess import PostProcess

__all__ = ["Images", "PreparedImage", "SlicePredictor", "prepare_file", "read_input_image"]

Images = np.ndarray | str | Path | Sequence[np.ndarray | str | Path]
"""What :meth:`SlicePredictor.predict` takes: an image or its file, a 4D batch, or a list of images or files."""


def read_input_image(path: Path) -> np.ndarray:
    """A 2D image file as stored: an image format Pillow reads, or an HDF5 file's 2D ``image`` dataset.

    Args:
        path: the file.

    Returns:
        ``(H, W)`` or ``(H, W, C)`` pixels.

    Raises:
        MedsegError: an unreadable file, or an HDF5 ``image`` dataset of another rank.
    """
    from medseg.data.files import read_image
    from medseg.inference.volumes import H5_SUFFIXES, read_h5_image

    if path.suffix.lower() not in H5_SUFFIXES:
        return read_image(path)
    image = read_h5_image(path)
    if image.ndim not in (2, 3):
        raise MedsegError(f"{path}: its 'image' dataset has shape {image.shape}; expected (H, W)")
    return image


@dataclass
class PreparedImage:
    """One 2D image file read and prepared for the model, or the problem that stopped it.

    Attributes:
        index: its position among the files given.
        inputs: the model input, in the predictor's array type (``None`` after a problem).
        size: ``(height, width)`` of the image.
        image: the raw image, when kept (for overlays).
        error: one line naming the file and the problem, or ``None``.
    """

    index: int
    inputs: Any
    size: tuple[int, int]
    image: np.ndarray | None
    error: str | None = None


def prepare_file(path: Path, index: int, prepare: Callable[[np.ndarray], Any], keep_image: bool) -> PreparedImage:
    """Read a 2D image file and prepare it for the model; a problem is kept, not raised.

    Args:
        path: the file.
        index: its position among the files.
        prepare: raw image -> model input.
        keep_image: keep the raw image.

    Returns:
        The prepared image, or its problem.
    """
    try:
        image = read_input_image(path)
        inputs = prepare(image)
    except MedsegError as error:
        message = str(error)
        return PreparedImage(index, None, (0, 0), None, message if str(path) in message else f"{path}: {message}")
    return PreparedImage(index, inputs, (image.shape[0], image.shape[1]), image if keep_image else None)


class SlicePredictor(ABC):
    """Predictions on raw 2D images and volumes, built on a subclass's model (see the module docstring).

    A subclass sets :attr:`batch_size`, :attr:`binary`, :attr:`threshold`, :attr:`postprocess` and
    :attr:`slice_axis`, and defines :meth:`input_of`, :meth:`predict_inputs`, :meth:`labels` and :meth:`as_numpy`.

    Attributes:
        batch_size: model inputs per batch.
        binary: the task is binary (one foreground channel).
        threshold: foreground probability above which a pixel is foreground (binary tasks).
        postprocess: label-map post-processing.
        slice_axis: the NIfTI voxel axis volumes are sliced along.
    """

    batch_size: int
    binary: bool
    threshold: float
    postprocess: PostProcess
    slice_axis: int

    @abstractmethod
    def input_of(self, image: np.ndarray) -> Any:
        """The model input of a raw image, as :meth:`predict_inputs` takes it.

        Args:
            image: raw ``(H, W)`` or ``(H, W, C)`` image.

        Returns:
            The prepared image in the predictor's array type.
        """

    @abstractmethod
    def predict_inputs(self, inputs: Sequence[Any], sizes: Sequence[tuple[int, int]]) -> Iterator[Any]:
        """Probabilities of model inputs (:meth:`input_of`), in batches, each at its image's size.

        Args:
            inputs: prepared images.
            sizes: ``(height, width)`` of each image.

        Yields:
            ``(K, height, width)`` probabilities in the predictor's array type, in order.
        """

    @abstractmethod
    def labels(self, probs: Any) -> np.ndarray:
        """Class indices of ``(K, ...)`` probabilities, without post-processing: above :attr:`threshold` for one
        channel, argmax otherwise.

        Args:
            probs: probabilities in the predictor's array type, or numpy.

        Returns:
            int64 class indices (numpy), ``probs`` without its first axis.
        """

    @abstractmethod
    def as_numpy(self, probs: Any) -> np.ndarray:
        """Probabilities in the predictor's array type as a numpy array.

        Args:
            probs: probabilities.

        Returns:
            The same values, float32 numpy.
        """

    def prepared_batches(self, paths: Sequence[Path], keep_images: bool, workers: int) -> Iterator[list[PreparedImage]]:
        """Read and prepare 2D image files, :attr:`batch_size` at a time.

        Args:
            paths: the files.
            keep_images: keep the raw images (for overlays).
            workers: threads that read and prepare the next batch while this one is predicted; 0 reads here.

        Yields:
            Lists of prepared images (or their problems), in order.
        """
        batches = [
            range(start, min(start + self.batch_size, len(paths))) for start in range(0, len(paths), self.batch_size)
        ]

        def prepare(index: int) -> PreparedImage:
            return prepare_file(paths[index], index, self.input_of, keep_images)

        if workers == 0:
            for batch in batches:
                yield [prepare(index) for index in batch]
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="medseg-reader") as pool:
            ahead: deque[Iterator[PreparedImage]] = deque()
            for batch in batches:
                ahead.append(pool.map(prepare, batch))
                if len(ahead) > 1:
                    yield list(ahead.popleft())
            while ahead:
                yield list(ahead.popleft())

    def predict_prepared(
        self, images: Sequence[PreparedImage], probabilities: bool
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Label maps (post-processed) and, if asked, probabilities of prepared images, at their own sizes.

        Args:
            images: prepared images without problems.
            probabilities: also give the probabilities.

        Yields:
            ``((H, W) int64 labels, (K, H, W) float32 probabilities or None)`` for each image, in order.
        """
        for probs in self.predict_inputs([image.inputs for image in images], [image.size for image in images]):
            yield self.postprocess(self.labels(probs)), self.as_numpy(probs) if probabilities else None

    def _probabilities_of(self, images: Sequence[np.ndarray]) -> Iterator[Any]:
        """Probabilities of raw images at their own sizes, prepared and predicted :attr:`batch_size` at a time."""
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            yield from self.predict_inputs(
                [self.input_of(image) for image in chunk], [image.shape[:2] for image in chunk]
            )

    @staticmethod
    def _images(images: Images) -> tuple[list[np.ndarray], str]:
        """The images of a call, and how the result is shaped: ``one``, ``stack`` (a 4D array) or ``list``."""
        if isinstance(images, str | Path):
            return [read_input_image(Path(images))], "one"
        if isinstance(images, np.ndarray):
            if images.ndim in (2, 3):
                return [images], "one"
            if images.ndim == 4:
                return list(images), "stack"
            raise MedsegError(f"expected an image (H, W[, C]) or a batch (N, H, W, C), got shape {images.shape}")
        return [
            read_input_image(Path(item)) if isinstance(item, str | Path) else np.asarray(item) for item in images
        ], "list"

    @staticmethod
    def _shaped(arrays: list[np.ndarray], shape: str) -> Any:
        if shape == "one":
            return arrays[0]
        return np.stack(arrays) if shape == "stack" else arrays

    def predict_proba(self, images: Images) -> Any:
        """Class probabilities at each image's own size.

        Args:
            images: a raw ``(H, W)`` or ``(H, W, C)`` image (as read from disk) or its file; a batch
                ``(N, H, W, C)``; or a list of images (of any sizes) or files.

        Returns:
            ``(K, H, W)`` float32 probabilities for one image (K = 1, the foreground, for a binary task),
            ``(N, K, H, W)`` for a 4D batch, a list of ``(K, H, W)`` arrays for a list.
        """
        arrays, shape = self._images(images)
        return self._shaped([self.as_numpy(probs) for probs in self._probabilities_of(arrays)], shape)

    def predict(self, images: Images) -> Any:
        """Label maps at each image's own size, post-processed.

        Args:
            images: as for :meth:`predict_proba`.

        Returns:
            ``(H, W)`` int64 class indices for one image (0/1 for a binary task, thresholded at
            :attr:`threshold`), ``(N, H, W)`` for a 4D batch, a list of ``(H, W)`` arrays for a list.
        """
        arrays, shape = self._images(images)
        return self._shaped([self.postprocess(self.labels(probs)) for probs in self._probabilities_of(arrays)], shape)

    def _volume_probabilities(self, volume: np.ndarray | str | Path) -> Iterator[Any]:
        """Probabilities of a volume's slices along :attr:`slice_axis`, batched."""
        from medseg.inference.volumes import read_volume, volume_slices

        array = read_volume(Path(volume)).array if isinstance(volume, str | Path) else volume
        if array.ndim not in (3, 4):
            raise MedsegError(f"expected a volume (z, y, x) or (z, y, x, C), got shape {array.shape}")
        yield from self._probabilities_of(list(volume_slices(array, self.slice_axis)))

    def predict_volume_proba(self, volume: np.ndarray | str | Path) -> np.ndarray:
        """Class probabilities of a volume, predicted slice by slice along :attr:`slice_axis`.

        Args:
            volume: ``(z, y, x)`` (or ``(z, y, x, C)``) intensities in medseg's volume order, or a NIfTI/HDF5
                file (:func:`medseg.inference.volumes.read_volume`).

        Returns:
            ``(K, z, y, x)`` float32 probabilities.
        """
        from medseg.inference.volumes import stack_slices

        slices = np.stack([self.as_numpy(probs) for probs in self._volume_probabilities(volume)], axis=1)
        return np.stack([stack_slices(channel, self.slice_axis) for channel in slices])

    def predict_volume(self, volume: np.ndarray | str | Path) -> np.ndarray:
        """Label volume, predicted slice by slice along :attr:`slice_axis` and post-processed in 3D.

        Args:
            volume: as for :meth:`predict_volume_proba`.

        Returns:
            ``(z, y, x)`` int64 class indices.
        """
        from medseg.inference.volumes import stack_slices

        slices = np.stack([self.labels(probs) for probs in self._volume_probabilities(volume)])
        return self.postprocess(stack_slices(slices, self.slice_axis))
