"""``check_dataset``: counts, sizes, label values, and every problem of a broken folder in one report."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from medseg.config import ConfigError, DataConfig
from medseg.data import CaseRecord, DataError, DatasetReader, LoadedCase, check_dataset
from tests.data import layouts
from tests.data.folders import rgb_image, square_mask, write_image


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_clean_report_text_and_json(tmp_path: Path) -> None:
    report = check_dataset(layouts.write_glas_folders(tmp_path, val=2))
    assert report.ok and report.format == "glas" and report.detected and report.official
    assert {name: count.cases for name, count in report.splits.items()} == {"train": 3, "val": 2, "test": 5}
    assert {name: count.cases for name, count in report.subsets.items()} == {"testA": 3, "testB": 2}
    assert report.height_range == (12, 12) and report.width_range == (16, 16)
    assert report.label_values == [0, 1] and report.num_classes == 2
    text = report.to_text()
    for line in (
        "format        glas (detected)",
        "val         2 cases",
        "testA       3 cases (subset)",
        "problems      none",
    ):
        assert line in text
    assert text.splitlines()[-1].startswith("OK (")
    payload = json.loads(json.dumps(report.to_json()))
    assert payload["ok"] and payload["splits"]["test"] == {"cases": 5, "volumes": 0, "slices": 5, "patients": 5}


def test_broken_isic_folder_reports_every_problem(tmp_path: Path) -> None:
    root = layouts.write_isic2018(tmp_path)
    (root / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000001_segmentation.png").unlink()
    bad = square_mask(layouts.SIZE)
    bad[0, 0] = 7
    write_image(root / "ISIC2018_Task1_Validation_GroundTruth" / "ISIC_0000100_segmentation.png", bad)
    truncate(root / "ISIC2018_Task1-2_Test_Input" / "ISIC_0000202.jpg")
    write_image(root / "ISIC2018_Task1_Test_GroundTruth" / "ISIC_0000200_segmentation.png", square_mask((12, 17)))
    write_image(root / "ISIC2018_Task1_Test_GroundTruth" / "ISIC_0000999_segmentation.png", square_mask(layouts.SIZE))

    report = check_dataset(root)
    assert not report.ok and len(report.problems) == 5, report.to_text()
    problems = "\n".join(report.problems)
    assert "have no mask" in problems and "ISIC_0000001.jpg" in problems
    assert "ISIC_0000999_segmentation.png" in problems
    assert "ISIC_0000100_segmentation.png has values 7, 255 that are not classes 0..1" in problems
    assert "cannot read image" in problems and "ISIC_0000202.jpg" in problems
    assert "ISIC_0000200.jpg is 16x12 (WxH) but its mask" in problems
    assert {name: count.cases for name, count in report.splits.items()} == {"train": 4, "val": 2, "test": 3}
    assert report.label_values == [0, 7, 255]
    assert report.to_text().splitlines()[-1].startswith("NOT OK: 5 problem(s)")


def test_broken_volumes_are_reported(tmp_path: Path) -> None:
    root = layouts.write_acdc(tmp_path)
    with h5py.File(root / "data" / "patient004_frame01.h5", "r+") as file:
        labels = file["label"][()]
        labels[0, 0, 0] = 7
        file["label"][...] = labels
    truncate(root / "data" / "patient005_frame12.h5")
    (root / "data" / "patient001_frame12_slice_2.h5").unlink()
    layouts.write_h5(root / "data" / "patient006_frame01.h5", np.zeros((3, 4, 4)), np.zeros((3, 4, 5)))

    report = check_dataset(root)
    problems = "\n".join(report.problems)
    assert not report.ok and len(report.problems) == 4, report.to_text()
    assert "train_slices.list names 1 case(s) without a file" in problems and "slice_2" in problems
    assert "patient004_frame01.h5 has values 7 that are not classes 0..3" in problems
    assert "cannot read" in problems and "patient005_frame12.h5" in problems
    assert "patient006_frame01.h5: image shape (3, 4, 4) and label shape (3, 4, 5) do not match" in problems
    val = report.splits["val"]
    assert (val.cases, val.volumes, val.slices, val.patients) == (2, 2, 6, 1)
    assert report.splits["train"].cases == 17 and report.splits["train"].patients == 3


def test_volume_counts_and_patient_overlap(tmp_path: Path) -> None:
    root = layouts.write_synapse(tmp_path, train=(1, 5, 6))
    report = check_dataset(root)
    assert report.num_classes == 9 and report.label_values == list(range(9))
    assert "the official split puts patient(s) in more than one split: case0001" in report.problems
    assert report.splits["test"].describe() == "2 volumes, 6 slices"
    assert report.splits["train"].describe() == "9 cases, 3 patients"


def test_nnunet_classes_come_from_dataset_json(tmp_path: Path) -> None:
    report = check_dataset(layouts.write_nnunet(tmp_path))
    assert report.ok and report.num_classes == 3 and report.label_values == [0, 1, 2]
    assert report.splits["all"].describe() == "5 volumes, 20 slices"
    assert report.height_range == (12, 12) and report.width_range == (16, 16)


def test_missing_masks_in_lenient_listing_are_counted(tmp_path: Path) -> None:
    root = layouts.write_busi_benchmark(tmp_path)
    write_image(root / "images" / "malignant (9).png", rgb_image(layouts.SIZE))
    report = check_dataset(root)
    assert report.num_cases == 4 and report.splits["all"].cases == 4
    assert report.problems == [
        f"1 image(s) in {root / 'images'} have no mask with the same name stem (any of .png, .jpg, .jpeg, .bmp, "
        f".tif, .tiff) in {root / 'masks' / '0'}: malignant (9).png"
    ]


def test_given_format_settings_and_unknown_folders(tmp_path: Path) -> None:
    root = layouts.write_ph2(tmp_path / "ph2")
    report = check_dataset(root, format="isic2018")
    assert not report.ok and not report.detected and "no image folder of the isic2018 layout" in report.problems[0]
    strict = check_dataset(root, data_cfg=DataConfig(mask_threshold=None, num_classes=2, label_map={1: 1}))
    assert strict.ok and strict.format == "ph2"
    unknown = check_dataset(tmp_path / "nothing")
    assert not unknown.ok and unknown.format == "unknown" and "does not exist" in unknown.problems[0]
    assert "format        unknown (detected)" in unknown.to_text()
    with pytest.raises(ConfigError, match=r"unknown dataset format 'nope'"):
        check_dataset(root, format="nope")
    with pytest.raises(ConfigError, match=r"synthetic dataset is generated"):
        check_dataset(root, format="synthetic")


def test_missing_mask_folder_is_reported_with_its_images(tmp_path: Path) -> None:
    root = layouts.write_isic2018(tmp_path)
    for path in (root / "ISIC2018_Task1_Test_GroundTruth").iterdir():
        path.unlink()
    (root / "ISIC2018_Task1_Test_GroundTruth").rmdir()
    report = check_dataset(root)
    assert len(report.problems) == 2 and report.splits["test"].cases == 3
    assert "mask folder" in report.problems[0] and "Test_GroundTruth does not exist" in report.problems[0]
    assert report.problems[1].startswith(f"3 image(s) in {root / 'ISIC2018_Task1-2_Test_Input'} have no mask")


class BrokenReader(DatasetReader):
    """A reader with the default check: one good case and one that cannot be loaded."""

    name = "broken"
    needs_root = False

    def list_cases(self) -> list[CaseRecord]:
        return [CaseRecord("good", None, None), CaseRecord("bad", None, None)]

    def load(self, case_id: str) -> LoadedCase:
        if case_id == "bad":
            raise DataError("bad.png is unreadable")
        return LoadedCase(case_id, np.zeros((3, 5, 1), np.uint8), np.array([[0, 2, 1, 0, 0]] * 3))


def test_default_case_check_loads_the_case() -> None:
    reader = BrokenReader(DataConfig())
    good, bad = reader.check_case("good"), reader.check_case("bad")
    assert good.size == (3, 5) and good.slices == 1 and good.label_values == {0, 1, 2} and not good.problems
    assert bad.size is None and bad.slices == 0 and bad.problems == ["bad.png is unreadable"]
