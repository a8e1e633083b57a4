"""Volumetric readers (ACDC, Synapse, nnU-Net): volumes, slice ids, spacing, splits by patient, slice datasets."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.config import DataConfig
from medseg.data import (
    DataError,
    DatasetReader,
    build_datasets,
    build_reader,
    make_splits,
    prepare_image,
    save_splits,
)
from tests.data import layouts
from tests.data.folders import write_binary_folder


def reader_for(name: str, root: Path, **overrides: object) -> DatasetReader:
    settings = {"dataset": name, "root": str(root), "num_classes": {"acdc": 4, "synapse": 9}.get(name, 3)}
    return build_reader(DataConfig.model_validate({**settings, **overrides}))


def acdc_config(root: Path, **overrides: object) -> DataConfig:
    settings = {"dataset": "acdc", "root": str(root), "num_classes": 4, "in_channels": 1, "image_size": 16}
    return DataConfig.model_validate({**settings, "transforms": {"normalize": "none"}, **overrides})


def test_acdc_slices_volumes_and_lists(tmp_path: Path) -> None:
    reader = reader_for("acdc", layouts.write_acdc(tmp_path))
    split = reader.official_split()
    assert split["val"] == ["patient004_frame01", "patient004_frame12"]
    assert split["train"][:2] == ["patient001_frame01_slice_1", "patient001_frame01_slice_2"]
    assert not reader.is_volume("patient001_frame01_slice_1") and reader.is_volume("patient005_frame12")
    assert reader.slice_ids("patient001_frame01_slice_1") == ["patient001_frame01_slice_1"]
    assert reader.slice_ids("patient005_frame12") == [f"patient005_frame12:{k}" for k in range(3)]
    assert {reader.patient_of(case) for case in split["test"]} == {"patient005", "patient006"}

    volume = reader.load_volume("patient005_frame12")
    assert volume.image.shape == (3, 15, 9) and volume.image.dtype == np.float32
    assert volume.mask.dtype == np.int64 and set(np.unique(volume.mask)) == {0, 1, 2, 3}
    assert volume.spacing is None
    piece = reader.load("patient005_frame12:2")
    np.testing.assert_array_equal(piece.image[..., 0], volume.image[2])
    np.testing.assert_array_equal(piece.mask, volume.mask[2])
    training = reader.load("patient002_frame01_slice_3")
    assert training.image.shape == (12, 9, 1) and training.image.dtype == np.float32
    assert training.image.min() >= 0 and training.image.max() <= 1


@pytest.mark.parametrize(
    ("case_id", "message"),
    [
        ("patient005_frame12", r"is a volume: load it with load_volume\(\) or .*patient005_frame12:2"),
        ("patient005_frame12:3", r"volume patient005_frame12 has only 3 slices"),
        ("patient005_frame12:x", r"not in the acdc dataset"),
        ("patient099_frame01:0", r"not in the acdc dataset"),
    ],
)
def test_acdc_bad_ids(tmp_path: Path, case_id: str, message: str) -> None:
    reader = reader_for("acdc", layouts.write_acdc(tmp_path))
    with pytest.raises(DataError, match=message):
        reader.load(case_id)


def test_2d_readers_have_no_volumes(tmp_path: Path) -> None:
    reader = build_reader(DataConfig(dataset="image_folder", root=str(write_binary_folder(tmp_path, 2))))
    assert not reader.is_volume("case_00") and reader.slice_ids("case_00") == ["case_00"]
    assert reader.patient_of("case_00") == "case_00" and reader.subsets() == {}
    with pytest.raises(DataError, match=r"'case_00' of the image_folder dataset is not a volume"):
        reader.load_volume("case_00")
    with pytest.raises(DataError, match=r"is a 2D slice file, not a volume"):
        reader_for("acdc", layouts.write_acdc(tmp_path / "acdc")).load_volume("patient001_frame01_slice_1")


def test_acdc_splits_keep_volumes_and_datasets_serve_slices(tmp_path: Path) -> None:
    cfg = acdc_config(layouts.write_acdc(tmp_path))
    reader = build_reader(cfg)
    splits = make_splits(reader, cfg)
    assert {name: len(ids) for name, ids in splits.items()} == {"train": 18, "val": 2, "test": 4}
    save_splits(splits, tmp_path / "splits.json")
    assert json.loads((tmp_path / "splits.json").read_text())["splits"]["val"] == splits["val"]
    datasets = build_datasets(reader, splits, cfg)
    assert {name: len(dataset) for name, dataset in datasets.items()} == {"train": 18, "val": 6, "test": 12}
    item = datasets["val"][5]
    assert item["case_id"] == "patient004_frame12:2" and item["image"].shape == (1, 16, 16)
    assert float(item["image"].min()) >= 0 and float(item["image"].max()) <= 1


def test_acdc_without_lists_splits_by_patient(tmp_path: Path) -> None:
    root = layouts.write_acdc(tmp_path, train=(1, 2, 3, 7, 8), val=(4, 9), test=(5, 6, 10))
    for path in root.glob("*.list"):
        path.unlink()
    cfg = acdc_config(root, val_fraction=0.2, test_fraction=0.2)
    reader = build_reader(cfg)
    assert reader.official_split() is None
    splits = make_splits(reader, cfg)
    patients = {name: {reader.patient_of(case) for case in ids} for name, ids in splits.items()}
    assert {name: len(ids) for name, ids in patients.items()} == {"train": 6, "val": 2, "test": 2}
    assert not patients["train"] & patients["val"] and not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]


def test_acdc_lists_that_mix_patients_are_rejected(tmp_path: Path) -> None:
    root = layouts.write_acdc(tmp_path)
    with (root / "val.list").open("a") as handle:
        handle.write("patient005_frame01\n")
    cfg = acdc_config(root)
    reader = build_reader(cfg)
    with pytest.raises(DataError, match=r"more than once .*patient005_frame01"):
        make_splits(reader, cfg)
    (root / "val.list").write_text("patient004_frame01\n")
    (root / "test.list").write_text("patient004_frame12\npatient005_frame01\n")
    with pytest.raises(DataError, match=r"official split of the acdc dataset puts patient\(s\) .*: patient004"):
        make_splits(build_reader(cfg), cfg)


def test_acdc_list_naming_a_missing_file(tmp_path: Path) -> None:
    root = layouts.write_acdc(tmp_path)
    (root / "data" / "patient002_frame12_slice_2.h5").unlink()
    with pytest.raises(DataError, match=r"train_slices\.list names 1 case\(s\) without a file .*slice_2"):
        reader_for("acdc", root)


def test_synapse_float_labels_and_validation_by_case(tmp_path: Path) -> None:
    root = layouts.write_synapse(tmp_path)
    cfg = DataConfig(dataset="synapse", root=str(root), num_classes=9, val_fraction=0.2)
    reader = build_reader(cfg)
    case = reader.load("case0005_slice001")
    assert case.mask.dtype == np.int64 and set(np.unique(case.mask)) == set(range(9))
    assert reader.patient_of("case0005_slice001") == "case0005" == reader.patient_of("case0005:3")
    assert reader.load_volume("case0002").image.shape == (3, *layouts.SIZE)
    splits = make_splits(reader, cfg)
    assert splits["test"] == ["case0001", "case0002"]
    val_cases = {reader.patient_of(case) for case in splits["val"]}
    assert len(val_cases) == 1 and len(splits["val"]) == 3
    assert not val_cases & {reader.patient_of(case) for case in splits["train"]}


def test_synapse_without_lists_and_test_volumes(tmp_path: Path) -> None:
    root = layouts.write_synapse(tmp_path)
    for path in (root / "lists" / "lists_Synapse").iterdir():
        path.unlink()
    for path in (root / "test_vol_h5").iterdir():
        path.unlink()
    cfg = DataConfig(dataset="synapse", root=str(root), num_classes=9, val_fraction=0.2, test_fraction=0.2)
    reader = build_reader(cfg)
    assert reader.official_split() == {"train": reader.case_ids()}
    splits = make_splits(reader, cfg)
    patients = [{reader.patient_of(case) for case in ids} for ids in splits.values()]
    assert [len(group) for group in patients] == [3, 1, 1] and len(set().union(*patients)) == 5


def test_synapse_non_integer_labels(tmp_path: Path) -> None:
    root = layouts.write_synapse(tmp_path, train=(5,), test=())
    np.savez(root / "train_npz" / "case0005_slice001.npz", image=np.zeros((4, 4)), label=np.full((4, 4), 0.5))
    with pytest.raises(DataError, match=r"case0005_slice001\.npz hold non-integer values"):
        reader_for("synapse", root).load("case0005_slice001")


def test_nnunet_orientation_spacing_and_classes(tmp_path: Path) -> None:
    root = layouts.write_nnunet(tmp_path, shape=(16, 12, 4), spacing=(0.8, 0.7, 2.5))
    reader = reader_for("nnunet", root)
    assert reader.default_num_classes(root) == 3
    assert reader.case_ids() == [f"liver_{index:03d}" for index in range(5)]
    volume = reader.load_volume("liver_001")
    stored = np.asanyarray(nib.load(root / "imagesTr" / "liver_001_0000.nii.gz").dataobj)
    assert volume.image.shape == (4, 12, 16) and volume.spacing == pytest.approx((2.5, 0.7, 0.8))
    np.testing.assert_allclose(volume.image[3], stored[:, :, 3].T)
    piece = reader.load("liver_001:3")
    assert piece.image.shape == (12, 16, 1)
    np.testing.assert_array_equal(piece.mask, volume.mask[3])
    assert set(np.unique(volume.mask)) == {0, 1, 2}


def test_nnunet_channels_and_missing_files(tmp_path: Path) -> None:
    root = layouts.write_nnunet(tmp_path, channels=2)
    reader = reader_for("nnunet", root)
    assert reader.load("liver_000:0").image.shape == (12, 16, 2)
    assert reader.load_volume("liver_000").image.shape == (4, 12, 16, 2)
    (root / "imagesTr" / "liver_003_0001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"lack channel files .*: liver_003"):
        reader_for("nnunet", root)
    (root / "labelsTr" / "liver_003.nii.gz").unlink()
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "labels": {"0": "background", "1": "liver"}}))
    lenient = type(reader)(DataConfig(dataset="nnunet", root=str(root), num_classes=2), root, strict=False)
    assert len(lenient.case_ids()) == 4 and "liver_003" in " ".join(lenient.problems)
    (root / "dataset.json").write_text(json.dumps({**meta, "file_ending": ".mha"}))
    with pytest.raises(DataError, match=r"file_ending '\.mha' is not supported"):
        reader_for("nnunet", root)


def test_float_images_in_unit_range_pass_through_with_normalize_none(tmp_path: Path) -> None:
    reader = reader_for("acdc", layouts.write_acdc(tmp_path))
    image = reader.load("patient005_frame01:1").image
    cfg = acdc_config(tmp_path)
    prepared = prepare_image(image, cfg)
    assert prepared.shape == (1, *image.shape[:2]) and prepared.dtype == np.float32
    np.testing.assert_array_equal(prepared[0], image[..., 0])
    three = prepare_image(image, cfg.model_copy(update={"in_channels": 3}))
    assert three.shape == (3, *image.shape[:2]) and (three == prepared).all()
