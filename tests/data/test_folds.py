"""Cross-validation folds: seeded patient folds (data.folds / data.fold) and BUSI's published CMUNeXt folds."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.config import DataConfig
from medseg.data import DataError, build_reader, make_splits
from medseg.data.check import check_dataset
from tests.data.folders import folder_config, write_binary_folder
from tests.data.layouts import write_busi_benchmark


def test_seeded_folds_partition_the_cases_and_hold_out_validation_from_the_rest(tmp_path: Path) -> None:
    root = write_binary_folder(tmp_path, 20, size=(4, 4))
    reader = build_reader(folder_config(root))
    tests = []
    for fold in range(1, 6):
        cfg = folder_config(root, folds=5, fold=fold)
        splits = make_splits(reader, cfg)
        assert {name: len(ids) for name, ids in splits.items()} == {"train": 14, "val": 2, "test": 4}
        assert not set(splits["train"]) & set(splits["val"]) and not set(splits["val"]) & set(splits["test"])
        assert make_splits(reader, cfg) == splits  # seeded: the same folds every time
        tests.append(set(splits["test"]))
    assert set().union(*tests) == set(reader.case_ids()) and sum(map(len, tests)) == 20  # each case tested once
    reseeded = make_splits(reader, folder_config(root, folds=5, fold=1, split_seed=1))
    assert set(reseeded["test"]) != tests[0]


def test_bad_fold_settings_are_one_line_errors(tmp_path: Path) -> None:
    root = write_binary_folder(tmp_path, 6, size=(4, 4))
    reader = build_reader(folder_config(root))
    with pytest.raises(DataError, match=r"data.fold=2 needs data.folds"):
        make_splits(reader, folder_config(root, fold=2))
    with pytest.raises(DataError, match=r"data.fold=4 needs data.folds"):
        make_splits(reader, folder_config(root, folds=3, fold=4))
    synthetic = DataConfig(folds=3, fold=1)
    with pytest.raises(DataError, match="has an official split"):
        make_splits(build_reader(synthetic), synthetic)


def test_busi_uses_its_published_cmunext_folds(tmp_path: Path) -> None:
    names = tuple(f"benign ({n})" for n in range(1, 7)) + tuple(f"malignant ({n})" for n in range(1, 5))
    root = write_busi_benchmark(tmp_path / "busi", names)
    (root / "splits").mkdir()
    for k, test in ((1, names[:5]), (2, names[5:])):
        train = [name for name in names if name not in test]
        (root / "splits" / f"busi_train{k}.txt").write_text("\n".join(train) + "\n")
        (root / "splits" / f"busi_val{k}.txt").write_text("\n".join(test) + "\n")
    base = {"dataset": "busi", "root": str(root), "val_fraction": 0.2}
    reader = build_reader(DataConfig.model_validate(base))
    assert [sorted(fold["test"]) for fold in reader.official_folds() or []] == [sorted(names[:5]), sorted(names[5:])]
    splits = make_splits(reader, DataConfig.model_validate({**base, "fold": 2}))
    assert splits["test"] == sorted(names[5:])
    assert len(splits["val"]) == 1 and sorted(splits["train"] + splits["val"]) == sorted(names[:5])
    with pytest.raises(DataError, match="publishes 2 folds"):
        make_splits(reader, DataConfig.model_validate({**base, "fold": 3}))
    (root / "splits" / "busi_val1.txt").write_text("benign (99)\n")
    with pytest.raises(DataError, match=r"official fold 1 .* not in the dataset: benign \(99\)"):
        make_splits(build_reader(DataConfig.model_validate(base)), DataConfig.model_validate({**base, "fold": 1}))


def test_data_check_lists_the_published_folds(tmp_path: Path) -> None:
    names = ("benign (1)", "benign (2)", "malignant (1)", "malignant (2)")
    root = write_busi_benchmark(tmp_path / "busi", names)
    (root / "busi_train1.txt").write_text("\n".join(names[:3]) + "\n")
    (root / "busi_val1.txt").write_text(names[3] + "\n")
    report = check_dataset(root)
    assert report.folds == [{"train": 3, "test": 1}] and report.to_json()["folds"] == report.folds
    assert "folds         1 published (train/test cases: 3/1; data.fold)" in report.to_text()
    assert report.ok
