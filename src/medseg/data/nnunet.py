"""NIfTI volumes in the nnU-Net raw-data layout, trained as 2D axial slices and evaluated per volume.

``dataset.json`` (``channel_names`` or ``modality``, ``labels``, ``file_ending``, ``numTraining``),
``imagesTr/<case>_<channel:04d><file_ending>`` and ``labelsTr/<case><file_ending>``. Both nnU-Net v2
(``{"background": 0, "liver": 1}``) and v1 (``{"0": "background", "1": "liver"}``) label tables are read;
region-based labels are not supported. Arrays are stored ``(x, y, z)``; slices are the axial planes
``z = k``, returned as ``(H, W) = (y, x)``, volumes as ``(z, y, x)``, with the voxel spacing of the header.
There is no official split (nnU-Net cross-validates): seeded splits are by case.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medseg.data.errors import DataError
from medseg.data.files import format_names
from medseg.data.readers import CaseRecord
from medseg.data.registry import register_reader
from medseg.data.volumes import Spacing, VolumeDatasetReader

__all__ = ["NnUNetMetadata", "NnUNetReader", "read_nnunet_metadata"]

NIFTI_ENDINGS = (".nii.gz", ".nii")


@dataclass
class NnUNetMetadata:
    """What medseg uses of ``dataset.json``.

    Attributes:
        channels: number of image channels (files per case).
        labels: label name -> value.
        file_ending: the image file ending (``.nii.gz`` or ``.nii``).
        num_training: the ``numTraining`` entry, ``None`` when absent.
    """

    channels: int
    labels: dict[str, int]
    file_ending: str
    num_training: int | None

    @property
    def num_classes(self) -> int:
        """Classes including background: the largest label value plus one."""
        return max(self.labels.values()) + 1


def _label_table(labels: Any, path: Path) -> dict[str, int]:
    """Read a v2 (name -> value) or v1 (value text -> name) label table."""
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{path}: 'labels' must be a non-empty mapping")
    if all(isinstance(value, int) for value in labels.values()):
        return {str(name): int(value) for name, value in labels.items()}
    if all(str(key).isdigit() and isinstance(value, str) for key, value in labels.items()):
        return {value: int(key) for key, value in labels.items()}
    raise DataError(f"{path}: 'labels' must map names to integer values (region-based labels are not supported)")


def read_nnunet_metadata(root: Path) -> NnUNetMetadata:
    """Read and check ``root/dataset.json``.

    Args:
        root: the nnU-Net dataset folder.

    Returns:
        Channels, labels and file ending.

    Raises:
        DataError: a missing or invalid file, or a file ending other than NIfTI.
    """
    path = root / "dataset.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path} must hold a JSON object")
    channels = meta.get("channel_names", meta.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise DataError(f"{path} needs 'channel_names' (or 'modality'), a mapping of channel numbers to names")
    ending = meta.get("file_ending", ".nii.gz")
    if ending not in NIFTI_ENDINGS:
        raise DataError(f"{path}: file_ending {ending!r} is not supported; medseg reads {', '.join(NIFTI_ENDINGS)}")
    number = meta.get("numTraining")
    return NnUNetMetadata(len(channels), _label_table(meta.get("labels"), path), ending, number)


def _nifti(path: Path) -> Any:
    try:
        image = nib.load(path)
    except Exception as error:  # nibabel raises many types for damaged files; all mean "unreadable"
        raise DataError(f"cannot read {path}: {error}") from None
    if len(image.shape) != 3:
        raise DataError(f"{path} has shape {image.shape}; expected a 3D (x, y, z) volume")
    return image


def _read(path: Path, index: int | None = None) -> np.ndarray:
    """A NIfTI volume as ``(z, y, x)``, or its axial slice ``index`` as ``(y, x)``."""
    image = _nifti(path)
    try:
        data = np.asanyarray(image.dataobj) if index is None else np.asanyarray(image.dataobj[:, :, index])
    except Exception as error:  # truncated or corrupt data: gzip, zlib and nibabel errors
        raise DataError(f"cannot read {path}: {error}") from None
    return np.ascontiguousarray(data.T)


@register_reader("nnunet", detect_priority=130)
class NnUNetReader(VolumeDatasetReader):
    """nnU-Net raw dataset: each case a volume (see the module docstring).

    Args:
        data_cfg: the data section of the experiment.
        root: the nnU-Net dataset folder (``DatasetXXX_Name``).
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = "dataset.json + imagesTr/<case>_0000.nii.gz + labelsTr/<case>.nii.gz"

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether ``root`` holds ``dataset.json`` and ``imagesTr/``.

        Args:
            root: the folder.

        Returns:
            ``True`` for the nnU-Net raw layout.
        """
        return (root / "dataset.json").is_file() and (root / "imagesTr").is_dir()

    @classmethod
    def default_num_classes(cls, root: Path) -> int:
        """The classes of ``dataset.json``.

        Args:
            root: the dataset folder.

        Returns:
            The largest label value plus one.
        """
        return read_nnunet_metadata(root).num_classes

    def _files(self, folder: Path, what: str) -> dict[str, Path]:
        """Name without ending -> path of the NIfTI files of a folder."""
        if not folder.is_dir():
            raise DataError(f"{what} folder {folder} does not exist")
        ending = self._meta.file_ending
        return {p.name[: -len(ending)]: p for p in sorted(folder.iterdir()) if p.name.endswith(ending)}

    def _scan(self) -> tuple[list[CaseRecord], list[CaseRecord]]:
        assert self.root is not None
        self._meta = read_nnunet_metadata(self.root)
        images_dir, labels_dir = self.root / "imagesTr", self.root / "labelsTr"
        channels: dict[str, set[int]] = {}
        for name in self._files(images_dir, "image"):
            match = re.fullmatch(r"(.+)_(\d{4})", name)
            if match:
                channels.setdefault(match.group(1), set()).add(int(match.group(2)))
        labels = self._files(labels_dir, "label")
        wanted = set(range(self._meta.channels))
        incomplete = [case for case, found in channels.items() if found != wanted]
        if incomplete:
            self._report(
                f"{len(incomplete)} case(s) in {images_dir} lack channel files (dataset.json has "
                f"{self._meta.channels} channel(s): <case>_0000 ..): {format_names(incomplete)}"
            )
        without_label = [case for case in channels if case not in labels]
        if without_label:
            self._report(
                f"{len(without_label)} case(s) in {images_dir} have no label in {labels_dir}: "
                f"{format_names(without_label)}"
            )
        without_image = [case for case in labels if case not in channels]
        if without_image:
            self._report(
                f"{len(without_image)} label(s) in {labels_dir} have no image in {images_dir}: "
                f"{format_names(without_image)}"
            )
        cases = sorted(case for case in channels if case in labels and case not in incomplete)
        if not cases:
            raise DataError(f"no complete nnU-Net cases in {self.root}")
        if self._meta.num_training is not None and self._meta.num_training != len(channels):
            self._report(
                f"{self.root / 'dataset.json'} has numTraining={self._meta.num_training} but "
                f"{images_dir} holds {len(channels)} case(s)"
            )
        return [], [CaseRecord(case, self._channel_path(case, 0), labels[case]) for case in cases]

    def _channel_path(self, case_id: str, channel: int) -> Path:
        assert self.root is not None
        return self.root / "imagesTr" / f"{case_id}_{channel:04d}{self._meta.file_ending}"

    def _image(self, record: CaseRecord, index: int | None = None) -> np.ndarray:
        """The channels of a case, stacked last when there are several."""
        arrays = [_read(self._channel_path(record.case_id, c), index) for c in range(self._meta.channels)]
        if any(array.shape != arrays[0].shape for array in arrays):
            raise DataError(f"the channel files of case {record.case_id} differ in shape")
        return arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=-1)

    def _volume_shape(self, record: CaseRecord) -> tuple[int, ...]:
        assert record.image_path is not None
        return tuple(int(n) for n in reversed(_nifti(record.image_path).shape))

    def _read_volume(self, record: CaseRecord) -> tuple[np.ndarray, np.ndarray, Spacing]:
        assert record.image_path is not None and record.mask_path is not None
        x, y, z = (float(size) for size in _nifti(record.image_path).header.get_zooms()[:3])
        return self._image(record), _read(record.mask_path), (z, y, x)

    def _read_volume_labels(self, record: CaseRecord) -> np.ndarray:
        assert record.mask_path is not None
        return _read(record.mask_path)

    def _read_volume_slice(self, record: CaseRecord, index: int) -> tuple[np.ndarray, np.ndarray]:
        assert record.mask_path is not None
        return self._image(record, index), _read(record.mask_path, index)
