"""Kvasir-SEG: the real data (``realdata``) and the reader's checks of its split files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.config import DataConfig
from medseg.data import DataError, build_reader, make_splits
from medseg.data.kvasir import KvasirReader
from tests.data.folders import square_mask, write_image


@pytest.mark.realdata
def test_real_kvasir_cases_split_and_masks(kvasir_root: Path) -> None:
    cfg = DataConfig(dataset="kvasir", root=str(kvasir_root))
    reader = build_reader(cfg)
    assert isinstance(reader, KvasirReader)
    assert len(reader.list_cases()) == 1000
    splits = make_splits(reader, cfg)
    assert {name: len(ids) for name, ids in splits.items()} == {"train": 792, "val": 88, "test": 120}
    assert splits["test"] == sorted((kvasir_root / "splits" / "val.txt").read_text().split())
    train_names = set((kvasir_root / "splits" / "train.txt").read_text().split())
    assert set(splits["train"]) | set(splits["val"]) == train_names
    assert not set(splits["train"]) & set(splits["val"])
    sizes = set()
    for case_id in splits["test"][:6]:
        case = reader.load(case_id)
        assert case.image.ndim == 3 and case.image.shape[2] == 3 and case.image.dtype == np.uint8
        assert case.mask.shape == case.image.shape[:2]
        assert set(np.unique(case.mask)) == {0, 1}
        sizes.add(case.image.shape[:2])
    assert len(sizes) > 1


def write_kvasir(root: Path, names: list[str]) -> None:
    for index, name in enumerate(names):  # distinct images: identical ones would be kept in one split
        write_image(root / "images" / f"{name}.jpg", square_mask((8, 8), 200, 20 + index))
        write_image(root / "masks" / f"{name}.jpg", square_mask((8, 8)))


def test_masks_are_thresholded_at_128_by_default(tmp_path: Path) -> None:
    write_kvasir(tmp_path, ["a"])
    mask = build_reader(DataConfig(dataset="kvasir", root=str(tmp_path))).load("a").mask
    assert set(np.unique(mask)) == {0, 1}


def test_without_split_folder_there_is_no_official_split(tmp_path: Path) -> None:
    write_kvasir(tmp_path, [f"c{index}" for index in range(10)])
    cfg = DataConfig(dataset="kvasir", root=str(tmp_path))
    reader = build_reader(cfg)
    assert reader.official_split() is None
    splits = make_splits(reader, cfg)
    assert {name: len(ids) for name, ids in splits.items()} == {"train": 8, "val": 1, "test": 1}


@pytest.mark.parametrize(
    ("train", "val", "message"),
    [
        ("a\nb\nghost\n", "c\n", r"train\.txt names 1 unknown case\(s\): ghost"),
        ("a\nb\n", "b\nc\n", r"val\.txt repeats .*: b"),
        ("a\n", "c\n", r"in neither .*: b"),
        ("a\nb\n", None, r"val\.txt does not exist"),
    ],
)
def test_bad_split_files_are_errors(tmp_path: Path, train: str, val: str | None, message: str) -> None:
    write_kvasir(tmp_path, ["a", "b", "c"])
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text(train)
    if val is not None:
        (tmp_path / "splits" / "val.txt").write_text(val)
    with pytest.raises(DataError, match=message):
        build_reader(DataConfig(dataset="kvasir", root=str(tmp_path))).official_split()
