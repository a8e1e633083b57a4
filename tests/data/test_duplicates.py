"""Exact duplicate images: seeded splits keep them together, ``medseg data check`` lists them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from medseg.config import DataConfig
from medseg.data import build_reader, check_dataset, make_splits
from medseg.data.files import pixel_hash
from tests.data import layouts
from tests.data.folders import rgb_image


def split_of(splits: dict[str, list[str]], case: str) -> str:
    return next(name for name, ids in splits.items() if case in ids)


def copy_pixels(source: Path, target: Path) -> None:
    """Write ``source``'s pixels to ``target`` as a different file (other PNG compression)."""
    Image.open(source).save(target, compress_level=0)
    assert source.read_bytes() != target.read_bytes()


def write_busi_with_duplicate(root: Path) -> Path:
    """BUSI release layout where ``malignant (4)`` has exactly the pixels of ``benign (5)``."""
    layouts.write_busi_original(root, benign=6, malignant=5, normal=1)
    copy_pixels(root / "benign" / "benign (5).png", root / "malignant" / "malignant (4).png")
    return root


def test_pixel_hash_compares_decoded_pixels() -> None:
    grey = rgb_image((6, 7), 1)[..., 0]
    assert pixel_hash(grey[..., None]) == pixel_hash(np.repeat(grey[..., None], 3, axis=-1))
    changed = grey.copy()
    changed[0, 0] ^= 1
    assert pixel_hash(changed[..., None]) != pixel_hash(grey[..., None])
    assert pixel_hash(grey[..., None]) != pixel_hash(grey.T[..., None])
    assert pixel_hash(grey[..., None]) != pixel_hash(grey[..., None].astype(np.float32))


def test_busi_duplicate_lands_in_one_split_for_every_seed(tmp_path: Path) -> None:
    root = write_busi_with_duplicate(tmp_path)
    cfg = DataConfig(dataset="busi", root=str(root), val_fraction=0.2, test_fraction=0.2)
    reader = build_reader(cfg)
    assert reader.duplicate_groups(reader.case_ids()) == [["benign (5)", "malignant (4)"]]
    for seed in range(40):
        splits = make_splits(reader, cfg.model_copy(update={"split_seed": seed}))
        assert sorted(case for ids in splits.values() for case in ids) == reader.case_ids()
        assert split_of(splits, "benign (5)") == split_of(splits, "malignant (4)"), seed


def test_data_check_lists_the_duplicate_pair(tmp_path: Path) -> None:
    report = check_dataset(write_busi_with_duplicate(tmp_path))
    assert report.ok and report.format == "busi", report.to_text()
    assert report.duplicates == [["benign (5)", "malignant (4)"]]
    assert "  duplicates    1 pair of identical images: benign (5) = malignant (4)" in report.to_text()
    assert report.to_json()["duplicates"] == [["benign (5)", "malignant (4)"]]


def test_data_check_without_duplicates_and_on_volumes(tmp_path: Path) -> None:
    report = check_dataset(layouts.write_busi_original(tmp_path / "busi"))
    assert report.duplicates == [] and "  duplicates    none" in report.to_text()
    volumes = check_dataset(layouts.write_acdc(tmp_path / "acdc"))
    assert volumes.ok and volumes.duplicates is None
    assert "  duplicates    not checked (only 2D image files are compared)" in volumes.to_text()


def test_duplicates_across_an_official_split_are_a_warning_and_the_split_is_kept(tmp_path: Path) -> None:
    root = layouts.write_glas_folders(tmp_path, train=4, test_a=2, test_b=2)
    copy_pixels(root / "images" / "train_2.png", root / "images" / "testA_1.png")
    shutil.copy(root / "images" / "train_2.png", root / "images" / "train_4.png")
    report = check_dataset(root)
    assert report.ok and report.duplicates == [["testA_1", "train_2", "train_4"]], report.to_text()
    assert "1 group of identical images (3 images): testA_1 = train_2 = train_4" in report.to_text()
    assert len(report.warnings) == 1
    assert "testA_1 (test) = train_2 (train) = train_4 (train)" in report.warnings[0]
    cfg = DataConfig(dataset="glas", root=str(root))
    splits = make_splits(build_reader(cfg), cfg)
    assert "testA_1" in splits["test"] and split_of(splits, "train_2") == split_of(splits, "train_4")


def test_validation_carved_from_an_official_train_split_keeps_duplicates_together(tmp_path: Path) -> None:
    root = layouts.write_kvasir(tmp_path, train=10, test=2)
    names = sorted(path.stem for path in (root / "images").iterdir())
    first, second = names[1], names[6]
    shutil.copy(root / "images" / f"{first}.jpg", root / "images" / f"{second}.jpg")
    cfg = DataConfig(dataset="kvasir", root=str(root), val_fraction=0.3)
    reader = build_reader(cfg)
    assert reader.duplicate_groups(reader.case_ids()) == [[first, second]]
    for seed in range(30):
        splits = make_splits(reader, cfg.model_copy(update={"split_seed": seed}))
        assert split_of(splits, first) == split_of(splits, second) and split_of(splits, first) != "test", seed
