"""PH2 dermoscopy (Mendonca et al. 2013), original layout.

``PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` with the lesion mask
``PH2 Dataset images/IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp``; the colour-class ROI masks (``IMDxxx_roi/``)
and the tables are ignored. Lesion masks are 1-bit BMPs (0/1) except IMD002 (RGB 0/255), so masks are
binarised ``> 0``.
"""

from __future__ import annotations

import re
from pathlib import Path

from medseg.data.errors import DataError
from medseg.data.files import format_names
from medseg.data.readers import CaseRecord, FileDatasetReader
from medseg.data.registry import register_reader

__all__ = ["PH2Reader"]

IMAGES_FOLDER = "PH2 Dataset images"


@register_reader("ph2", detect_priority=60)
class PH2Reader(FileDatasetReader):
    """PH2: 200 dermoscopic images with lesion masks; no official split.

    ``root`` is the release folder (holding ``PH2 Dataset images/``) or ``PH2 Dataset images`` itself.

    Args:
        data_cfg: the data section of the experiment.
        root: the dataset folder.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = "PH2 Dataset images/IMDxxx/{IMDxxx_Dermoscopic_Image,IMDxxx_lesion}/"
    default_mask_threshold = 1

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether ``root`` holds ``PH2 Dataset images/``.

        Args:
            root: the folder.

        Returns:
            ``True`` for the PH2 layout.
        """
        return (root / IMAGES_FOLDER).is_dir()

    def _scan(self) -> list[CaseRecord]:
        assert self.root is not None
        base = self.root / IMAGES_FOLDER if (self.root / IMAGES_FOLDER).is_dir() else self.root
        cases = sorted(path for path in base.iterdir() if path.is_dir() and re.fullmatch(r"IMD\d+", path.name))
        if not cases:
            raise DataError(f"no PH2 case folders (IMDxxx) in {base}")
        images: dict[str, Path] = {}
        masks: dict[str, Path] = {}
        without_image: list[str] = []
        for folder in cases:
            name = folder.name
            image = folder / f"{name}_Dermoscopic_Image" / f"{name}.bmp"
            mask = folder / f"{name}_lesion" / f"{name}_lesion.bmp"
            if image.is_file():
                images[name] = image
            else:
                without_image.append(str(image.relative_to(base)))
            if mask.is_file():
                masks[name] = mask
        if without_image:
            self._report(f"{len(without_image)} PH2 case(s) in {base} lack their image: {format_names(without_image)}")
            masks = {name: path for name, path in masks.items() if name in images}
        return self._pair_files(images, masks, base, base, "IMDxxx_lesion/IMDxxx_lesion.bmp")
