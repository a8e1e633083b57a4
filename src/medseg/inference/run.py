"""Predict files: 2D images and volumes into masks, probabilities, overlays and label volumes (``medseg predict``).

One driver, :func:`predict_files`, serves every predictor with what :class:`FilePredictor` names: the PyTorch
:class:`~medseg.inference.Predictor` and the ONNX Runtime :class:`~medseg.inference.onnx_predictor.OnnxPredictor`.
Images are read and prepared in batches (by DataLoader worker processes for PyTorch, by threads for ONNX Runtime),
predicted a batch at a time and written by background threads while the next batch is predicted. Volumes are then
predicted one at a time, slice by slice in batches, and written as NIfTI label volumes with the input's geometry
(:mod:`medseg.inference.volumes`). An input that cannot be read or predicted is reported in a ``skipped:`` line and
left out. This module imports neither torch nor Lightning.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from medseg.data.files import IMAGE_SUFFIXES
from medseg.errors import MedsegError
from medseg.inference.base import PreparedImage
from medseg.inference.postprocess import PostProcess

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["IMAGE_SUFFIXES", "FilePredictor", "PredictionOutputs", "input_files", "output_names", "predict_files"]


class FilePredictor(Protocol):
    """What :func:`predict_files` needs of a predictor (:class:`~medseg.inference.base.SlicePredictor` gives it).

    Attributes:
        binary: the task is binary (masks are written 0/255).
        postprocess: label-map post-processing.
        slice_axis: the NIfTI voxel axis volumes are sliced along.
    """

    binary: bool
    postprocess: PostProcess
    slice_axis: int

    def prepared_batches(
        self, paths: Sequence[Path], keep_images: bool, workers: int
    ) -> Iterator[list[PreparedImage]]: ...

    def predict_prepared(
        self, images: Sequence[PreparedImage], probabilities: bool
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]: ...

    def labels(self, probs: np.ndarray) -> np.ndarray: ...

    def predict_volume_proba(self, volume: np.ndarray) -> np.ndarray: ...

    def predict_volume(self, volume: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class PredictionOutputs:
    """What to write for each input besides its label map.

    Attributes:
        overlay: ``<name>_overlay.png``: the predicted classes over a 2D image, or over the slice of a volume
            (along the slice axis) with the most predicted foreground.
        probabilities: ``npz`` (``<name>.npz``: ``probabilities``, float32 ``(K, H, W)``, or ``(K, z, y, x)`` for
            a volume) or ``tiff`` (``<name>.tif``: one float32 page per channel, or per channel and slice for a
            volume), or ``None``.
    """

    overlay: bool = False
    probabilities: str | None = None


def input_files(source: Path) -> list[Path]:
    """The files to predict: ``source`` itself, or the images and volumes in the folder ``source`` (sorted).

    Args:
        source: a file or a folder.

    Returns:
        The files.

    Raises:
        MedsegError: nothing there, or a folder without images or volumes.
    """
    from medseg.inference.volumes import VOLUME_SUFFIXES

    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(
            path
            for path in source.iterdir()
            if path.is_file() and (path.suffix.lower() in IMAGE_SUFFIXES or path.name.lower().endswith(VOLUME_SUFFIXES))
        )
        if not files:
            raise MedsegError(
                f"no images ({', '.join(IMAGE_SUFFIXES)}) or volumes ({', '.join(VOLUME_SUFFIXES)}) in {source}"
            )
        return files
    raise MedsegError(f"input {source} does not exist")


def output_names(files: Sequence[Path], overlay: bool) -> list[str]:
    """A distinct output name (without ``.png``/``.nii.gz``) for each input image or volume.

    An input keeps its stem (``case.nii.gz`` -> ``case``) when no other input has the same stem; inputs sharing a
    stem (``x.png`` and ``x.jpg``) get their ending appended (``x_png``, ``x_jpg``, ``x_nii_gz``). A name whose
    files would still clash with an earlier one (case-insensitively, overlays included) gets ``_2``, ``_3``, ...

    Args:
        files: the inputs.
        overlay: overlays are written too.

    Returns:
        One name per input, in order.
    """
    from medseg.inference.volumes import output_stem, volume_stem

    stems = Counter(output_stem(path)[0].lower() for path in files)
    taken: set[str] = set()
    names = []
    for path in files:
        stem, ending = output_stem(path)
        base = stem if stems[stem.lower()] == 1 else f"{stem}_{ending[1:].lower().replace('.', '_')}"
        mask = ".nii.gz" if volume_stem(path) is not None else ".png"

        def outputs(name: str, mask: str = mask) -> set[str]:
            return {name, f"{name}{mask}", *([f"{name}_overlay.png"] if overlay else [])}

        name, number = base, 1
        while outputs(name.lower()) & taken:
            number += 1
            name = f"{base}_{number}"
        taken |= outputs(name.lower())
        names.append(name)
    return names


def predict_files(
    predictor: FilePredictor,
    files: Sequence[Path],
    output: Path,
    outputs: PredictionOutputs | None = None,
    workers: int = 0,
    console: Console | None = None,
) -> int:
    """Predict image and volume files and write what they give into ``output``, with a progress bar.

    A 2D image gives ``<name>.png`` (0/255 for a binary task, class indices otherwise) at its own size; a volume
    gives ``<name>.nii.gz`` with its geometry; names come from :func:`output_names`. An input that cannot be read
    or predicted is reported in a ``skipped: <file>: <problem>`` line and left out.

    Args:
        predictor: the model and how to predict.
        files: the inputs (:func:`input_files`).
        output: the output folder (created).
        outputs: what to write besides the label maps (nothing when ``None``).
        workers: processes (PyTorch) or threads (ONNX Runtime) that read and prepare images; 0 reads them here.
        console: where the progress bar (on a terminal) and the ``skipped:`` lines go; standard error when
            ``None``.

    Returns:
        The number of inputs written; the others were skipped.

    Raises:
        OutputWriteError: a file could not be written.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress

    from medseg.inference.volumes import is_volume, read_volume, write_label_volume
    from medseg.inference.writers import (
        BackgroundWriter,
        write_mask,
        write_overlay,
        write_probabilities,
        write_volume_overlay,
    )

    outputs = outputs or PredictionOutputs()
    console = console or Console(stderr=True)
    output.mkdir(parents=True, exist_ok=True)
    named = list(zip(files, output_names(files, outputs.overlay), strict=True))
    volume = [is_volume(path) for path in files]
    images = [pair for pair, flag in zip(named, volume, strict=True) if not flag]
    volumes = [pair for pair, flag in zip(named, volume, strict=True) if flag]
    written = 0
    progress = Progress(console=console, transient=True, disable=not console.is_terminal)
    with progress as bar, BackgroundWriter() as writer:
        task = bar.add_task("predicting", total=len(files))

        def skip(message: str) -> None:
            console.print(f"[bold red]skipped:[/] {escape(message)}", highlight=False, soft_wrap=True)
            bar.advance(task)

        for batch in predictor.prepared_batches([path for path, _ in images], outputs.overlay, workers):
            good = [item for item in batch if item.error is None]
            for item in batch:
                if item.error is not None:
                    skip(item.error)
            predicted = predictor.predict_prepared(good, outputs.probabilities is not None)
            for item, (labels, probs) in zip(good, predicted, strict=True):
                name = images[item.index][1]
                writer.submit(write_mask, output / f"{name}.png", labels, predictor.binary)
                if probs is not None:
                    writer.submit(write_probabilities, output / name, probs, outputs.probabilities)
                if outputs.overlay:
                    writer.submit(write_overlay, output / f"{name}_overlay.png", item.image, labels)
                written += 1
                bar.advance(task)
        for path, name in volumes:
            try:
                data = read_volume(path)
                if outputs.probabilities:
                    probs = predictor.predict_volume_proba(data.array)
                    labels = predictor.postprocess(predictor.labels(probs))
                    writer.submit(write_probabilities, output / name, probs, outputs.probabilities)
                else:
                    labels = predictor.predict_volume(data.array)
            except MedsegError as error:
                skip(str(error) if str(path) in str(error) else f"{path}: {error}")
                continue
            writer.submit(write_label_volume, output / f"{name}.nii.gz", labels, data)
            if outputs.overlay:
                overlay = output / f"{name}_overlay.png"
                writer.submit(write_volume_overlay, overlay, data.array, labels, predictor.slice_axis)
            written += 1
            bar.advance(task)
    return written
