"""BUSI breast ultrasound (Al-Dhabyani et al. 2020): the original release and the benchmark layout.

Original release (``Dataset_BUSI_with_GT``): ``benign/``, ``malignant/`` and ``normal/`` folders holding
``<class> (<n>).png`` with its mask ``<class> (<n>)_mask.png`` and, for images with several lesions, extra
masks ``_mask_1.png``, ``_mask_2.png``, ... merged by union.
Benchmark layout (UNeXt / CMUNeXt): ``images/<class> (<n>).png`` + ``masks/0/<class> (<n>).png`` (already
merged).

Both give the "BUSI 647" benign + malignant set: the 133 ``normal`` images (empty masks) are left out, as the
papers do. Masks are 0/255. There is no official split; the CMUNeXt layout ships three folds as split files
(``busi_train{1,2,3}.txt`` and ``busi_val{1,2,3}.txt``, one image stem a line, at the root or in ``splits/``),
which ``data.fold`` uses (their "val" is the test split; validation is carved from train). Known issue:
``benign (433)`` and ``malignant (145)`` are the same image; seeded splits keep such exact duplicates in one
split, and ``medseg data check`` lists them (:meth:`medseg.data.readers.DatasetReader.duplicate_groups`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from medseg.data.errors import DataError
from medseg.data.files import format_names, read_mask
from medseg.data.image_folder import ImageFolderReader
from medseg.data.readers import CaseRecord
from medseg.data.registry import register_reader

__all__ = ["BUSIReader"]

CLASSES = ("benign", "malignant")
_MASK = re.compile(r"(?P<image>.+)_mask(_\d+)?")


@register_reader("busi", detect_priority=30)
class BUSIReader(ImageFolderReader):
    """BUSI benign + malignant images in either layout (see the module docstring).

    Args:
        data_cfg: the data section of the experiment.
        root: the dataset folder.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = "benign/ + malignant/ with '<class> (<n>)_mask.png' (original), or images/ + masks/0/ (benchmark)"
    mask_folder = "masks/0"

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether ``root`` holds the class folders with masks, or ``images/`` + ``masks/0/``.

        Args:
            root: the folder.

        Returns:
            ``True`` for either BUSI layout.
        """
        original = any(any((root / name).glob("*_mask.png")) for name in CLASSES if (root / name).is_dir())
        return original or super().matches(root)

    def _scan(self) -> list[CaseRecord]:
        assert self.root is not None
        self._extra_masks: dict[str, list[Path]] = {}
        if (self.root / "images").is_dir():
            return super()._scan()
        folders = [self.root / name for name in CLASSES if (self.root / name).is_dir()]
        if not folders:
            raise DataError(f"no BUSI class folders ({', '.join(CLASSES)}) in {self.root}")
        records: list[CaseRecord] = []
        for folder in folders:
            images: dict[str, Path] = {}
            masks: dict[str, Path] = {}
            extra: dict[str, list[Path]] = {}
            for path in sorted(folder.glob("*.png")):
                match = _MASK.fullmatch(path.stem)
                if match is None:
                    images[path.stem] = path
                elif match.group(2) is None:
                    masks[match.group("image")] = path
                else:
                    extra.setdefault(match.group("image"), []).append(path)
            orphans = [path.name for case, paths in extra.items() if case not in masks for path in paths]
            if orphans:
                self._report(f"extra mask(s) in {folder} without a main <image>_mask.png: {format_names(orphans)}")
            self._extra_masks.update({case: paths for case, paths in extra.items() if case in images})
            records += self._pair_files(images, masks, folder, folder, "named <image stem>_mask.png")
        return records

    def official_folds(self) -> list[dict[str, list[str]]] | None:
        """The CMUNeXt folds: ``busi_train<k>.txt`` (train) and ``busi_val<k>.txt`` (test), k = 1, 2, ...

        Returns:
            The folds found at the root or in ``splits/``, or ``None`` when there are none.
        """
        assert self.root is not None
        for folder in (self.root, self.root / "splits"):
            folds = []
            while (folder / f"busi_train{len(folds) + 1}.txt").is_file():
                k = len(folds) + 1
                test_file = folder / f"busi_val{k}.txt"
                if not test_file.is_file():
                    raise DataError(f"{folder / f'busi_train{k}.txt'} has no {test_file.name} beside it")
                folds.append(
                    {
                        name: [line.strip() for line in path.read_text().splitlines() if line.strip()]
                        for name, path in (("train", folder / f"busi_train{k}.txt"), ("test", test_file))
                    }
                )
            if folds:
                return folds
        return None

    def _mask_file(self, record: CaseRecord) -> Path | None:
        """The mask file, unless extra masks are merged into it."""
        return None if self._extra_masks.get(record.case_id) else record.mask_path

    def _raw_mask(self, record: CaseRecord, image_size: tuple[int, int] | None) -> np.ndarray:
        """The union (element-wise maximum) of the case's mask and its extra masks."""
        raw = super()._raw_mask(record, image_size)
        for path in self._extra_masks.get(record.case_id, []):
            extra = read_mask(path, self.mask_threshold())
            if extra.shape != raw.shape:
                raise DataError(
                    f"extra mask {path} is {extra.shape[1]}x{extra.shape[0]} but {record.mask_path} is "
                    f"{raw.shape[1]}x{raw.shape[0]}"
                )
            raw = np.maximum(raw, extra)
        return raw
