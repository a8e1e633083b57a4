"""CVC-ClinicDB (CVC-612) colonoscopy polyps (Bernal et al. 2015): ``Original/<n>.tif`` + ``Ground Truth/<n>.tif``."""

from __future__ import annotations

from pathlib import Path

from medseg.data.paired import FolderPair, PairedFoldersReader
from medseg.data.registry import register_reader

__all__ = ["CVCClinicDBReader"]


@register_reader("cvc_clinicdb", detect_priority=70)
class CVCClinicDBReader(PairedFoldersReader):
    """CVC-ClinicDB: 612 frames numbered ``1`` .. ``612``, each mask with the same name as its frame.

    Masks are binarised at ``data.mask_threshold`` or 128 when unset. There is no official split; note that the
    frames come from 29 colonoscopy sequences, so a frame-level random split puts near-identical frames of one
    sequence on both sides (the sequence of each frame is not part of the release).

    Args:
        data_cfg: the data section of the experiment.
        root: the folder holding ``Original/`` and ``Ground Truth/``.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = "Original/ + Ground Truth/"
    default_mask_threshold = 128

    @classmethod
    def folder_pairs(cls, root: Path) -> tuple[FolderPair, ...]:
        """The single folder pair, without official split.

        Args:
            root: the dataset folder.

        Returns:
            ``Original`` with ``Ground Truth``.
        """
        del root  # fixed folder names
        return (FolderPair(None, "Original", "Ground Truth"),)

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether ``root`` holds both ``Original/`` and ``Ground Truth/``.

        Args:
            root: the folder.

        Returns:
            ``True`` for the CVC-ClinicDB layout.
        """
        return (root / "Original").is_dir() and (root / "Ground Truth").is_dir()
