"""ACDC cardiac MRI (Bernard et al. 2018) in the SSL4MIS HDF5 layout.

``data/patientXXX_frameYY_slice_Z.h5`` are 2D training slices (or ``data/slices/...``) and
``data/patientXXX_frameYY.h5`` whole frames (volumes ``(D, H, W)``), each with ``image`` (float32 in [0, 1],
min-max normalised per volume) and ``label`` (uint8: 0 background, 1 RV, 2 myocardium, 3 LV). The lists
``train_slices.list``, ``val.list`` and ``test.list`` give the official split (SSL4MIS / TransUNet style:
70 / 10 / 20 patients): training on slice files, validation and test on volumes.

The HDF5 files store no voxel spacing. ``spacing.csv`` in the dataset folder gives it (see
:mod:`medseg.data.volumes`); :func:`spacing_from_nifti` reads it from the headers of the original NIfTI release,
whose frames ``patientXXX/patientXXX_frameYY.nii.gz`` the volumes were converted from (same axes, no resampling),
and :func:`medseg.data.volumes.write_spacing_table` writes the table:
``write_spacing_table(Path("acdc-h5/spacing.csv"), spacing_from_nifti(Path("ACDC/database")))``.
"""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
from nibabel.filebasedimages import ImageFileError

from medseg.data.errors import DataError
from medseg.data.files import format_names
from medseg.data.readers import CaseRecord
from medseg.data.registry import register_reader
from medseg.data.volumes import H5VolumeReader

__all__ = ["ACDCReader", "spacing_from_nifti"]

_SLICE = re.compile(r"patient\d+_frame\d+_slice_\d+")
_VOLUME = re.compile(r"patient\d+_frame\d+")
LISTS = {"train": "train_slices.list", "val": "val.list", "test": "test.list"}
_NIFTI_SUFFIX = ".nii.gz"


def spacing_from_nifti(folder: Path) -> dict[str, tuple[float, float, float]]:
    """The voxel spacing of every ACDC frame from the original NIfTI release, in the HDF5 volumes' axis order.

    Args:
        folder: the release folder (searched recursively for ``patientXXX_frameYY.nii.gz``; the ``_gt`` label
            files and ``_4d`` sequences are skipped).

    Returns:
        Frame id (``patient001_frame01``) -> ``(z, y, x)`` spacing in mm (the NIfTI header's ``(x, y, z)`` voxel
        sizes reversed, as the HDF5 volumes are stored ``(slices, rows, columns)``).

    Raises:
        DataError: no frame found or an unreadable header.
    """
    table: dict[str, tuple[float, float, float]] = {}
    for path in sorted(folder.rglob(f"patient*_frame*{_NIFTI_SUFFIX}")):
        case = path.name.removesuffix(_NIFTI_SUFFIX)
        if not _VOLUME.fullmatch(case):
            continue
        try:
            x, y, z = (float(size) for size in nib.load(path).header.get_zooms()[:3])
        except (OSError, ValueError, ImageFileError) as error:
            raise DataError(f"cannot read the NIfTI header of {path}: {error}") from None
        table[case] = (z, y, x)
    if not table:
        raise DataError(f"no ACDC frames (patientXXX_frameYY{_NIFTI_SUFFIX}) under {folder}")
    return table


@register_reader("acdc", detect_priority=110)
class ACDCReader(H5VolumeReader):
    """ACDC, 4 classes; cases are slice files (``patient003_frame01_slice_1``) and volumes
    (``patient011_frame01``, slices ``patient011_frame01:0`` ...).

    With ``train_slices.list`` the cases are those the lists name (each must exist) and the lists are the
    official split. Without it, every volume is a case, plus the slice files of frames that have no volume, and
    seeded splits group cases by patient.

    Args:
        data_cfg: the data section of the experiment.
        root: the dataset folder (holding ``data/`` and the lists).
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = "data/patientXXX_frameYY[_slice_Z].h5 (+ train_slices.list, val.list, test.list)"

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether ``root/data`` holds ACDC HDF5 files.

        Args:
            root: the folder.

        Returns:
            ``True`` for the SSL4MIS ACDC layout.
        """
        data = root / "data"
        if not data.is_dir():
            return False
        names = (path.stem for folder in (data, data / "slices") if folder.is_dir() for path in folder.glob("*.h5"))
        return any(_VOLUME.fullmatch(name) or _SLICE.fullmatch(name) for name in names)

    @classmethod
    def default_num_classes(cls, root: Path) -> int:
        """Background, RV, myocardium, LV.

        Args:
            root: the dataset folder.

        Returns:
            4.
        """
        del root  # fixed label set
        return 4

    def patient_of(self, case_id: str) -> str:
        """The patient of a frame or slice (``patient011``).

        Args:
            case_id: id from :meth:`list_cases` (or a slice id).

        Returns:
            The ``patientXXX`` prefix.
        """
        return case_id.split("_", 1)[0]

    def _lists(self) -> dict[str, list[str]] | None:
        """The split lists present (``None`` without ``train_slices.list``)."""
        assert self.root is not None
        if not (self.root / LISTS["train"]).is_file():
            return None
        return {
            name: [line.strip() for line in (self.root / file).read_text().splitlines() if line.strip()]
            for name, file in LISTS.items()
            if (self.root / file).is_file()
        }

    def _scan(self) -> tuple[list[CaseRecord], list[CaseRecord]]:
        assert self.root is not None
        data = self.root / "data"
        if not data.is_dir():
            raise DataError(f"ACDC folder {data} does not exist")
        slice_dir = data / "slices" if (data / "slices").is_dir() else data
        slice_files = {path.stem: path for path in slice_dir.glob("*.h5") if _SLICE.fullmatch(path.stem)}
        volume_files = {path.stem: path for path in data.glob("*.h5") if _VOLUME.fullmatch(path.stem)}
        if not slice_files and not volume_files:
            raise DataError(f"no ACDC files (patientXXX_frameYY[_slice_Z].h5) in {data}")
        self._split = self._lists()
        if self._split is None:
            slice_ids = [case for case in slice_files if case.rsplit("_slice_", 1)[0] not in volume_files]
            return self._records_of(slice_ids, slice_files), self._records_of(list(volume_files), volume_files)
        for name, ids in self._split.items():
            files, folder = (slice_files, slice_dir) if name == "train" else (volume_files, data)
            missing = [case for case in ids if case not in files]
            if missing:
                self._report(
                    f"{self.root / LISTS[name]} names {len(missing)} case(s) without a file in {folder}: "
                    f"{format_names(missing)}"
                )
            self._split[name] = [case for case in ids if case in files]
        volume_ids = self._split.get("val", []) + self._split.get("test", [])
        return self._records_of(self._split["train"], slice_files), self._records_of(volume_ids, volume_files)

    @staticmethod
    def _records_of(ids: list[str], files: dict[str, Path]) -> list[CaseRecord]:
        return [CaseRecord(case, files[case], files[case]) for case in ids]

    def official_split(self) -> dict[str, list[str]] | None:
        """The split of the lists: training slices, validation and test volumes.

        Returns:
            Split name -> case ids (the lists present, ``train`` always), or ``None`` without
            ``train_slices.list``.
        """
        if self._split is None:
            return None
        return {name: sorted(ids) for name, ids in self._split.items()}
