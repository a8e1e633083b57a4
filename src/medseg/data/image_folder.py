"""A generic folder of image/mask pairs: ``root/images/<name>.<ext>`` and ``root/masks/<name>.<ext>``."""

from __future__ import annotations

from pathlib import Path

from medseg.data.files import IMAGE_SUFFIXES, format_names, list_image_files
from medseg.data.readers import CaseRecord, FileDatasetReader
from medseg.data.registry import register_reader

__all__ = ["ImageFolderReader"]


@register_reader("image_folder", detect_priority=0)
class ImageFolderReader(FileDatasetReader):
    """Pairs ``root/images/*`` with ``root/masks/*`` by file stem (extensions may differ).

    Files may be PNG, JPEG, BMP or TIFF (any letter case). Images are RGB or grey (kept as one channel); masks
    follow the label rule of :mod:`medseg.data.files`. An image without a mask, or a mask without an image, is
    an error listing the files. The folder has no official split.

    Args:
        data_cfg: the data section of the experiment.
        root: the resolved dataset folder.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = "images/ + masks/ (same file stems)"
    mask_folder = "masks"

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether ``root`` holds ``images/`` and the mask folder.

        Args:
            root: the folder.

        Returns:
            ``True`` when both folders exist.
        """
        return (root / "images").is_dir() and (root / cls.mask_folder).is_dir()

    def _scan(self) -> list[CaseRecord]:
        assert self.root is not None
        image_dir, mask_dir = self.root / "images", self.root / self.mask_folder
        images = list_image_files(image_dir, "image")
        masks = list_image_files(mask_dir, "mask")
        rule = f"with the same name stem (any of {format_names(IMAGE_SUFFIXES)})"
        return self._pair_files(images, masks, image_dir, mask_dir, rule)
