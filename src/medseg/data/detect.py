"""Recognise a dataset's format from its folder layout."""

from __future__ import annotations

from pathlib import Path

from medseg.data.acdc import ACDCReader
from medseg.data.busi import BUSIReader
from medseg.data.cvc import CVCClinicDBReader
from medseg.data.errors import DataError
from medseg.data.glas import GlaSReader
from medseg.data.image_folder import ImageFolderReader
from medseg.data.isic import ISIC2016Reader, ISIC2017Reader, ISIC2018Reader
from medseg.data.kvasir import KvasirReader
from medseg.data.monuseg import MoNuSegReader
from medseg.data.nnunet import NnUNetReader
from medseg.data.ph2 import PH2Reader
from medseg.data.readers import DatasetReader
from medseg.data.synapse import SynapseReader

__all__ = ["DETECTION_ORDER", "detect_format"]

DETECTION_ORDER: tuple[type[DatasetReader], ...] = (
    NnUNetReader,
    SynapseReader,
    ACDCReader,
    ISIC2018Reader,
    ISIC2017Reader,
    ISIC2016Reader,
    CVCClinicDBReader,
    PH2Reader,
    MoNuSegReader,
    GlaSReader,
    BUSIReader,
    KvasirReader,
    ImageFolderReader,
)
"""Readers tried by :func:`detect_format`, most specific layout first (``image_folder`` matches any
``images/`` + ``masks/`` folder, so it comes last)."""


def detect_format(path: Path) -> str:
    """The reader name of the dataset in a folder, from the signature files of each layout.

    Args:
        path: the dataset folder.

    Returns:
        The name of the first reader of :data:`DETECTION_ORDER` whose layout matches.

    Raises:
        DataError: a missing or empty folder, or a folder that matches no layout (the message lists what was
            looked for).
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"data folder {path} does not exist")
    if all(entry.name.startswith(".") for entry in path.iterdir()):  # nothing, or hidden files only
        raise DataError(f"data folder {path} is empty")
    for reader in DETECTION_ORDER:
        if reader.matches(path):
            return reader.name
    looked_for = "\n".join(f"  {reader.name}: {reader.signature}" for reader in DETECTION_ORDER)
    raise DataError(
        f"cannot tell the dataset format of {path}: it matches none of these layouts\n{looked_for}\n"
        "set data.dataset (or --format) to the reader name if the layout differs"
    )
