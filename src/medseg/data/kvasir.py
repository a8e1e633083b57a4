"""Kvasir-SEG polyps (Jha et al. 2020): ``images/*.jpg``, ``masks/*.jpg``, ``splits/{train,val}.txt``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from medseg.data.errors import DataError
from medseg.data.files import format_names
from medseg.data.image_folder import ImageFolderReader
from medseg.data.registry import register_reader

__all__ = ["KvasirReader"]

KVASIR_MASK_THRESHOLD = 128


@register_reader("kvasir", detect_priority=20)
class KvasirReader(ImageFolderReader):
    """Kvasir-SEG in its official layout.

    Masks are 3-channel JPEGs with compression noise, binarised at ``data.mask_threshold`` or 128 when unset.
    The official split lists 880 training names in ``splits/train.txt`` and 120 in ``splits/val.txt``;
    papers use those 120 as their *test* set, so :meth:`official_split` returns them as ``test`` (validation
    is carved from train by :func:`medseg.data.splits.make_splits`). Without a ``splits`` folder there is no
    official split.

    Args:
        data_cfg: the data section of the experiment.
        root: the resolved dataset folder.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = "images/ + masks/ + kavsir_bboxes.json or splits/{train,val}.txt"
    default_mask_threshold = KVASIR_MASK_THRESHOLD

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether ``root`` holds ``images/``, ``masks/`` and the bounding boxes or the split files.

        Args:
            root: the folder.

        Returns:
            ``True`` for the Kvasir-SEG layout.
        """
        has_splits = (root / "splits" / "train.txt").is_file() and (root / "splits" / "val.txt").is_file()
        return super().matches(root) and ((root / "kavsir_bboxes.json").is_file() or has_splits)

    def _read_names(self, path: Path) -> list[str]:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        unknown = [name for name in names if name not in self._records]
        if unknown:
            raise DataError(f"split file {path} names {len(unknown)} unknown case(s): {format_names(unknown)}")
        return names

    def official_split(self) -> dict[str, list[str]] | None:
        """The official 880/120 split, the 120 as ``test``.

        Returns:
            ``{"train": [...], "test": [...]}``, or ``None`` without a ``splits`` folder.

        Raises:
            DataError: a missing split file, unknown or repeated names, or cases in neither file.
        """
        assert self.root is not None
        folder = self.root / "splits"
        if not folder.is_dir():
            return None
        files = {"train": folder / "train.txt", "test": folder / "val.txt"}
        for path in files.values():
            if not path.is_file():
                raise DataError(f"Kvasir-SEG split file {path} does not exist")
        split = {name: self._read_names(path) for name, path in files.items()}
        seen: set[str] = set()
        for name, path in files.items():
            counts = Counter(split[name])
            repeated = sorted(case for case, count in counts.items() if count > 1 or case in seen)
            if repeated:
                raise DataError(f"split file {path} repeats case(s) already listed: {format_names(repeated)}")
            seen.update(split[name])
        unlisted = [case for case in self._records if case not in seen]
        if unlisted:
            raise DataError(
                f"{len(unlisted)} case(s) of {self.root} are in neither {files['train']} nor "
                f"{files['test']}: {format_names(unlisted)}"
            )
        return {name: sorted(ids) for name, ids in split.items()}
