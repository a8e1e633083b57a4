"""ISIC skin-lesion segmentation (Task 1 / Part 1) of the 2016, 2017 and 2018 challenges, official folders.

Images are ``ISIC_<7 digits>.jpg``; masks are 0/255 PNGs named ``ISIC_<id>_segmentation.png`` (2017, 2018) or
``ISIC_<id>_Segmentation.png`` (2016). Other files in the folders (ISIC 2017's ``*_superpixels.png`` maps and
metadata CSVs, the licence and attribution texts) are ignored. The official split is given by the folders
present: 2016 has train/test, 2017 and 2018 train/val/test.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from medseg.data.paired import FolderPair, PairedFoldersReader
from medseg.data.registry import register_reader

__all__ = ["ISIC2016Reader", "ISIC2017Reader", "ISIC2018Reader"]


class _ISICReader(PairedFoldersReader):
    """Shared settings of the ISIC readers."""

    image_pattern = r"ISIC_\d+"
    pairs: ClassVar[tuple[FolderPair, ...]] = ()

    @classmethod
    def folder_pairs(cls, root: Path) -> tuple[FolderPair, ...]:
        """The release's folders (the same for every root).

        Args:
            root: the dataset folder.

        Returns:
            The image/mask folder pair of each official split.
        """
        del root  # fixed folder names
        return cls.pairs


@register_reader("isic2016", detect_priority=80)
class ISIC2016Reader(_ISICReader):
    """ISIC 2016 (ISBI 2016) Part 1: 900 training and 379 test images.

    Args:
        data_cfg: the data section of the experiment.
        root: the folder holding the ``ISBI2016_ISIC_Part1_*`` folders.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = "ISBI2016_ISIC_Part1_{Training,Test}_Data/ + ..._GroundTruth/"
    pairs = (
        FolderPair(
            "train", "ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth", "_Segmentation"
        ),
        FolderPair("test", "ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth", "_Segmentation"),
    )


@register_reader("isic2017", detect_priority=90)
class ISIC2017Reader(_ISICReader):
    """ISIC 2017 Part 1: 2000 training, 150 validation and 600 test images.

    Args:
        data_cfg: the data section of the experiment.
        root: the folder holding the ``ISIC-2017_*`` folders.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = "ISIC-2017_{Training,Validation,Test_v2}_Data/ + ..._Part1_GroundTruth/"
    pairs = (
        FolderPair("train", "ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth", "_segmentation"),
        FolderPair("val", "ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth", "_segmentation"),
        FolderPair("test", "ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth", "_segmentation"),
    )


@register_reader("isic2018", detect_priority=100)
class ISIC2018Reader(_ISICReader):
    """ISIC 2018 Task 1: 2594 training, 100 validation and 1000 test images.

    Args:
        data_cfg: the data section of the experiment.
        root: the folder holding the ``ISIC2018_Task1*`` folders.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = "ISIC2018_Task1-2_{Training,Validation,Test}_Input/ + ISIC2018_Task1_..._GroundTruth/"
    pairs = (
        FolderPair("train", "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth", "_segmentation"),
        FolderPair(
            "val", "ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth", "_segmentation"
        ),
        FolderPair("test", "ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth", "_segmentation"),
    )
