"""Data: dataset readers, splits, preprocessing, augmentation and the torch dataset.

Typical use::

    reader = build_reader(cfg.data)
    splits = make_splits(reader, cfg.data)
    datasets = build_datasets(reader, splits, cfg.data)
"""

from __future__ import annotations

from medseg.data.dataset import SegmentationDataset, build_datasets
from medseg.data.errors import DataError
from medseg.data.files import read_image, read_mask
from medseg.data.readers import CaseRecord, DatasetReader, LoadedCase
from medseg.data.registry import READERS, build_reader
from medseg.data.splits import load_splits, make_splits, save_splits
from medseg.data.transforms import build_transforms, prepare_image

__all__ = [
    "READERS",
    "CaseRecord",
    "DataError",
    "DatasetReader",
    "LoadedCase",
    "SegmentationDataset",
    "build_datasets",
    "build_reader",
    "build_transforms",
    "load_splits",
    "make_splits",
    "prepare_image",
    "read_image",
    "read_mask",
    "save_splits",
]
