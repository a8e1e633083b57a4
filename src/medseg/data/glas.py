"""GlaS / Warwick-QU gland segmentation (Sirinukunwattana et al. 2017), two layouts.

Original release: one folder of ``train_<n>.bmp``, ``testA_<n>.bmp``, ``testB_<n>.bmp`` images, each with its
instance label map ``<name>_anno.bmp`` (0 background, one value per gland), and ``Grade.csv`` (ignored).
Image/mask folders: ``images/<name>.<ext>`` + ``masks/<name>.<ext>`` with the same names, optionally
``splits/uagland_{train,val}.txt`` listing a train/val division of the training images.

Masks are binarised (``> 0``, i.e. threshold 1 unless ``data.mask_threshold`` is set), so instance labels
become foreground. The name prefix gives the official split: ``train`` 85, ``test`` = ``testA`` 60 +
``testB`` 20; with the two split files, ``train`` and ``val`` are theirs.
"""

from __future__ import annotations

import re
from pathlib import Path

from medseg.data.errors import DataError
from medseg.data.files import format_names
from medseg.data.image_folder import ImageFolderReader
from medseg.data.readers import CaseRecord
from medseg.data.registry import register_reader

__all__ = ["GlaSReader"]

_NAME = re.compile(r"(train|testA|testB)_\d+")
_ANNO_SUFFIX = "_anno"
SPLIT_FILES = {"train": "uagland_train.txt", "val": "uagland_val.txt"}


@register_reader("glas", detect_priority=40)
class GlaSReader(ImageFolderReader):
    """GlaS in its original release or as ``images/`` + ``masks/`` (see the module docstring).

    Args:
        data_cfg: the data section of the experiment.
        root: the dataset folder.
        strict: see :class:`medseg.data.readers.DatasetReader`.
    """

    signature = "train_<n>.bmp + train_<n>_anno.bmp (original), or images/ + masks/ with train_*, testA_* names"
    default_mask_threshold = 1

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether ``root`` holds GlaS annotation files, or image/mask folders with GlaS names.

        Args:
            root: the folder.

        Returns:
            ``True`` for either GlaS layout.
        """
        if any(root.glob(f"train_*{_ANNO_SUFFIX}.bmp")):
            return True
        if not super().matches(root):
            return False
        stems = {path.stem for path in (root / "images").iterdir()}
        return any(stem.startswith("train_") for stem in stems) and any(
            stem.startswith(("testA_", "testB_")) for stem in stems
        )

    def _scan(self) -> list[CaseRecord]:
        assert self.root is not None
        if (self.root / "images").is_dir():
            return super()._scan()
        images: dict[str, Path] = {}
        masks: dict[str, Path] = {}
        for path in sorted(self.root.iterdir()):
            if path.suffix.lower() != ".bmp":
                continue
            stem = path.stem.removesuffix(_ANNO_SUFFIX)
            if _NAME.fullmatch(stem):
                (masks if path.stem.endswith(_ANNO_SUFFIX) else images)[stem] = path
        if not images:
            raise DataError(f"no GlaS images (train_<n>.bmp, testA_<n>.bmp, testB_<n>.bmp) in {self.root}")
        return self._pair_files(images, masks, self.root, self.root, f"named <image stem>{_ANNO_SUFFIX}.bmp")

    def _by_prefix(self) -> dict[str, list[str]]:
        """Case ids by name prefix (``train``, ``testA``, ``testB``; ``other`` for names without one)."""
        groups: dict[str, list[str]] = {"train": [], "testA": [], "testB": [], "other": []}
        for case in self._records:
            match = _NAME.fullmatch(case)
            groups[match.group(1) if match else "other"].append(case)
        return groups

    def _split_file(self, path: Path, train: set[str]) -> list[str]:
        names = [Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip()]
        unknown = [name for name in names if name not in train]
        if unknown:
            raise DataError(f"split file {path} names {len(unknown)} non-training case(s): {format_names(unknown)}")
        return names

    def official_split(self) -> dict[str, list[str]]:
        """Train (or train/val from the split files) and test = testA + testB.

        Returns:
            ``{"train": [...], "test": [...]}``, plus ``val`` with the split files.

        Raises:
            DataError: case names without a GlaS prefix, or split files that name non-training cases, repeat
                cases or leave training cases out.
        """
        assert self.root is not None
        groups = self._by_prefix()
        if groups["other"]:
            raise DataError(
                f"{len(groups['other'])} case(s) of {self.root} are not named train_<n>, testA_<n> or "
                f"testB_<n>, so they have no split: {format_names(groups['other'])}"
            )
        split = {"train": groups["train"], "test": sorted(groups["testA"] + groups["testB"])}
        files = {name: self.root / "splits" / file for name, file in SPLIT_FILES.items()}
        if all(path.is_file() for path in files.values()):
            train = set(groups["train"])
            listed = {name: self._split_file(path, train) for name, path in files.items()}
            everything = listed["train"] + listed["val"]
            if len(everything) != len(set(everything)) or set(everything) != train:
                raise DataError(
                    f"{files['train']} and {files['val']} must list each of the {len(train)} training images "
                    f"exactly once (they list {len(everything)}, {len(set(everything))} distinct)"
                )
            split.update({name: sorted(ids) for name, ids in listed.items()})
        return split

    def subsets(self) -> dict[str, list[str]]:
        """The two official test sets.

        Returns:
            ``{"testA": [...], "testB": [...]}``.
        """
        groups = self._by_prefix()
        return {"testA": groups["testA"], "testB": groups["testB"]}
