"""Every reader on a tiny folder in its public layout: detection, official split, disjoint splits (in cases and
in patients), items of every split, and a clean ``data check``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.config import DataConfig
from medseg.data import READERS, build_datasets, build_reader, check_dataset, detect_format, make_splits
from tests.data import layouts
from tests.data.folders import write_binary_folder

Writer = Callable[[Path], Path]

# id -> (reader name, writer, official split counts or None, number of cases)
LAYOUTS: dict[str, tuple[str, Writer, dict[str, int] | None, int]] = {
    "isic2016": ("isic2016", layouts.write_isic2016, {"train": 4, "test": 3}, 7),
    "isic2017": ("isic2017", layouts.write_isic2017, {"train": 4, "val": 2, "test": 3}, 9),
    "isic2018": ("isic2018", layouts.write_isic2018, {"train": 4, "val": 2, "test": 3}, 9),
    "cvc_clinicdb": ("cvc_clinicdb", layouts.write_cvc, None, 12),
    "ph2": ("ph2", layouts.write_ph2, None, 5),
    "busi-original": ("busi", layouts.write_busi_original, None, 7),
    "busi-benchmark": ("busi", layouts.write_busi_benchmark, None, 3),
    "glas-original": ("glas", layouts.write_glas_original, {"train": 5, "test": 5}, 10),
    "glas-folders": (
        "glas",
        lambda root: layouts.write_glas_folders(root, val=2),
        {"train": 3, "val": 2, "test": 5},
        10,
    ),
    "monuseg-uct": ("monuseg", layouts.write_monuseg_uct, {"train": 3, "val": 2, "test": 2}, 7),
    "monuseg-original": ("monuseg", layouts.write_monuseg_original, {"train": 4, "test": 2}, 6),
    "acdc": ("acdc", layouts.write_acdc, {"train": 18, "val": 2, "test": 4}, 24),
    "synapse": ("synapse", layouts.write_synapse, {"train": 15, "test": 2}, 17),
    "nnunet": ("nnunet", layouts.write_nnunet, None, 5),
    "kvasir": ("kvasir", layouts.write_kvasir, {"train": 8, "test": 3}, 11),
    "image_folder": ("image_folder", lambda root: write_binary_folder(root, 6, size=layouts.SIZE), None, 6),
}


def config(name: str, root: Path, **overrides: object) -> DataConfig:
    volumetric = name in {"acdc", "synapse", "nnunet"}
    settings = {
        "dataset": name,
        "root": str(root),
        "num_classes": READERS[name].default_num_classes(root),
        "image_size": 16,
        "in_channels": 1 if volumetric else 3,
        "transforms": {"normalize": "minmax" if name == "nnunet" else "none" if volumetric else "unit"},
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        **overrides,
    }
    return DataConfig.model_validate(settings)


def test_every_reader_has_a_layout() -> None:
    assert {name for name, *_ in LAYOUTS.values()} | {"synthetic"} == set(READERS)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_reader_on_its_public_layout(tmp_path: Path, layout: str) -> None:
    name, write, official, num_cases = LAYOUTS[layout]
    root = write(tmp_path / layout)
    assert detect_format(root) == name
    cfg = config(name, root)
    reader = build_reader(cfg.model_copy(update={"dataset": "auto"}))
    assert type(reader) is READERS[name]
    assert len(reader.case_ids()) == num_cases
    split = reader.official_split()
    assert (None if split is None else {key: len(ids) for key, ids in split.items()}) == official

    splits = make_splits(reader, cfg)
    everything = [case for ids in splits.values() for case in ids]
    assert len(everything) == len(set(everything)), "a case is in two splits"
    assert sorted(everything) == reader.case_ids()
    patients = {key: {reader.patient_of(case) for case in ids} for key, ids in splits.items()}
    assert not patients["train"] & patients["val"], "a patient is in train and val"
    assert not (patients["train"] | patients["val"]) & patients["test"], "a patient is in test and train/val"
    assert all(splits.values())

    datasets = build_datasets(reader, splits, cfg)
    for key, dataset in datasets.items():
        assert len(dataset) == sum(len(reader.slice_ids(case)) for case in splits[key])
        item = dataset[0]
        assert item["image"].shape == (cfg.in_channels, 16, 16) and item["mask"].shape == (16, 16)
        assert item["mask"].dtype == torch.int64
        assert int(item["mask"].min()) >= 0 and int(item["mask"].max()) < cfg.num_classes

    report = check_dataset(root)
    assert report.ok, report.to_text()
    assert report.format == name and report.num_cases == num_cases
    counts = {key: count.cases for key, count in report.splits.items()}
    assert counts == (official or {"all": num_cases})


@pytest.mark.parametrize("layout", [layout for layout, (name, *_) in LAYOUTS.items() if name != "image_folder"])
def test_masks_hold_foreground(tmp_path: Path, layout: str) -> None:
    name, write, *_ = LAYOUTS[layout]
    root = write(tmp_path / layout)
    reader = build_reader(config(name, root))
    case = reader.case_ids()[-1]
    loaded = reader.load(reader.slice_ids(case)[-1])
    assert loaded.mask.shape == loaded.image.shape[:2]
    assert loaded.mask.dtype == np.int64 and loaded.mask.max() >= 1
