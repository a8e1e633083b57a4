"""Predict files: 2D images and volumes into masks, probabilities, overlays and label volumes (``medseg predict``).

Images are read and prepared (normalised, resized to the training size in ``resize`` mode) by DataLoader worker
processes, predicted in batches and written by background threads while the next batch is predicted. Volumes are
then predicted one at a time, slice by slice in batches, and written as NIfTI label volumes with the input's
geometry (:mod:`medseg.inference.volumes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from medseg.config import DataConfig
from medseg.errors import MedsegError
from medseg.inference.predictor import Predictor, model_input_array
from medseg.inference.volumes import H5_SUFFIXES, is_volume, read_h5_image, read_volume, write_label_volume
from medseg.inference.writers import BackgroundWriter, write_mask, write_overlay, write_probabilities

__all__ = ["PredictionOutputs", "is_volume", "predict_files"]


@dataclass(frozen=True)
class PredictionOutputs:
    """What to write for each input besides its label map.

    Attributes:
        overlay: ``<name>_overlay.png`` (2D images only).
        probabilities: ``npz`` (``<name>.npz``) or ``tiff`` (``<name>.tif``, 2D images; volumes always get
            ``.npz``), or ``None``.
    """

    overlay: bool = False
    probabilities: str | None = None


@dataclass
class _Item:
    """One image read and prepared by a worker, or the problem that stopped it."""

    index: int
    inputs: torch.Tensor | None
    size: tuple[int, int]
    image: np.ndarray | None
    error: str | None = None


class _ImageInputs(Dataset[_Item]):
    """Reads and prepares 2D images for the model (numpy and CPU torch: runs in DataLoader workers).

    Args:
        paths: the image files.
        data: the data settings the model was trained with.
        size: the side images are resized to, ``None`` to keep their size.
        keep_image: also return the raw image (for overlays).
    """

    def __init__(self, paths: Sequence[Path], data: DataConfig, size: int | None, keep_image: bool) -> None:
        self.paths = list(paths)
        self.data = data
        self.size = size
        self.keep_image = keep_image

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> _Item:
        from medseg.data.files import read_image

        path = self.paths[index]
        try:
            image = read_h5_image(path) if path.suffix.lower() in H5_SUFFIXES else read_image(path)
            if image.ndim not in (2, 3):
                raise MedsegError(f"{path}: its 'image' dataset has shape {image.shape}; expected (H, W)")
            inputs = model_input_array(image, self.data, self.size)
        except MedsegError as error:
            return _Item(index, None, (0, 0), None, str(error))
        return _Item(index, inputs, (image.shape[0], image.shape[1]), image if self.keep_image else None)


def _problem(path: Path, message: str) -> str:
    """A problem as one line naming the file."""
    return message if str(path) in message else f"{path}: {message}"


def predict_files(
    predictor: Predictor,
    files: Sequence[Path],
    names: Sequence[str],
    output: Path,
    outputs: PredictionOutputs,
    workers: int = 0,
    advance: Callable[[], None] = lambda: None,
    skip: Callable[[str], None] = lambda message: None,
) -> int:
    """Predict image and volume files and write what they give into ``output``.

    A 2D image gives ``<name>.png`` (0/255 for a binary task, class indices otherwise) at its own size; a volume
    gives ``<name>.nii.gz``. An input that cannot be read or predicted is passed to ``skip`` and left out.

    Args:
        predictor: the model and how to predict.
        files: the inputs.
        names: the output name of each input (distinct, without ending).
        output: the output folder (created).
        outputs: what to write besides the label maps.
        workers: DataLoader worker processes that read and prepare images; 0 reads them here.
        advance: called after each input (progress).
        skip: called with one line naming an input that was skipped and why.

    Returns:
        The number of inputs written.

    Raises:
        OutputWriteError: a file could not be written.
    """
    output.mkdir(parents=True, exist_ok=True)
    binary = predictor.config.binary
    volume = [is_volume(path) for path in files]
    images = [(path, name) for path, name, flag in zip(files, names, volume, strict=True) if not flag]
    volumes = [(path, name) for path, name, flag in zip(files, names, volume, strict=True) if flag]
    written = 0
    with BackgroundWriter() as writer:
        paths = [path for path, _ in images]
        dataset = _ImageInputs(paths, predictor.config.data, predictor.input_size, outputs.overlay)
        loader = DataLoader(
            dataset, batch_size=predictor.batch_size, num_workers=min(workers, len(images)), collate_fn=list
        )
        for batch in loader:
            good = []
            for item in batch:
                if item.error is None:
                    good.append(item)
                else:
                    skip(_problem(images[item.index][0], item.error))
                    advance()
            predicted = predictor.predict_inputs([item.inputs for item in good], [item.size for item in good])
            for item, probs in zip(good, predicted, strict=True):
                name = images[item.index][1]
                labels = predictor.postprocess(predictor.labels(probs))
                writer.submit(write_mask, output / f"{name}.png", labels, binary)
                if outputs.probabilities:
                    writer.submit(write_probabilities, output / name, probs.cpu().numpy(), outputs.probabilities)
                if outputs.overlay:
                    writer.submit(write_overlay, output / f"{name}_overlay.png", item.image, labels)
                written += 1
                advance()
        for path, name in volumes:
            try:
                data = read_volume(path)
                if outputs.probabilities:
                    probs = predictor.predict_volume_proba(data.array)
                    labels = predictor.postprocess(predictor.labels(probs))
                    writer.submit(write_probabilities, output / name, probs, "npz")
                else:
                    labels = predictor.predict_volume(data.array)
            except MedsegError as error:
                skip(_problem(path, str(error)))
                advance()
                continue
            writer.submit(write_label_volume, output / f"{name}.nii.gz", labels, data)
            written += 1
            advance()
    return written
