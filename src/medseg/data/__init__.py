"""Data: dataset readers, splits, preprocessing, augmentation and the torch dataset.

Typical use::

    reader = build_reader(cfg.data)
    splits = make_splits(reader, cfg.data)
    datasets = build_datasets(reader, splits, cfg.data)

``data.dataset: auto`` detects the format (:func:`detect_format`); :func:`check_dataset` reports on a folder.
With ``data.cache`` (the default) the datasets serve the prepared cases from the preprocessed cache
(:class:`PreparedCache`), built on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medseg.data.cache import PreparedCache, cache_root
    from medseg.data.check import DatasetCheck, SplitCount, check_dataset
    from medseg.data.dataset import SegmentationDataset, build_datasets, resolve_num_workers
    from medseg.data.detect import detect_format, detection_order
    from medseg.data.errors import DataError
    from medseg.data.files import read_image, read_mask
    from medseg.data.readers import CaseCheck, CaseRecord, DatasetReader, LoadedCase, LoadedVolume
    from medseg.data.registry import READERS, build_reader, register_reader
    from medseg.data.splits import load_splits, make_splits, save_splits
    from medseg.data.transforms import build_transforms, prepare_image

# Imported on first use, so that the modules without torch (files, errors) load without it: the ONNX Runtime
# predictor reads images through medseg.data.files.
_EXPORTS = {
    "PreparedCache": "cache",
    "cache_root": "cache",
    "DatasetCheck": "check",
    "SplitCount": "check",
    "check_dataset": "check",
    "SegmentationDataset": "dataset",
    "build_datasets": "dataset",
    "resolve_num_workers": "dataset",
    "detect_format": "detect",
    "detection_order": "detect",
    "DataError": "errors",
    "read_image": "files",
    "read_mask": "files",
    "CaseCheck": "readers",
    "CaseRecord": "readers",
    "DatasetReader": "readers",
    "LoadedCase": "readers",
    "LoadedVolume": "readers",
    "READERS": "registry",
    "build_reader": "registry",
    "register_reader": "registry",
    "load_splits": "splits",
    "make_splits": "splits",
    "save_splits": "splits",
    "build_transforms": "transforms",
    "prepare_image": "transforms",
}

__all__ = [
    "READERS",
    "CaseCheck",
    "CaseRecord",
    "DataError",
    "DatasetCheck",
    "DatasetReader",
    "LoadedCase",
    "LoadedVolume",
    "PreparedCache",
    "SegmentationDataset",
    "SplitCount",
    "build_datasets",
    "build_reader",
    "build_transforms",
    "cache_root",
    "check_dataset",
    "detect_format",
    "detection_order",
    "load_splits",
    "make_splits",
    "prepare_image",
    "read_image",
    "read_mask",
    "register_reader",
    "resolve_num_workers",
    "save_splits",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
