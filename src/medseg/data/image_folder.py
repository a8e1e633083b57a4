"""A generic folder of image/mask pairs: ``root/images/<name>.<ext>`` and ``root/masks/<name>.<ext>``."""

from __future__ import annotations

from medseg.data.errors import DataError
from medseg.data.files import IMAGE_SUFFIXES, format_names, list_image_files
from medseg.data.readers import CaseRecord, FileDatasetReader

__all__ = ["ImageFolderReader"]


class ImageFolderReader(FileDatasetReader):
    """Pairs ``root/images/*`` with ``root/masks/*`` by file stem (extensions may differ).

    Files may be PNG, JPEG, BMP or TIFF (any letter case). Images are RGB or grey (kept as one channel); masks
    follow the label rule of :mod:`medseg.data.files`. An image without a mask, or a mask without an image, is
    an error listing the files. The folder has no official split.

    Args:
        data_cfg: the data section of the experiment.
        root: the resolved dataset folder.
    """

    name = "image_folder"

    def _scan(self) -> list[CaseRecord]:
        assert self.root is not None
        images = list_image_files(self.root / "images", "image")
        masks = list_image_files(self.root / "masks", "mask")
        suffixes = format_names(IMAGE_SUFFIXES)
        without_mask = [images[stem].name for stem in images if stem not in masks]
        if without_mask:
            raise DataError(
                f"{len(without_mask)} image(s) in {self.root / 'images'} have no mask with the same name "
                f"stem in {self.root / 'masks'} (any of {suffixes}): {format_names(without_mask)}"
            )
        without_image = [masks[stem].name for stem in masks if stem not in images]
        if without_image:
            raise DataError(
                f"{len(without_image)} mask(s) in {self.root / 'masks'} have no image with the same name "
                f"stem in {self.root / 'images'}: {format_names(without_image)}"
            )
        return [CaseRecord(stem, images[stem], masks[stem]) for stem in images]
