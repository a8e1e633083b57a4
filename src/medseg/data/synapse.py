"""Synapse multi-organ CT (BTCV) in the TransUNet layout.

``train_npz/caseXXXX_sliceYYY.npz`` are 2D training slices (``image`` float32 in [0, 1], ``label`` 0..8),
``test_vol_h5/caseXXXX.npy.h5`` test volumes (``image`` and ``label`` ``(D, 512, 512)``). The optional lists
``lists/lists_Synapse/train.txt`` (slice names) and ``test_vol.txt`` (case names) restrict the cases. Labels:
0 background, 1 aorta, 2 gallbladder, 3 left kidney, 4 right kidney, 5 liver, 6 pancreas, 7 spleen, 8 stomach.
The official split is 18 training cases (2211 slices) and 12 test volumes, without validation set: one is
carved from the training cases by case (:meth:`SynapseReader.patient_of`), so a case's slices never straddle.
The HDF5 volumes store no voxel spacing; ``spacing.csv`` in the dataset folder gives it in mm per test volume
(``case,z,y,x``, see :mod:`medseg.data.volumes`), else distances are in voxels.
"""

from __future__ import annotations

import re
from pathlib import Path

from medseg.data.errors import DataError
from medseg.data.files import format_names
from medseg.data.readers import CaseRecord
from medseg.data.registry import register_reader
from medseg.data.volumes import H5VolumeReader

__all__ = ["SynapseReader"]

_SLICE = re.compile(r"case\d+_slice\d+")
_VOLUME = re.compile(r"case\d+")
_VOLUME_SUFFIX = ".npy.h5"
LIST_FOLDER = "lists/lists_Synapse"


@register_reader("synapse", detect_priority=120)
class SynapseReader(H5VolumeReader):
    """Synapse, 9 classes; cases are training slices (``case0005_slice012``) and test volumes (``case0001``,
    slices ``case0001:0`` ...).

    Args:
        data_cfg: the data section of the experiment.
        root: the dataset folder (holding ``train_npz/`` and ``test_vol_h5/``).
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = "train_npz/caseXXXX_sliceYYY.npz and/or test_vol_h5/caseXXXX.npy.h5"

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether ``root`` holds ``train_npz/`` or ``test_vol_h5/``.

        Args:
            root: the folder.

        Returns:
            ``True`` for the TransUNet Synapse layout.
        """
        return (root / "train_npz").is_dir() or (root / "test_vol_h5").is_dir()

    @classmethod
    def default_num_classes(cls, root: Path) -> int:
        """Background and eight organs.

        Args:
            root: the dataset folder.

        Returns:
            9.
        """
        del root  # fixed label set
        return 9

    def patient_of(self, case_id: str) -> str:
        """The CT case of a slice or volume (``case0005``).

        Args:
            case_id: id from :meth:`list_cases` (or a slice id).

        Returns:
            The ``caseXXXX`` prefix.
        """
        return re.split(r"[_:]", case_id, maxsplit=1)[0]

    def _listed(self, file: str, found: dict[str, Path], folder: Path) -> list[str]:
        """The ids of a list file that exist (reporting the others), or every found id without the file."""
        assert self.root is not None
        path = self.root / LIST_FOLDER / file
        if not path.is_file():
            return sorted(found)
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        missing = [name for name in names if name not in found]
        if missing:
            self._report(f"{path} names {len(missing)} case(s) without a file in {folder}: {format_names(missing)}")
        return [name for name in names if name in found]

    def _scan(self) -> tuple[list[CaseRecord], list[CaseRecord]]:
        assert self.root is not None
        train_dir, test_dir = self.root / "train_npz", self.root / "test_vol_h5"
        slices = {p.stem: p for p in train_dir.glob("*.npz") if _SLICE.fullmatch(p.stem)} if train_dir.is_dir() else {}
        volumes = (
            {p.name.removesuffix(_VOLUME_SUFFIX): p for p in test_dir.glob(f"*{_VOLUME_SUFFIX}")}
            if test_dir.is_dir()
            else {}
        )
        volumes = {case: path for case, path in volumes.items() if _VOLUME.fullmatch(case)}
        if not slices and not volumes:
            raise DataError(
                f"no Synapse files (train_npz/caseXXXX_sliceYYY.npz, test_vol_h5/caseXXXX.npy.h5) in {self.root}"
            )
        self._split = {"train": self._listed("train.txt", slices, train_dir)}
        if volumes:
            self._split["test"] = self._listed("test_vol.txt", volumes, test_dir)
        return (
            [CaseRecord(case, slices[case], slices[case]) for case in self._split["train"]],
            [CaseRecord(case, volumes[case], volumes[case]) for case in self._split.get("test", [])],
        )

    def official_split(self) -> dict[str, list[str]]:
        """Training slices and test volumes (val is carved from train by case).

        Returns:
            ``{"train": [...], "test": [...]}`` (without ``test`` when there are no test volumes).
        """
        return {name: sorted(ids) for name, ids in self._split.items()}
