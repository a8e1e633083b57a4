"""Splits: official, carved and seeded; persisted and validated split files; limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.config import DataConfig
from medseg.data import DataError, build_reader, load_splits, make_splits, save_splits
from tests.data.folders import folder_config, square_mask, write_binary_folder, write_image


def counts(splits: dict[str, list[str]]) -> dict[str, int]:
    return {name: len(ids) for name, ids in splits.items()}


def assert_disjoint(splits: dict[str, list[str]]) -> None:
    everything = [case for ids in splits.values() for case in ids]
    assert len(everything) == len(set(everything))


def test_synthetic_uses_its_official_split() -> None:
    cfg = DataConfig()
    splits = make_splits(build_reader(cfg), cfg)
    assert counts(splits) == {"train": 320, "val": 48, "test": 64}
    assert_disjoint(splits)
    assert all(case.startswith(name) for name, ids in splits.items() for case in ids)


def test_image_folder_gets_a_seeded_split(tmp_path: Path) -> None:
    cfg = folder_config(write_binary_folder(tmp_path, 20, size=(4, 4)))
    reader = build_reader(cfg)
    splits = make_splits(reader, cfg)
    assert list(splits) == ["train", "val", "test"]
    assert counts(splits) == {"train": 16, "val": 2, "test": 2}
    assert_disjoint(splits)
    assert sorted(case for ids in splits.values() for case in ids) == reader.case_ids()
    assert make_splits(reader, cfg) == splits
    reseeded = make_splits(reader, cfg.model_copy(update={"split_seed": 1}))
    assert reseeded != splits and counts(reseeded) == counts(splits)


def test_small_fractions_hold_out_at_least_one_case(tmp_path: Path) -> None:
    cfg = folder_config(write_binary_folder(tmp_path, 4, size=(4, 4)))
    assert counts(make_splits(build_reader(cfg), cfg)) == {"train": 2, "val": 1, "test": 1}
    too_few = folder_config(write_binary_folder(tmp_path / "two", 2, size=(4, 4)))
    with pytest.raises(DataError, match=r"2 case.* too few"):
        make_splits(build_reader(too_few), too_few)


def write_kvasir_like(root: Path, train: int, val: int) -> Path:
    names = [f"c{index:03d}" for index in range(train + val)]
    for index, name in enumerate(names):  # distinct images: identical ones would be kept in one split
        write_image(root / "images" / f"{name}.jpg", square_mask((8, 8), 200, 20 + index))
        write_image(root / "masks" / f"{name}.jpg", square_mask((8, 8)))
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(names[:train]) + "\n")
    (root / "splits" / "val.txt").write_text("\n".join(names[train:]) + "\n")
    return root


def test_official_split_without_val_is_carved_from_train(tmp_path: Path) -> None:
    root = write_kvasir_like(tmp_path, train=30, val=6)
    cfg = DataConfig(dataset="kvasir", root=str(root))
    reader = build_reader(cfg)
    splits = make_splits(reader, cfg)
    assert counts(splits) == {"train": 27, "val": 3, "test": 6}
    assert_disjoint(splits)
    assert splits["test"] == sorted((root / "splits" / "val.txt").read_text().split())


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    splits = {"train": ["a", "b"], "val": ["c"], "test": []}
    save_splits(splits, tmp_path / "run" / "splits.json")
    payload = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert payload["counts"] == {"train": 2, "val": 1, "test": 0} and payload["splits"] == splits
    assert load_splits(tmp_path / "run" / "splits.json") == splits


def test_split_file_is_used_and_validated(tmp_path: Path) -> None:
    cfg = folder_config(write_binary_folder(tmp_path / "data", 6, size=(4, 4)))
    reader = build_reader(cfg)
    chosen = {"train": ["case_00", "case_01"], "val": ["case_02"], "test": ["case_05"]}
    save_splits(chosen, tmp_path / "splits.json")
    assert make_splits(reader, cfg.model_copy(update={"split_file": str(tmp_path / "splits.json")})) == chosen

    bad_ids = {"train": ["case_00", "ghost"], "val": [], "test": ["phantom"]}
    save_splits(bad_ids, tmp_path / "bad_ids.json")
    with pytest.raises(DataError, match=r"bad_ids\.json lists 2 case\(s\) that are not .*: ghost, phantom"):
        make_splits(reader, cfg.model_copy(update={"split_file": str(tmp_path / "bad_ids.json")}))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"train": ["a"], "val": ["a"], "test": []}', r"more than once .*: a"),
        ('{"train": ["a"], "test": []}', r"expected exactly train, val, test"),
        ('{"train": ["a"], "val": [], "test": [], "extra": []}', r"expected exactly"),
        ('{"train": [1], "val": [], "test": []}', r"list of case ids"),
        ("not json", r"cannot read split file"),
    ],
)
def test_invalid_split_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "splits.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as error:
        load_splits(path)
    assert str(path) in str(error.value)


def test_missing_split_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"split file .*absent\.json does not exist"):
        load_splits(tmp_path / "absent.json")


def test_limit_keeps_a_deterministic_subset() -> None:
    cfg = DataConfig(limit=5)
    splits = make_splits(build_reader(cfg), cfg)
    assert counts(splits) == {"train": 5, "val": 5, "test": 5}
    assert make_splits(build_reader(cfg), cfg) == splits
    full = make_splits(build_reader(DataConfig()), DataConfig())
    assert all(set(splits[name]) <= set(full[name]) for name in splits)
