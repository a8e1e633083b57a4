"""The real datasets under ``$MEDSEG_DATA``: detection, counts, official splits and a clean ``data check``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.config import DataConfig
from medseg.data import build_datasets, build_reader, check_dataset, detect_format, make_splits
from tests.realdata import real_dataset

pytestmark = pytest.mark.realdata

# folder -> (format, official split counts (cases) or None, cases)
EXPECTED: dict[str, tuple[str, dict[str, int] | None, int]] = {
    "kvasir-seg": ("kvasir", {"train": 880, "test": 120}, 1000),
    "glas": ("glas", {"train": 75, "val": 10, "test": 80}, 165),
    "monuseg": ("monuseg", {"train": 24, "val": 6, "test": 14}, 44),
    "acdc-h5": ("acdc", {"train": 658, "val": 20, "test": 40}, 718),
    "busi-sample": ("busi", None, 12),
    "ph2-sample": ("ph2", None, 6),
}


@pytest.mark.parametrize("folder", list(EXPECTED))
def test_real_folder_checks_clean(data_root: Path, folder: str) -> None:
    root = real_dataset(data_root, folder)
    name, official, cases = EXPECTED[folder]
    assert detect_format(root) == name
    report = check_dataset(root)
    assert report.ok, report.to_text()
    assert report.format == name and report.num_cases == cases
    assert {split: count.cases for split, count in report.splits.items()} == (official or {"all": cases})


def test_real_glas_subsets_and_splits(glas_root: Path) -> None:
    cfg = DataConfig(dataset="glas", root=str(glas_root))
    reader = build_reader(cfg)
    assert {name: len(ids) for name, ids in reader.subsets().items()} == {"testA": 60, "testB": 20}
    splits = make_splits(reader, cfg)
    assert splits["val"] == sorted(
        Path(line).stem for line in (glas_root / "splits" / "uagland_val.txt").read_text().split()
    )
    assert set(splits["test"]) == set(reader.subsets()["testA"]) | set(reader.subsets()["testB"])


def test_real_acdc_volumes_patients_and_slices(acdc_root: Path) -> None:
    cfg = DataConfig(
        dataset="acdc",
        root=str(acdc_root),
        num_classes=4,
        in_channels=1,
        image_size=32,
        transforms={"normalize": "none"},
    )
    reader = build_reader(cfg)
    splits = make_splits(reader, cfg)
    patients = {name: {reader.patient_of(case) for case in ids} for name, ids in splits.items()}
    assert {name: len(group) for name, group in patients.items()} == {"train": 35, "val": 10, "test": 20}
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"])
    assert not patients["val"] & patients["test"]
    volume = reader.load_volume(splits["val"][0])
    assert volume.image.ndim == 3 and volume.image.dtype == np.float32 and volume.spacing is None
    assert volume.image.min() >= 0 and volume.image.max() <= 1 and set(np.unique(volume.mask)) <= {0, 1, 2, 3}
    last = reader.load(f"{splits['val'][0]}:{len(volume.image) - 1}")
    np.testing.assert_array_equal(last.mask, volume.mask[-1])
    datasets = build_datasets(reader, {"val": splits["val"][:2]}, cfg)
    assert len(datasets["val"]) == sum(len(reader.slice_ids(case)) for case in splits["val"][:2])
    assert datasets["val"][0]["image"].shape == (1, 32, 32)


def test_real_monuseg_test_images_are_tif(monuseg_root: Path) -> None:
    reader = build_reader(DataConfig(dataset="monuseg", root=str(monuseg_root)))
    test = reader.official_split()["test"]
    case = reader.load(test[0])
    assert case.image.shape == (512, 512, 3) and set(np.unique(case.mask)) == {0, 1}


def test_real_ph2_and_busi_masks(ph2_root: Path, busi_root: Path) -> None:
    ph2 = build_reader(DataConfig(dataset="auto", root=str(ph2_root)))
    for case in ph2.case_ids():
        assert set(np.unique(ph2.load(case).mask)) == {0, 1}
    busi = build_reader(DataConfig(dataset="auto", root=str(busi_root)))
    cfg = DataConfig(dataset="busi", root=str(busi_root))
    splits = make_splits(busi, cfg)
    assert {name: len(ids) for name, ids in splits.items()} == {"train": 10, "val": 1, "test": 1}
    assert busi.load("benign (30)").image.shape[2] == 3
