"""Dataset readers: list a dataset's cases, give its official split, and load one case as arrays.

A reader never resizes or normalises: it returns the image at native size, channel-last, and the mask as class
indices. Preprocessing lives in :mod:`medseg.data.transforms`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.config import DataConfig
from medseg.data.errors import DataError
from medseg.data.files import check_label_map, read_image, read_image_size, read_mask, to_class_indices

__all__ = ["CaseRecord", "DatasetReader", "FileDatasetReader", "LoadedCase"]


@dataclass
class CaseRecord:
    """Where one case lives.

    Attributes:
        case_id: unique id within the dataset (the file stem for file-based readers).
        image_path: image file, ``None`` for generated data.
        mask_path: mask file, ``None`` for generated data.
    """

    case_id: str
    image_path: Path | None
    mask_path: Path | None


@dataclass
class LoadedCase:
    """One case in memory.

    Attributes:
        case_id: unique id within the dataset.
        image: ``(H, W, C)`` uint8, channel-last, native size.
        mask: ``(H, W)`` int64 class indices after label mapping.
        image_path: image file, ``None`` for generated data.
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray
    image_path: Path | None = None


class DatasetReader(ABC):
    """Base class of all readers.

    Args:
        data_cfg: the data section of the experiment.
        root: the resolved dataset folder (``None`` for readers that need none).
    """

    name: str = ""
    needs_root: bool = True

    def __init__(self, data_cfg: DataConfig, root: Path | None = None) -> None:
        self.data_cfg = data_cfg
        self.root = root

    @abstractmethod
    def list_cases(self) -> list[CaseRecord]:
        """Every case of the dataset.

        Returns:
            Records sorted by case id.
        """

    def official_split(self) -> dict[str, list[str]] | None:
        """The split published with the dataset.

        Returns:
            Split name -> case ids, or ``None`` when the dataset has none.
        """
        return None

    @abstractmethod
    def load(self, case_id: str) -> LoadedCase:
        """Read one case.

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            The image and its class-index mask.
        """

    def validate(self, case_ids: list[str]) -> None:
        """Check cases cheaply before use (e.g. before training), so bad files fail early.

        Args:
            case_ids: ids from :meth:`list_cases`.

        Raises:
            DataError: the first problem found.
        """
        del case_ids  # nothing can be wrong with generated data

    def case_ids(self) -> list[str]:
        """Sorted ids of every case.

        Returns:
            The ids of :meth:`list_cases`.
        """
        return [record.case_id for record in self.list_cases()]

    def describe(self) -> str:
        """One line naming the dataset, its size and its folder.

        Returns:
            E.g. ``kvasir: 1000 cases in /data/kvasir-seg``.
        """
        where = f" in {self.root}" if self.root is not None else ""
        return f"{self.name}: {len(self.list_cases())} cases{where}"


class FileDatasetReader(DatasetReader):
    """A reader of image/mask file pairs; subclasses only find the pairs (:meth:`_scan`).

    Masks go through the label rule of :mod:`medseg.data.files` with the threshold of :meth:`mask_threshold`.

    Args:
        data_cfg: the data section of the experiment.
        root: the resolved dataset folder.
    """

    def __init__(self, data_cfg: DataConfig, root: Path | None = None) -> None:
        super().__init__(data_cfg, root)
        check_label_map(data_cfg.label_map, data_cfg.num_classes)
        self._records = {record.case_id: record for record in sorted(self._scan(), key=lambda r: r.case_id)}

    @abstractmethod
    def _scan(self) -> list[CaseRecord]:
        """Find every image/mask pair under ``self.root``."""

    def mask_threshold(self) -> int | None:
        """The binarisation threshold of masks.

        Returns:
            ``data.mask_threshold`` (``None``: keep raw values).
        """
        return self.data_cfg.mask_threshold

    def list_cases(self) -> list[CaseRecord]:
        """Every image/mask pair.

        Returns:
            Records sorted by case id.
        """
        return list(self._records.values())

    def record(self, case_id: str) -> CaseRecord:
        """The files of one case.

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            Its record.

        Raises:
            DataError: an unknown id.
        """
        try:
            return self._records[case_id]
        except KeyError:
            raise DataError(f"case {case_id!r} is not in the {self.name} dataset at {self.root}") from None

    def _mask(self, record: CaseRecord, image_size: tuple[int, int]) -> np.ndarray:
        """Read, check and label-map the mask of ``record`` for an image of ``(height, width)``."""
        assert record.image_path is not None and record.mask_path is not None
        raw = read_mask(record.mask_path, self.mask_threshold())
        if raw.shape != image_size:
            raise DataError(
                f"image {record.image_path} is {image_size[1]}x{image_size[0]} (WxH) but its mask "
                f"{record.mask_path} is {raw.shape[1]}x{raw.shape[0]}"
            )
        return to_class_indices(raw, record.mask_path, self.data_cfg.num_classes, self.data_cfg.label_map)

    def validate(self, case_ids: list[str]) -> None:
        """Read every mask and image header: mask values, image/mask sizes and readable files.

        Args:
            case_ids: ids from :meth:`list_cases`.

        Raises:
            DataError: the first problem found, naming the file.
        """
        for case_id in case_ids:
            record = self.record(case_id)
            assert record.image_path is not None
            self._mask(record, read_image_size(record.image_path))

    def load(self, case_id: str) -> LoadedCase:
        """Read one image and its mask and map the mask to class indices.

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            The image ``(H, W, C)`` uint8 and mask ``(H, W)`` int64.

        Raises:
            DataError: unreadable files, image/mask size mismatch or unexpected mask values.
        """
        record = self.record(case_id)
        assert record.image_path is not None
        image = read_image(record.image_path)
        mask = self._mask(record, image.shape[:2])
        return LoadedCase(case_id=case_id, image=image, mask=mask, image_path=record.image_path)
