"""The torch dataset: reader + case ids + transform -> model-ready tensors."""

from __future__ import annotations

from typing import Any

import torch
from monai.transforms import Compose
from torch.utils.data import Dataset

from medseg.config import DataConfig
from medseg.data.errors import DataError
from medseg.data.files import format_names
from medseg.data.readers import DatasetReader
from medseg.data.transforms import build_transforms, prepare_image

__all__ = ["SegmentationDataset", "build_datasets"]


class SegmentationDataset(Dataset):
    """2D cases of a reader, prepared (:func:`prepare_image`) and transformed.

    The ids are 2D cases: case ids of 2D datasets and slice files, or slice ids ``<volume>:<index>`` of
    volumes (see :func:`build_datasets`). On creation every case is checked with
    :meth:`DatasetReader.validate` (mask values, image/mask sizes, image formats, NaN pixels), so bad files fail
    before training starts; ``medseg data check`` runs the same reader code on every file.
    Random transforms are seeded from ``torch.initial_seed()`` on first use in each process, so every
    DataLoader worker draws its own augmentations and a seeded run is reproducible.

    Args:
        reader: the dataset.
        case_ids: ids of the cases to serve, in order.
        transform: from :func:`build_transforms`.
        data_cfg: settings of :func:`prepare_image`; the reader's when ``None``.

    Raises:
        DataError: ids the reader does not know, or a case that fails validation.
    """

    def __init__(
        self,
        reader: DatasetReader,
        case_ids: list[str],
        transform: Compose,
        data_cfg: DataConfig | None = None,
    ) -> None:
        known = set(reader.case_ids())
        volumes = {case.rpartition(":")[0] for case in case_ids if case not in known} & known
        for volume in volumes:
            if reader.is_volume(volume):
                known.update(reader.slice_ids(volume))
        unknown = [case for case in case_ids if case not in known]
        if unknown:
            raise DataError(f"case(s) not in the {reader.name} dataset: {format_names(unknown)}")
        reader.validate(case_ids)
        self.reader = reader
        self.case_ids = list(case_ids)
        self.transform = transform
        self.data_cfg = data_cfg or reader.data_cfg
        self._seed: int | None = None

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Load, prepare and transform one case.

        Args:
            index: position in :attr:`case_ids`.

        Returns:
            ``{"image": float32 (C, S, S), "mask": int64 (S, S), "case_id": str}``.
        """
        seed = torch.initial_seed()
        if seed != self._seed:
            self.transform.set_random_state(seed=seed % 2**32)
            self._seed = seed
        case = self.reader.load(self.case_ids[index])
        image = prepare_image(case.image, self.data_cfg, case.image_path or case.case_id)
        out = self.transform({"image": image, "mask": case.mask})
        return {"image": out["image"], "mask": out["mask"], "case_id": case.case_id}


def build_datasets(
    reader: DatasetReader, splits: dict[str, list[str]], data_cfg: DataConfig
) -> dict[str, SegmentationDataset]:
    """One dataset per split: ``train`` with training transforms, the others with evaluation transforms.

    Volumes in the splits are expanded to their slices (:meth:`DatasetReader.slice_ids`), so models train and
    validate on 2D slices; 2D cases are served as they are.

    Args:
        reader: the dataset.
        splits: split name -> case ids (from :func:`medseg.data.splits.make_splits`).
        data_cfg: the data section of the experiment.

    Returns:
        Split name -> dataset.
    """
    datasets = {}
    for name, ids in splits.items():
        slices = [slice_id for case in ids for slice_id in reader.slice_ids(case)]
        transform = build_transforms(data_cfg, train=name == "train")
        datasets[name] = SegmentationDataset(reader, slices, transform, data_cfg)
    return datasets
