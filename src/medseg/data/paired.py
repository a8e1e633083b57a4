"""Datasets shipped as folders of images next to folders of masks, one folder pair per official split."""

from __future__ import annotations

import re
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from medseg.data.errors import DataError
from medseg.data.files import IMAGE_SUFFIXES, format_names, list_image_files
from medseg.data.readers import CaseRecord, FileDatasetReader

__all__ = ["FolderPair", "PairedFoldersReader"]


@dataclass(frozen=True)
class FolderPair:
    """A folder of images and the folder of their masks.

    Attributes:
        split: the official split of these cases, ``None`` when the dataset has no official split.
        images: image folder, relative to the dataset root.
        masks: mask folder, relative to the dataset root (may equal ``images``).
        mask_suffix: a mask's stem is its image's stem plus this suffix (e.g. ``_segmentation``).
        mask_suffixes: file name suffixes of the masks.
    """

    split: str | None
    images: str
    masks: str
    mask_suffix: str = ""
    mask_suffixes: tuple[str, ...] = IMAGE_SUFFIXES


class PairedFoldersReader(FileDatasetReader):
    """Base of readers whose cases are the images of fixed folders, each with a mask in a sibling folder.

    Subclasses give the folder pairs (:meth:`folder_pairs`) and the pattern of image names. Pairs whose image
    folder is absent are skipped (e.g. a release downloaded without its test set); at least one must exist.
    The official split is the pairs' ``split`` (none when they have none). Case ids are image stems and must be
    unique across the folders.

    Attributes:
        image_pattern: regular expression that an image stem must match in full; other files (e.g. ISIC 2017
            superpixel maps) are ignored.

    Args:
        data_cfg: the data section of the experiment.
        root: the resolved dataset folder.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    image_pattern: ClassVar[str] = r".+"

    @classmethod
    @abstractmethod
    def folder_pairs(cls, root: Path) -> tuple[FolderPair, ...]:
        """The folder pairs of the layout found in ``root``.

        Args:
            root: the dataset folder.

        Returns:
            The pairs, in split order.
        """

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether any image folder of the layout exists in ``root``.

        Args:
            root: the folder.

        Returns:
            ``True`` when one does.
        """
        return any((root / pair.images).is_dir() for pair in cls.folder_pairs(root))

    def _list(self, folder: Path, what: str, suffixes: tuple[str, ...], pattern: str) -> dict[str, Path]:
        """Stem -> path of the files of ``folder`` whose stem matches ``pattern``."""
        found = list_image_files(folder, what, suffixes)
        matching = {stem: path for stem, path in found.items() if re.fullmatch(pattern, stem)}
        if not matching:
            raise DataError(f"no {what} files named like {pattern!r} in {folder}")
        return matching

    def _scan(self) -> list[CaseRecord]:
        assert self.root is not None
        pairs = [pair for pair in self.folder_pairs(self.root) if (self.root / pair.images).is_dir()]
        if not pairs:
            expected = format_names(pair.images for pair in self.folder_pairs(self.root))
            raise DataError(f"no image folder of the {self.name} layout in {self.root}; looked for {expected}")
        self._split_of: dict[str, str | None] = {}
        records: list[CaseRecord] = []
        for pair in pairs:
            image_dir, mask_dir = self.root / pair.images, self.root / pair.masks
            images = self._list(image_dir, "image", IMAGE_SUFFIXES, self.image_pattern)
            repeated = sorted(case for case in images if case in self._split_of)
            if repeated:
                self._report(f"{image_dir} repeats case(s) found in another folder: {format_names(repeated)}")
            try:
                found = self._list(
                    mask_dir, "mask", pair.mask_suffixes, self.image_pattern + re.escape(pair.mask_suffix)
                )
            except DataError as error:  # no usable mask folder: every image lacks its mask
                self._report(str(error))
                found = {}
            masks = {stem.removesuffix(pair.mask_suffix): path for stem, path in found.items()}
            rule = f"named <image stem>{pair.mask_suffix}{{{','.join(pair.mask_suffixes)}}}"
            for record in self._pair_files(images, masks, image_dir, mask_dir, rule):
                if record.case_id not in self._split_of:
                    self._split_of[record.case_id] = pair.split
                    records.append(record)
        return records

    def official_split(self) -> dict[str, list[str]] | None:
        """The split given by the folders.

        Returns:
            Split name -> case ids, or ``None`` for a dataset without official split.
        """
        if any(split is None for split in self._split_of.values()):
            return None
        split: dict[str, list[str]] = {}
        for case, name in self._split_of.items():
            assert name is not None
            split.setdefault(name, []).append(case)
        return {name: sorted(ids) for name, ids in split.items()}
