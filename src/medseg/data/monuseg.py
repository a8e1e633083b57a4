"""MoNuSeg 2018 nuclei (Kumar et al.): the UCTransNet layout and the original release with Aperio XML outlines.

UCTransNet layout: ``{Train_Folder,Val_Folder,Test_Folder}/{img,labelcol}`` (24/6/14; test images are TIF,
the others PNG; masks binary 0/255 PNGs with the image's stem).

Original release: ``MoNuSeg 2018 Training Data/{Tissue Images/*.tif, Annotations/*.xml}`` (30 images; the two
folders may also sit directly in the root) and ``MoNuSegTestData/*.tif`` + ``*.xml`` (14 images). Each XML
file holds one polygon per nucleus (``Region/Vertices/Vertex X= Y=``, pixel coordinates); the binary mask is
their union, drawn at the image's size.
"""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from PIL import Image, ImageDraw

from medseg.data.errors import DataError
from medseg.data.paired import FolderPair, PairedFoldersReader
from medseg.data.readers import CaseRecord
from medseg.data.registry import register_reader

__all__ = ["MoNuSegReader", "rasterize_polygons", "read_aperio_xml"]

Polygon = list[tuple[float, float]]

_UCT_FOLDERS = (("train", "Train_Folder"), ("val", "Val_Folder"), ("test", "Test_Folder"))
_TRAINING = "MoNuSeg 2018 Training Data"
_TEST = "MoNuSegTestData"


def read_aperio_xml(path: Path) -> list[Polygon]:
    """Read the region outlines of an Aperio ImageScope annotation file.

    Args:
        path: the ``.xml`` file.

    Returns:
        One polygon per ``Region``: its ``Vertex`` points as ``(x, y)`` pixel coordinates.

    Raises:
        DataError: a file that is not valid XML, or a vertex without numeric ``X`` and ``Y``.
    """
    try:
        tree = ElementTree.parse(path)
    except (ElementTree.ParseError, OSError) as error:
        raise DataError(f"cannot read annotation file {path}: {error}") from None
    polygons: list[Polygon] = []
    for region in tree.iter("Region"):
        try:
            polygons.append([(float(v.attrib["X"]), float(v.attrib["Y"])) for v in region.iter("Vertex")])
        except (KeyError, ValueError) as error:
            raise DataError(f"annotation file {path} has a vertex without numeric X and Y: {error}") from None
    return polygons


def rasterize_polygons(polygons: list[Polygon], size: tuple[int, int]) -> np.ndarray:
    """Draw filled polygons (outline included) into a binary mask.

    Pixel ``(row y, column x)`` is inside when its centre ``(x, y)`` is inside or on a polygon. Polygons with
    fewer than three vertices are skipped; parts outside the image are clipped.

    Args:
        polygons: each a list of ``(x, y)`` points.
        size: ``(height, width)`` of the mask.

    Returns:
        ``(H, W)`` uint8 mask with values 0 and 1.
    """
    height, width = size
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        if len(polygon) >= 3:
            draw.polygon(polygon, fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8)


@register_reader("monuseg", detect_priority=50)
class MoNuSegReader(PairedFoldersReader):
    """MoNuSeg in the UCTransNet layout (official 24/6/14) or the original release (official 30/14).

    Case ids are the TCGA image names; :meth:`patient_of` groups them by TCGA patient barcode, so seeded
    validation sets never share a patient with training.

    Args:
        data_cfg: the data section of the experiment.
        root: the dataset folder.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = (
        "{Train,Val,Test}_Folder/{img,labelcol}/ (UCTransNet), or 'MoNuSeg 2018 Training Data/"
        "{Tissue Images,Annotations}/' and/or MoNuSegTestData/ with .tif + .xml (original)"
    )

    @classmethod
    def folder_pairs(cls, root: Path) -> tuple[FolderPair, ...]:
        """The UCTransNet folders when ``root`` has any of them, else the original release's.

        Args:
            root: the dataset folder.

        Returns:
            The image/mask folder pair of each official split.
        """
        if any((root / folder).is_dir() for _, folder in _UCT_FOLDERS):
            return tuple(FolderPair(split, f"{folder}/img", f"{folder}/labelcol") for split, folder in _UCT_FOLDERS)
        training = _TRAINING if (root / _TRAINING).is_dir() else "."
        return (
            FolderPair("train", f"{training}/Tissue Images", f"{training}/Annotations", mask_suffixes=(".xml",)),
            FolderPair("test", _TEST, _TEST, mask_suffixes=(".xml",)),
        )

    def patient_of(self, case_id: str) -> str:
        """The TCGA patient barcode of an image (``TCGA-<site>-<participant>``).

        Args:
            case_id: id from :meth:`list_cases`.

        Returns:
            The barcode, or the id itself for names that are not TCGA barcodes.
        """
        match = re.match(r"TCGA-[^-]+-[^-]+", case_id)
        return match.group(0) if match else case_id

    def _mask_file(self, record: CaseRecord) -> Path | None:
        """The mask image (``None`` for XML annotations, which are drawn)."""
        assert record.mask_path is not None
        return None if record.mask_path.suffix.lower() == ".xml" else record.mask_path

    def _raw_mask(self, record: CaseRecord, image_size: tuple[int, int] | None) -> np.ndarray:
        """Read a mask file, or draw the outlines of an XML annotation at the image's size."""
        assert record.mask_path is not None
        if record.mask_path.suffix.lower() != ".xml":
            return super()._raw_mask(record, image_size)
        if image_size is None:
            raise DataError(f"cannot draw the annotations of {record.mask_path}: its image is unreadable")
        return rasterize_polygons(read_aperio_xml(record.mask_path), image_size).astype(np.int64)
