"""Dataset readers: list a dataset's cases, give its official split, and load one case as arrays.

A reader never resizes or normalises: it returns the image at native size, channel-last, and the mask as class
indices. Preprocessing lives in :mod:`medseg.data.transforms`.

Volumetric datasets (ACDC, Synapse, nnU-Net) list volumes as cases too: :meth:`DatasetReader.is_volume` tells
them apart, :meth:`DatasetReader.load_volume` reads a whole volume and :meth:`DatasetReader.slice_ids` names
its 2D slices (``<volume id>:<index>``), which :meth:`DatasetReader.load` reads like any 2D case. Splits always
list cases (volumes stay volumes); the torch datasets expand them to slices.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from medseg.config import DataConfig
from medseg.data.errors import DataError
from medseg.data.files import (
    check_image,
    check_label_map,
    duplicate_groups,
    format_names,
    mask_classes,
    mask_values,
    pixel_hash,
    read_image,
    read_mask,
    to_class_indices,
)

__all__ = [
    "CaseCheck",
    "CaseRecord",
    "DatasetReader",
    "FileDatasetReader",
    "LoadedCase",
    "LoadedVolume",
    "RecordTableReader",
]


@dataclass
class CaseRecord:
    """Where one case lives.

    Attributes:
        case_id: unique id within the dataset (the file stem for file-based readers).
        image_path: image file (the first channel's for multi-file volumes; the same file as ``mask_path``
            for HDF5 and NumPy files holding both), ``None`` for generated data.
        mask_path: mask file (an annotation file for MoNuSeg's XML outlines), ``None`` for generated data
            and for a missing mask found by a non-strict listing.
    """

    case_id: str
    image_path: Path | None
    mask_path: Path | None


@dataclass
class LoadedCase:
    """One case in memory.

    Attributes:
        case_id: unique id within the dataset.
        image: ``(H, W, C)``, channel-last, native size: as :func:`medseg.data.files.read_image` gives it for
            2D image datasets (uint8 for 8-bit files, float32 for 16-bit and float ones), float32 (the stored
            intensities, e.g. in [0, 1] for ACDC and Synapse) for slices of volumetric datasets.
        mask: ``(H, W)`` int64 class indices after label mapping.
        image_path: image file, ``None`` for generated data.
        mask_path: the mask file the mask was read from as it is (protocols that reproduce a loader reading the
            stored values use it), ``None`` for generated masks and masks drawn or merged from several files.
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray
    image_path: Path | None = None
    mask_path: Path | None = None


@dataclass
class LoadedVolume:
    """One volume in memory.

    Attributes:
        case_id: unique id within the dataset.
        image: ``(D, H, W)`` or ``(D, H, W, C)`` float32, slices along the first axis.
        mask: ``(D, H, W)`` int64 class indices after label mapping.
        spacing: voxel size ``(z, y, x)`` in mm when the files record it, else ``None``.
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float] | None


@dataclass
class CaseCheck:
    """What :meth:`DatasetReader.check_case` found in one case.

    Attributes:
        case_id: the case.
        size: ``(height, width)`` of its image (of each slice for a volume), ``None`` when unreadable.
        slices: 2D slices it holds (1 for a 2D case, 0 when unreadable).
        label_values: the distinct raw mask values (after the dataset's binarisation, before label mapping).
        problems: every problem found, each naming the file.
        image_hash: :func:`medseg.data.files.pixel_hash` of its image (see :meth:`DatasetReader.image_hash`),
            ``None`` when not hashed or unreadable.
    """

    case_id: str
    size: tuple[int, int] | None = None
    slices: int = 1
    label_values: set[int] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    image_hash: str | None = None


class DatasetReader(ABC):
    """Base class of all readers.

    Attributes:
        name: registry name (``data.dataset``), set by :func:`~medseg.data.registry.register_reader`.
        detect_priority: where format detection tries the reader (higher first; ``None``: never), set by
            :func:`~medseg.data.registry.register_reader`.
        needs_root: whether the reader reads a folder.
        signature: the files that identify the dataset's layout (for :func:`medseg.data.detect.detect_format`).
        problems: problems found while listing the cases when not ``strict`` (see below).

    Args:
        data_cfg: the data section of the experiment.
        root: the resolved dataset folder (``None`` for readers that need none).
        strict: raise on the first problem found while listing the cases (training); when ``False``
            (``medseg data check``) the problems are collected in :attr:`problems` and the usable cases kept.
    """

    name: str = ""
    detect_priority: ClassVar[int | None] = None
    needs_root: bool = True
    signature: ClassVar[str] = ""

    def __init__(self, data_cfg: DataConfig, root: Path | None = None, *, strict: bool = True) -> None:
        self.data_cfg = data_cfg
        self.root = root
        self.strict = strict
        self.problems: list[str] = []

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether a folder has this reader's layout (its :attr:`signature` files).

        Args:
            root: the folder.

        Returns:
            ``True`` when the signature files are there.
        """
        del root  # readers without a folder layout match nothing
        return False

    @classmethod
    def default_num_classes(cls, root: Path) -> int:
        """The number of classes (with background) of the dataset in ``root``.

        Args:
            root: the dataset folder.

        Returns:
            2 for the binary datasets; readers of multi-class datasets override it.
        """
        del root  # binary datasets: the same for every folder
        return 2

    def _report(self, message: str) -> None:
        """A problem found while listing: raised when ``strict``, collected in :attr:`problems` otherwise."""
        if self.strict:
            raise DataError(message)
        self.problems.append(message)

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

    def official_folds(self) -> list[dict[str, list[str]]] | None:
        """Cross-validation folds published with the dataset (``data.fold`` picks one).

        Returns:
            One ``{"train": [...], "test": [...]}`` per fold, or ``None`` when the dataset publishes none.
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

    def is_volume(self, case_id: str) -> bool:
        """Whether a case is a volume (loaded with :meth:`load_volume`, trained on as its slices).

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            ``False`` for 2D datasets.
        """
        del case_id  # 2D datasets have no volumes
        return False

    def load_volume(self, case_id: str) -> LoadedVolume:
        """Read one volume.

        Args:
            case_id: id of a volume (:meth:`is_volume`).

        Returns:
            The volume and its class-index mask.

        Raises:
            DataError: always for 2D datasets.
        """
        raise DataError(f"case {case_id!r} of the {self.name} dataset is not a volume (the dataset is 2D)")

    def slice_ids(self, case_id: str) -> list[str]:
        """The 2D cases a case consists of, each loadable with :meth:`load`.

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            ``[case_id]`` for a 2D case; ``<case_id>:<index>`` for each slice of a volume.
        """
        return [case_id]

    def patient_of(self, case_id: str) -> str:
        """The patient (or other group) a case belongs to; seeded splits never divide a group.

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            The case id itself for datasets without known patients.
        """
        return case_id

    def image_hash(self, case_id: str) -> str | None:
        """A fingerprint of a case's decoded image (:func:`medseg.data.files.pixel_hash`), to find duplicates.

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            ``None`` here: duplicates are looked for among 2D image files only (:class:`FileDatasetReader`),
            not among volumes or generated data.
        """
        del case_id  # not hashed
        return None

    def duplicate_groups(self, case_ids: list[str]) -> list[list[str]]:
        """The cases with identical image pixels (equal :meth:`image_hash`); seeded splits keep each together.

        Args:
            case_ids: ids from :meth:`list_cases`.

        Returns:
            Groups of two or more ids (see :func:`medseg.data.files.duplicate_groups`); empty when the reader
            hashes no image.
        """
        hashes = {case: digest for case in case_ids if (digest := self.image_hash(case)) is not None}
        return duplicate_groups(hashes)

    def subsets(self) -> dict[str, list[str]]:
        """Named subsets of the official split worth evaluating separately (e.g. GlaS ``testA``/``testB``).

        Returns:
            Subset name -> case ids; empty for most datasets.
        """
        return {}

    def check_case(self, case_id: str) -> CaseCheck:
        """Check one case and report every problem instead of raising (``medseg data check``).

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            Its size, slices, mask values and problems.
        """
        check = CaseCheck(case_id)
        try:
            case = self.load(case_id)
        except DataError as error:
            check.problems.append(str(error))
            check.slices = 0
            return check
        check.size = (int(case.image.shape[0]), int(case.image.shape[1]))
        check.label_values = set(mask_values(case.mask).tolist())
        return check

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


class RecordTableReader(DatasetReader):
    """A reader whose cases are a table of :class:`CaseRecord` built once (``self._records``, sorted by id)."""

    _records: dict[str, CaseRecord]

    def list_cases(self) -> list[CaseRecord]:
        """Every case.

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


class FileDatasetReader(RecordTableReader):
    """A reader of image/mask file pairs; subclasses only find the pairs (:meth:`_scan`).

    Masks go through the label rule of :mod:`medseg.data.files` with the threshold of :meth:`mask_threshold`.
    When not ``strict``, an image without a mask stays listed (with ``mask_path=None``) so that ``medseg data
    check`` counts it; loading it is an error.

    Attributes:
        default_mask_threshold: the binarisation threshold of the dataset's masks when ``data.mask_threshold``
            is unset (``None``: keep raw values).

    Args:
        data_cfg: the data section of the experiment.
        root: the resolved dataset folder.
        strict: see :class:`DatasetReader`.
    """

    default_mask_threshold: ClassVar[int | None] = None

    def __init__(self, data_cfg: DataConfig, root: Path | None = None, *, strict: bool = True) -> None:
        super().__init__(data_cfg, root, strict=strict)
        check_label_map(data_cfg.label_map, data_cfg.num_classes)
        self._records = {record.case_id: record for record in sorted(self._scan(), key=lambda r: r.case_id)}

    @abstractmethod
    def _scan(self) -> list[CaseRecord]:
        """Find every image/mask pair under ``self.root``."""

    def _pair_files(
        self, images: dict[str, Path], masks: dict[str, Path], image_dir: Path, mask_dir: Path, rule: str
    ) -> list[CaseRecord]:
        """Pair images and masks by case id, reporting images without masks and masks without images.

        Args:
            images: case id -> image file.
            masks: case id -> mask file.
            image_dir: where the images are, for messages.
            mask_dir: where the masks are, for messages.
            rule: how a mask is named after its image, for messages.

        Returns:
            A record per image (``mask_path=None`` where the mask is missing and not ``strict``).
        """
        without_mask = [images[case].name for case in images if case not in masks]
        if without_mask:
            self._report(
                f"{len(without_mask)} image(s) in {image_dir} have no mask {rule} in {mask_dir}: "
                f"{format_names(without_mask)}"
            )
        without_image = [masks[case].name for case in masks if case not in images]
        if without_image:
            self._report(
                f"{len(without_image)} mask(s) in {mask_dir} have no image {rule} in {image_dir}: "
                f"{format_names(without_image)}"
            )
        return [CaseRecord(case, path, masks.get(case)) for case, path in images.items()]

    def mask_threshold(self) -> int | None:
        """The binarisation threshold of masks.

        Returns:
            ``data.mask_threshold``, or :attr:`default_mask_threshold` when unset (``None``: keep raw values).
        """
        threshold = self.data_cfg.mask_threshold
        return self.default_mask_threshold if threshold is None else threshold

    def _raw_mask(self, record: CaseRecord, image_size: tuple[int, int] | None) -> np.ndarray:
        """Read the mask of ``record`` as raw values after the dataset's binarisation.

        Args:
            record: a case with a mask.
            image_size: ``(height, width)`` of its image, when known (for masks drawn from annotations).

        Returns:
            ``(H, W)`` int64 raw values.
        """
        del image_size  # mask files carry their own size
        assert record.mask_path is not None
        return read_mask(record.mask_path, self.mask_threshold())

    def _size_problem(self, record: CaseRecord, image_size: tuple[int, int], mask_size: tuple[int, ...]) -> str:
        return (
            f"image {record.image_path} is {image_size[1]}x{image_size[0]} (WxH) but its mask "
            f"{record.mask_path} is {mask_size[1]}x{mask_size[0]}"
        )

    def _mask(self, record: CaseRecord, image_size: tuple[int, int]) -> np.ndarray:
        """Read, check and label-map the mask of ``record`` for an image of ``(height, width)``."""
        if record.mask_path is None:
            raise DataError(f"image {record.image_path} has no mask")
        raw = self._raw_mask(record, image_size)
        if raw.shape != image_size:
            raise DataError(self._size_problem(record, image_size, raw.shape))
        return to_class_indices(raw, record.mask_path, self.data_cfg.num_classes, self.data_cfg.label_map)

    def validate(self, case_ids: list[str]) -> None:
        """Check every mask and image before training: readable files, image formats, sizes and mask values.

        Images go through :func:`medseg.data.files.check_image` (the cheap part of the checks of
        :func:`medseg.data.files.read_image`, which ``medseg data check`` runs in full).

        Args:
            case_ids: ids from :meth:`list_cases`.

        Raises:
            DataError: the first problem found, naming the file.
        """
        for case_id in case_ids:
            record = self.record(case_id)
            assert record.image_path is not None
            self._mask(record, check_image(record.image_path))

    def image_hash(self, case_id: str) -> str | None:
        """The :func:`medseg.data.files.pixel_hash` of the case's image, read as training reads it.

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            The hash.

        Raises:
            DataError: an image :func:`medseg.data.files.read_image` refuses.
        """
        record = self.record(case_id)
        assert record.image_path is not None
        return pixel_hash(read_image(record.image_path))

    def duplicate_groups(self, case_ids: list[str]) -> list[list[str]]:
        """The cases with identical image pixels; only images sharing their size with another are decoded.

        Args:
            case_ids: ids from :meth:`list_cases`.

        Returns:
            Groups of two or more ids, as :meth:`DatasetReader.duplicate_groups`.
        """
        by_size: dict[tuple[int, int], list[str]] = {}
        for case in case_ids:
            path = self.record(case).image_path
            assert path is not None
            by_size.setdefault(check_image(path), []).append(case)
        return super().duplicate_groups([case for ids in by_size.values() if len(ids) > 1 for case in ids])

    def check_case(self, case_id: str) -> CaseCheck:
        """Read the image and mask as training does, and report every problem of the pair.

        The image is decoded by :func:`medseg.data.files.read_image`, the decoder of :meth:`load`, so anything
        training would refuse is reported here.

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            The image size and hash, the raw mask values and the problems (unreadable files, unsupported pixel
            formats, NaN pixels, size mismatch, unexpected mask values). A missing mask is reported when the
            cases are listed, not here.
        """
        record = self.record(case_id)
        check = CaseCheck(case_id)
        assert record.image_path is not None
        try:
            image = read_image(record.image_path)
            check.size = (int(image.shape[0]), int(image.shape[1]))
            check.image_hash = pixel_hash(image)
        except DataError as error:
            check.problems.append(str(error))
            check.slices = 0
        if record.mask_path is None:
            return check
        try:
            raw = self._raw_mask(record, check.size)
            values = mask_values(raw)
            check.label_values = set(values.tolist())
            if check.size is not None and raw.shape != check.size:
                check.problems.append(self._size_problem(record, check.size, raw.shape))
            mask_classes(values, record.mask_path, self.data_cfg.num_classes, self.data_cfg.label_map)
        except DataError as error:
            check.problems.append(str(error))
        return check

    def load(self, case_id: str) -> LoadedCase:
        """Read one image and its mask and map the mask to class indices.

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            The image ``(H, W, C)`` (:func:`medseg.data.files.read_image`) and mask ``(H, W)`` int64.

        Raises:
            DataError: unreadable files, a missing mask, image/mask size mismatch or unexpected mask values.
        """
        record = self.record(case_id)
        assert record.image_path is not None
        image = read_image(record.image_path)
        mask = self._mask(record, image.shape[:2])
        return LoadedCase(
            case_id=case_id, image=image, mask=mask, image_path=record.image_path, mask_path=self._mask_file(record)
        )

    def _mask_file(self, record: CaseRecord) -> Path | None:
        """The file that holds the case's mask as it is (``None`` when the mask is drawn or merged)."""
        return record.mask_path
