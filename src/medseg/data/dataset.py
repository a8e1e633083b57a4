"""The torch dataset: reader + case ids (+ preprocessed cache) + transform -> model-ready tensors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from medseg.config import DataConfig
from medseg.data.cache import PreparedCache, cacheable, read_entry
from medseg.data.errors import DataError
from medseg.data.files import format_names
from medseg.data.readers import DatasetReader
from medseg.data.transforms import build_transforms, prepare_image
from medseg.runtime import available_cpus

if TYPE_CHECKING:
    from monai.transforms import Compose

__all__ = ["SegmentationDataset", "build_datasets", "resolve_num_workers"]

MAX_AUTO_WORKERS = 8
"""The most DataLoader workers ``data.num_workers: auto`` starts."""


def resolve_num_workers(setting: int | str, cpus: int | None = None) -> int:
    """The number of DataLoader worker processes for ``data.num_workers``.

    ``auto`` starts none on a machine with one or two CPUs: there a worker can only run while the model waits,
    and with the preprocessed cache serving a batch takes milliseconds, so workers only add start-up time and
    compete with the model's threads. With more CPUs it starts one per CPU but one (left to the main process),
    at most :data:`MAX_AUTO_WORKERS`.

    Args:
        setting: ``data.num_workers``: a count, or ``"auto"``.
        cpus: the CPUs this process may use; :func:`medseg.runtime.available_cpus` when ``None``.

    Returns:
        The worker count.
    """
    if setting != "auto":
        return int(setting)
    cpus = available_cpus() if cpus is None else cpus
    return 0 if cpus <= 2 else min(MAX_AUTO_WORKERS, cpus - 1)


def _check_known(reader: DatasetReader, case_ids: list[str]) -> None:
    """Raise :class:`DataError` for ids that are neither cases nor slices ``<volume>:<index>`` of the reader."""
    known = set(reader.case_ids())
    volumes = {case.rpartition(":")[0] for case in case_ids if case not in known} & known
    for volume in volumes:
        if reader.is_volume(volume):
            known.update(reader.slice_ids(volume))
    unknown = [case for case in case_ids if case not in known]
    if unknown:
        raise DataError(f"case(s) not in the {reader.name} dataset: {format_names(unknown)}")


class SegmentationDataset(Dataset):
    """2D cases of a reader, prepared (:func:`prepare_image`) and resized to ``data.image_size``.

    The ids are 2D cases: case ids of 2D datasets and slice files, or slice ids ``<volume>:<index>`` of
    volumes (see :func:`build_datasets`). Items are not augmented: training augments whole batches on the
    training device (:mod:`medseg.data.augment`).

    Without a cache, every item is read from its files, prepared and resized; on creation every case is checked
    with :meth:`DatasetReader.validate` (mask values, image/mask sizes, image formats, NaN pixels), so bad files
    fail before training starts; ``medseg data check`` runs the same reader code on every file. With a
    :class:`~medseg.data.cache.PreparedCache`, the cases missing from it are read, checked and cached on creation
    (:meth:`~medseg.data.cache.PreparedCache.ensure`), and items are read from the memory-mapped entries, which
    hold the same prepared and resized arrays (images to float16 precision, see :mod:`medseg.data.cache`).

    Args:
        reader: the dataset.
        case_ids: ids of the cases to serve, in order.
        transform: the resize of :func:`build_transforms` (used without cache); built from ``data_cfg`` when
            ``None``.
        data_cfg: settings of :func:`prepare_image` and the resize; the reader's when ``None``.
        cache: serve the cases from this cache.

    Raises:
        DataError: ids the reader does not know, or a case that fails validation (or cannot be cached).
    """

    def __init__(
        self,
        reader: DatasetReader,
        case_ids: list[str],
        transform: Compose | None = None,
        data_cfg: DataConfig | None = None,
        cache: PreparedCache | None = None,
    ) -> None:
        _check_known(reader, case_ids)
        self.reader = reader
        self.case_ids = list(case_ids)
        self.data_cfg = data_cfg or reader.data_cfg
        self.cache = cache
        self.transform = transform or build_transforms(self.data_cfg)
        self.entries: list[Path] | None = None
        if cache is None:
            reader.validate(case_ids)
        else:
            self.entries = cache.ensure(self.case_ids).entries

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Read one case from the cache, or load, prepare and resize it.

        Args:
            index: position in :attr:`case_ids`.

        Returns:
            ``{"image": float32 (C, S, S), "mask": int64 (S, S), "case_id": str}``.
        """
        case_id = self.case_ids[index]
        if self.entries is not None:
            image, mask = read_entry(self.entries[index])
            return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask), "case_id": case_id}
        case = self.reader.load(case_id)
        image = prepare_image(case.image, self.data_cfg, case.image_path or case.case_id)
        out = self.transform({"image": image, "mask": case.mask})
        return {"image": out["image"], "mask": out["mask"], "case_id": case_id}


def build_datasets(
    reader: DatasetReader, splits: dict[str, list[str]], data_cfg: DataConfig, cache: bool | None = None
) -> dict[str, SegmentationDataset]:
    """One dataset per split, each serving the prepared and resized cases (augmentation happens on batches).

    Volumes in the splits are expanded to their slices (:meth:`DatasetReader.slice_ids`), so models train and
    validate on 2D slices; 2D cases are served as they are. With the cache, the cases of every split missing from
    it are cached first, in one pass with one progress bar, and every split reads the same cache.

    Args:
        reader: the dataset.
        splits: split name -> case ids (from :func:`medseg.data.splits.make_splits`).
        data_cfg: the data section of the experiment.
        cache: serve the splits from the preprocessed cache (:class:`~medseg.data.cache.PreparedCache` in
            :func:`~medseg.data.cache.cache_root`) when the reader is :func:`~medseg.data.cache.cacheable`;
            ``None``: ``data_cfg.cache``.

    Returns:
        Split name -> dataset.

    Raises:
        DataError: unknown ids, or a case that fails validation (or cannot be cached).
    """
    slices = {name: [slice_id for case in ids for slice_id in reader.slice_ids(case)] for name, ids in splits.items()}
    prepared = None
    if (data_cfg.cache if cache is None else cache) and cacheable(reader):
        everything = list(dict.fromkeys(case for ids in slices.values() for case in ids))
        _check_known(reader, everything)
        prepared = PreparedCache(reader, data_cfg)
        prepared.ensure(everything)
    transform = build_transforms(data_cfg)
    return {name: SegmentationDataset(reader, ids, transform, data_cfg, prepared) for name, ids in slices.items()}
