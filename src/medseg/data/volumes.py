"""Readers of volumetric datasets: cases are 2D slice files and/or volumes, volumes addressed slice by slice.

A volume ``V`` of depth ``D`` is one case (``is_volume(V)``); its slices ``V:0`` .. ``V:<D-1>`` are loadable
2D cases (:meth:`VolumeDatasetReader.slice_ids`). Datasets whose training data is stored as separate 2D slice
files (the SSL4MIS ACDC and TransUNet Synapse layouts) list those files as 2D cases too.

Images keep their stored intensities as float32 (ACDC and Synapse are already in [0, 1]); labels must be
integral and are mapped to classes by the label rule of :mod:`medseg.data.files`.

Voxel spacing: NIfTI volumes carry it in their header. HDF5 volumes (the ACDC and Synapse layouts) store none;
give it as ``spacing.csv`` in the dataset folder (:data:`SPACING_TABLE`): a header line ``case,z,y,x`` and one
line per volume with its id and the voxel size in mm along the volume's axes (slices, rows, columns), e.g.
``patient001_frame01,10,1.5625,1.5625``. :func:`write_spacing_table` writes one (see
:func:`medseg.data.acdc.spacing_from_nifti` for ACDC's original NIfTI release). Without the table the spacing is
``None`` and distances are in voxels.
"""

from __future__ import annotations

import csv
import math
import zipfile
from abc import abstractmethod
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from medseg.config import DataConfig
from medseg.data.errors import DataError
from medseg.data.files import check_label_map, mask_classes, mask_values
from medseg.data.readers import CaseCheck, CaseRecord, LoadedCase, LoadedVolume, RecordTableReader

__all__ = [
    "SPACING_TABLE",
    "H5VolumeReader",
    "VolumeDatasetReader",
    "integral_labels",
    "read_spacing_table",
    "write_spacing_table",
]

Spacing = tuple[float, float, float] | None

SPACING_TABLE = "spacing.csv"
_SPACING_HEADER = ["case", "z", "y", "x"]


def read_spacing_table(path: Path) -> dict[str, tuple[float, float, float]]:
    """Read a voxel-spacing table: header ``case,z,y,x``, then one volume per line, sizes in mm.

    Args:
        path: the CSV file.

    Returns:
        Volume id -> ``(z, y, x)`` spacing.

    Raises:
        DataError: unreadable file, wrong header, a malformed or duplicated line, or a non-positive size.
    """
    try:
        lines = list(csv.reader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read spacing table {path}: {error}") from None
    if not lines or [cell.strip() for cell in lines[0]] != _SPACING_HEADER:
        raise DataError(f"spacing table {path} must start with the header line {','.join(_SPACING_HEADER)}")
    table: dict[str, tuple[float, float, float]] = {}
    for number, row in enumerate(lines[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            if len(row) != 4:
                raise ValueError
            case, sizes = row[0].strip(), tuple(float(cell) for cell in row[1:])
            if not case or not all(math.isfinite(size) and size > 0 for size in sizes):
                raise ValueError
        except ValueError:
            raise DataError(
                f"spacing table {path} line {number}: expected 'case,z,y,x' with positive sizes in mm, got "
                f"{','.join(row)!r}"
            ) from None
        if case in table:
            raise DataError(f"spacing table {path} line {number}: volume {case} is listed twice")
        table[case] = (sizes[0], sizes[1], sizes[2])
    return table


def write_spacing_table(path: Path, table: Mapping[str, tuple[float, float, float]]) -> None:
    """Write a voxel-spacing table readable by :func:`read_spacing_table`.

    Args:
        path: the CSV file to write (``<dataset>/spacing.csv`` for the HDF5 readers to find it).
        table: volume id -> ``(z, y, x)`` spacing in mm.
    """
    rows = [",".join(_SPACING_HEADER)]
    rows += [",".join([case, *(repr(float(size)) for size in sizes)]) for case, sizes in sorted(table.items())]
    path.write_text("\n".join(rows) + "\n")


def integral_labels(raw: np.ndarray, source: str) -> np.ndarray:
    """Labels as int64, accepting float arrays only when every value is a whole number.

    Args:
        raw: label array of any shape and dtype.
        source: where it came from, for error messages.

    Returns:
        The labels as int64.

    Raises:
        DataError: non-integral (or NaN) values.
    """
    if np.issubdtype(raw.dtype, np.integer) or raw.dtype == np.bool_:
        return raw.astype(np.int64)
    rounded = np.rint(raw)
    if not np.array_equal(rounded, raw):
        raise DataError(f"labels {source} hold non-integer values (e.g. {raw[rounded != raw].flat[0]})")
    return rounded.astype(np.int64)


class VolumeDatasetReader(RecordTableReader):
    """Base of the volumetric readers; subclasses find the files (:meth:`_scan`) and read them.

    Args:
        data_cfg: the data section of the experiment.
        root: the resolved dataset folder.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    def __init__(self, data_cfg: DataConfig, root: Path | None = None, *, strict: bool = True) -> None:
        super().__init__(data_cfg, root, strict=strict)
        check_label_map(data_cfg.label_map, data_cfg.num_classes)
        slices, volumes = self._scan()
        self._records = {record.case_id: record for record in sorted(slices + volumes, key=lambda r: r.case_id)}
        self._volumes = {record.case_id for record in volumes}
        self._depths: dict[str, int] = {}

    @abstractmethod
    def _scan(self) -> tuple[list[CaseRecord], list[CaseRecord]]:
        """Find the 2D slice files and the volumes: ``(slice records, volume records)``."""

    def _read_slice_file(self, record: CaseRecord) -> tuple[np.ndarray, np.ndarray]:
        """Read a 2D slice file: image ``(H, W)`` or ``(H, W, C)`` and raw labels ``(H, W)``."""
        raise DataError(f"{record.image_path}: the {self.name} dataset has no 2D slice files")

    @abstractmethod
    def _volume_shape(self, record: CaseRecord) -> tuple[int, ...]:
        """The image shape ``(D, H, W)`` of a volume, from its header."""

    @abstractmethod
    def _read_volume(self, record: CaseRecord) -> tuple[np.ndarray, np.ndarray, Spacing]:
        """Read a volume: image ``(D, H, W[, C])``, raw labels ``(D, H, W)`` and spacing ``(z, y, x)``."""

    @abstractmethod
    def _read_volume_labels(self, record: CaseRecord) -> np.ndarray:
        """Read the raw labels ``(D, H, W)`` of a volume."""

    @abstractmethod
    def _read_volume_slice(self, record: CaseRecord, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read slice ``index`` of a volume: image ``(H, W[, C])`` and raw labels ``(H, W)``."""

    def is_volume(self, case_id: str) -> bool:
        """Whether a case is a volume (rather than a 2D slice file).

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            ``True`` for volumes.
        """
        return case_id in self._volumes

    def depth(self, case_id: str) -> int:
        """The number of slices of a volume, read from its header once.

        Args:
            case_id: id of a volume.

        Returns:
            Its depth.
        """
        if case_id not in self._depths:
            self._depths[case_id] = self._volume_shape(self.record(case_id))[0]
        return self._depths[case_id]

    def slice_ids(self, case_id: str) -> list[str]:
        """``<volume>:<index>`` for each slice of a volume; ``[case_id]`` for a slice file.

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            The 2D case ids.
        """
        if not self.is_volume(case_id):
            return [case_id]
        return [f"{case_id}:{index}" for index in range(self.depth(case_id))]

    def _volume_slice(self, case_id: str) -> tuple[str, int]:
        """Split ``<volume>:<index>`` into the volume id and a valid index."""
        volume, sep, index = case_id.rpartition(":")
        if not sep or volume not in self._volumes or not index.isdigit():
            raise DataError(f"case {case_id!r} is not in the {self.name} dataset at {self.root}")
        if int(index) >= self.depth(volume):
            raise DataError(f"case {case_id!r}: volume {volume} has only {self.depth(volume)} slices")
        return volume, int(index)

    def _classes(self, raw: np.ndarray, source: str) -> np.ndarray:
        """Check raw labels and map them to class indices."""
        labels = integral_labels(raw, source)
        values = mask_values(labels)
        classes = mask_classes(values, source, self.data_cfg.num_classes, self.data_cfg.label_map)
        return classes[np.searchsorted(values, labels)]

    @staticmethod
    def _check_shapes(image_shape: tuple[int, ...], label_shape: tuple[int, ...], rank: int, source: str) -> None:
        """Check that the labels have ``rank`` axes and the image their shape (plus an optional channel axis)."""
        if len(label_shape) != rank or tuple(image_shape[:rank]) != tuple(label_shape) or len(image_shape) > rank + 1:
            raise DataError(
                f"{source}: image shape {tuple(image_shape)} and label shape {tuple(label_shape)} do not match "
                f"(expected {'(H, W)' if rank == 2 else '(D, H, W)'} labels)"
            )

    def load(self, case_id: str) -> LoadedCase:
        """Read a slice file, or one slice ``<volume>:<index>`` of a volume.

        Args:
            case_id: a 2D case id (from :meth:`list_cases` or :meth:`slice_ids`).

        Returns:
            The image ``(H, W, C)`` float32 and mask ``(H, W)`` int64.

        Raises:
            DataError: a volume id (use :meth:`load_volume` or its slices), an unknown id, unreadable files,
                mismatched shapes or unexpected labels.
        """
        if case_id in self._volumes:
            raise DataError(
                f"case {case_id!r} of the {self.name} dataset is a volume: load it with load_volume() or load "
                f"its slices {case_id}:0 .. {case_id}:{self.depth(case_id) - 1}"
            )
        if case_id in self._records:
            record = self._records[case_id]
            image, raw = self._read_slice_file(record)
            source = str(record.image_path)
        else:
            volume, index = self._volume_slice(case_id)
            record = self._records[volume]
            image, raw = self._read_volume_slice(record, index)
            source = f"{record.mask_path} slice {index}"
        self._check_shapes(image.shape, raw.shape, 2, source)
        image = image[..., None] if image.ndim == 2 else image
        return LoadedCase(case_id, image.astype(np.float32), self._classes(raw, source), record.image_path)

    def load_volume(self, case_id: str) -> LoadedVolume:
        """Read one volume.

        Args:
            case_id: id of a volume (:meth:`is_volume`).

        Returns:
            The image ``(D, H, W[, C])`` float32, mask ``(D, H, W)`` int64 and spacing.

        Raises:
            DataError: not a volume, unreadable files, mismatched shapes or unexpected labels.
        """
        record = self.record(case_id)
        if case_id not in self._volumes:
            raise DataError(f"case {case_id!r} of the {self.name} dataset is a 2D slice file, not a volume")
        image, raw, spacing = self._read_volume(record)
        source = str(record.mask_path)
        self._check_shapes(image.shape, raw.shape, 3, source)
        return LoadedVolume(case_id, image.astype(np.float32), self._classes(raw, source), spacing)

    def check_case(self, case_id: str) -> CaseCheck:
        """Read the labels (and the image header of a volume) and report every problem.

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            The slice size, the number of slices, the label values and the problems.
        """
        record = self.record(case_id)
        check = CaseCheck(case_id)
        source = str(record.mask_path)
        volume = case_id in self._volumes
        try:
            if volume:
                shape = self._volume_shape(record)
                raw = self._read_volume_labels(record)
            else:
                image, raw = self._read_slice_file(record)
                shape = image.shape
            if len(shape) >= (3 if volume else 2):
                check.size = (int(shape[1]), int(shape[2])) if volume else (int(shape[0]), int(shape[1]))
                check.slices = int(shape[0]) if volume else 1
            self._check_shapes(shape, raw.shape, 3 if volume else 2, source)
            labels = integral_labels(raw, source)
            values = mask_values(labels)
            check.label_values = set(values.tolist())
            mask_classes(values, source, self.data_cfg.num_classes, self.data_cfg.label_map)
        except DataError as error:
            check.problems.append(str(error))
            if check.size is None:
                check.slices = 0
        return check

    def validate(self, case_ids: list[str]) -> None:
        """Read the labels of every slice file and volume involved (each once) and check them.

        Args:
            case_ids: case ids, slice ids ``<volume>:<index>`` included.

        Raises:
            DataError: the first problem found, naming the file.
        """
        cases = dict.fromkeys(case if case in self._records else self._volume_slice(case)[0] for case in case_ids)
        for case in cases:
            problems = self.check_case(case).problems
            if problems:
                raise DataError(problems[0])


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from None


def _h5_dataset(file: h5py.File, key: str, path: Path) -> h5py.Dataset:
    if key not in file or not isinstance(file[key], h5py.Dataset):
        raise DataError(f"{path} has no {key!r} dataset (it has {', '.join(sorted(file)) or 'nothing'})")
    return file[key]


def _read_h5(path: Path, keys: tuple[str, ...], index: int | None = None) -> list[np.ndarray]:
    """Read datasets of an HDF5 file, whole or one slice along the first axis."""
    with _open_h5(path) as file:
        datasets = [_h5_dataset(file, key, path) for key in keys]
        try:
            return [dataset[()] if index is None else dataset[index] for dataset in datasets]
        except (OSError, ValueError, IndexError) as error:
            raise DataError(f"cannot read {path}: {error}") from None


class H5VolumeReader(VolumeDatasetReader):
    """Volumes stored as HDF5 files with ``image`` and ``label`` datasets ``(D, H, W)``; slice files as HDF5 or
    NumPy ``.npz`` with ``image`` and ``label`` ``(H, W)``. No voxel spacing is stored in the files: it comes from
    ``spacing.csv`` in the dataset folder when present (see the module docstring), else it is ``None``.

    Args:
        data_cfg: the data section of the experiment.
        root: the resolved dataset folder.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    def _read_slice_file(self, record: CaseRecord) -> tuple[np.ndarray, np.ndarray]:
        assert record.image_path is not None
        path = record.image_path
        if path.suffix != ".npz":
            image, label = _read_h5(path, ("image", "label"))
            return image, label
        try:
            with np.load(path) as arrays:
                found = {key: arrays[key] for key in ("image", "label") if key in arrays.files}
                names = arrays.files
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise DataError(f"cannot read {path}: {error}") from None
        if len(found) < 2:
            raise DataError(f"{path} needs 'image' and 'label' arrays (it has {', '.join(names) or 'none'})")
        return found["image"], found["label"]

    def _volume_shape(self, record: CaseRecord) -> tuple[int, ...]:
        assert record.image_path is not None
        with _open_h5(record.image_path) as file:
            shape = _h5_dataset(file, "image", record.image_path).shape
        if len(shape) != 3:
            raise DataError(f"{record.image_path}: the image is {shape}, not a (D, H, W) volume")
        return shape

    @cached_property
    def _spacing_table(self) -> dict[str, tuple[float, float, float]] | None:
        """The dataset's spacing table, ``None`` without ``spacing.csv``."""
        assert self.root is not None
        path = self.root / SPACING_TABLE
        return read_spacing_table(path) if path.is_file() else None

    def _read_volume(self, record: CaseRecord) -> tuple[np.ndarray, np.ndarray, Spacing]:
        assert record.image_path is not None and self.root is not None
        image, label = _read_h5(record.image_path, ("image", "label"))
        table = self._spacing_table
        if table is None:
            return image, label, None
        if record.case_id not in table:
            raise DataError(
                f"spacing table {self.root / SPACING_TABLE} has no line for volume {record.case_id}; "
                "list every volume (case,z,y,x in mm) or remove the table"
            )
        return image, label, table[record.case_id]

    def _read_volume_labels(self, record: CaseRecord) -> np.ndarray:
        assert record.image_path is not None
        return _read_h5(record.image_path, ("label",))[0]

    def _read_volume_slice(self, record: CaseRecord, index: int) -> tuple[np.ndarray, np.ndarray]:
        assert record.image_path is not None
        image, label = _read_h5(record.image_path, ("image", "label"), index)
        return image, label
