"""The 2D dataset readers on their public layouts: ISIC, CVC-ClinicDB, PH2, BUSI, GlaS and MoNuSeg."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.config import DataConfig
from medseg.data import DataError, DatasetReader, build_reader, make_splits
from medseg.data.monuseg import rasterize_polygons, read_aperio_xml
from tests.data import layouts
from tests.data.folders import rgb_image, square_mask, write_image


def reader_for(name: str, root: Path, **overrides: object) -> DatasetReader:
    return build_reader(DataConfig.model_validate({"dataset": name, "root": str(root), **overrides}))


def test_isic2017_ignores_superpixels_and_metadata(tmp_path: Path) -> None:
    reader = reader_for("isic2017", layouts.write_isic2017(tmp_path))
    assert reader.case_ids()[:2] == ["ISIC_0000000", "ISIC_0000001"]
    assert not [case for case in reader.case_ids() if "superpixels" in case]
    record = reader.list_cases()[0]
    assert record.mask_path == tmp_path / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000000_segmentation.png"
    case = reader.load("ISIC_0000100")
    assert case.image.shape == (*layouts.SIZE, 3)
    np.testing.assert_array_equal(case.mask, square_mask(layouts.SIZE, 1))


def test_isic2018_training_only_gets_carved_val_and_test(tmp_path: Path) -> None:
    root = layouts.write_isic2018(tmp_path, train=10, val=0, test=0)
    cfg = DataConfig(dataset="isic2018", root=str(root))
    reader = build_reader(cfg)
    assert reader.official_split() == {"train": reader.case_ids()}
    splits = make_splits(reader, cfg)
    assert {name: len(ids) for name, ids in splits.items()} == {"train": 8, "val": 1, "test": 1}


def test_isic2016_masks_are_capitalised(tmp_path: Path) -> None:
    reader = reader_for("isic2016", layouts.write_isic2016(tmp_path))
    assert reader.list_cases()[0].mask_path.name == "ISIC_0000000_Segmentation.png"
    assert set(reader.official_split()) == {"train", "test"}


def test_isic_missing_masks_are_errors(tmp_path: Path) -> None:
    root = layouts.write_isic2018(tmp_path)
    (root / "ISIC2018_Task1_Test_GroundTruth" / "ISIC_0000201_segmentation.png").unlink()
    with pytest.raises(DataError, match=r"1 image\(s\) in .*Test_Input have no mask .*: ISIC_0000201\.jpg"):
        reader_for("isic2018", root)
    with pytest.raises(DataError, match=r"no image folder of the isic2017 layout .*ISIC-2017_Training_Data"):
        reader_for("isic2017", root)


def test_cvc_masks_are_thresholded(tmp_path: Path) -> None:
    root = layouts.write_cvc(tmp_path, count=3)
    noisy = square_mask(layouts.SIZE)
    noisy[0, :3] = (3, 100, 200)
    write_image(root / "Ground Truth" / "2.tif", noisy)
    reader = reader_for("cvc_clinicdb", root)
    assert reader.case_ids() == ["1", "2", "3"]
    mask = reader.load("2").mask
    assert mask[0, :3].tolist() == [0, 0, 1] and set(np.unique(mask)) == {0, 1}


def test_ph2_reads_one_bit_and_rgb_masks(tmp_path: Path) -> None:
    reader = reader_for("ph2", layouts.write_ph2(tmp_path))
    assert reader.case_ids() == ["IMD002", "IMD003", "IMD009", "IMD016", "IMD022"]
    for case in ("IMD002", "IMD003"):
        np.testing.assert_array_equal(reader.load(case).mask, square_mask(layouts.SIZE, 1))
    assert reader.official_split() is None
    # the images folder itself works as root too
    assert reader_for("ph2", tmp_path / "PH2 Dataset images").case_ids() == reader.case_ids()


def test_ph2_case_without_lesion_mask(tmp_path: Path) -> None:
    root = layouts.write_ph2(tmp_path)
    (root / "PH2 Dataset images" / "IMD009" / "IMD009_lesion" / "IMD009_lesion.bmp").unlink()
    with pytest.raises(DataError, match=r"1 image\(s\) .* have no mask .*: IMD009\.bmp"):
        reader_for("ph2", root)


def test_busi_original_merges_extra_masks_and_leaves_out_normal(tmp_path: Path) -> None:
    reader = reader_for("busi", layouts.write_busi_original(tmp_path))
    assert not [case for case in reader.case_ids() if case.startswith("normal")]
    assert len(reader.case_ids()) == 7
    mask = reader.load("benign (2)").mask
    assert mask[:, :4].all() and mask[:, -4:].all() and not mask[:, 4:-4].any()
    np.testing.assert_array_equal(reader.load("malignant (1)").mask, square_mask(layouts.SIZE, 1))


def test_busi_extra_mask_without_main_mask(tmp_path: Path) -> None:
    root = layouts.write_busi_original(tmp_path)
    write_image(root / "malignant" / "malignant (9)_mask_1.png", square_mask(layouts.SIZE))
    with pytest.raises(DataError, match=r"extra mask\(s\) .*malignant (\S+ )?.*: malignant \(9\)_mask_1\.png"):
        reader_for("busi", root)


def test_busi_benchmark_layout(tmp_path: Path) -> None:
    reader = reader_for("busi", layouts.write_busi_benchmark(tmp_path))
    assert reader.case_ids() == ["benign (1)", "benign (7)", "malignant (3)"]
    assert reader.list_cases()[0].mask_path == tmp_path / "masks" / "0" / "benign (1).png"


def test_glas_original_instance_labels_become_foreground(tmp_path: Path) -> None:
    reader = reader_for("glas", layouts.write_glas_original(tmp_path))
    mask = reader.load("testB_2").mask
    assert set(np.unique(mask)) == {0, 1} and mask[2:5, 2:6].all() and mask[7:10, 8:14].all()
    assert reader.official_split() == {
        "train": [f"train_{n}" for n in range(1, 6)],
        "test": ["testA_1", "testA_2", "testA_3", "testB_1", "testB_2"],
    }
    assert reader.subsets() == {"testA": ["testA_1", "testA_2", "testA_3"], "testB": ["testB_1", "testB_2"]}


def test_glas_split_files_give_train_and_val(tmp_path: Path) -> None:
    root = layouts.write_glas_folders(tmp_path, val=2)
    cfg = DataConfig(dataset="glas", root=str(root))
    splits = make_splits(build_reader(cfg), cfg)
    assert splits["val"] == ["train_1", "train_2"] and splits["train"] == ["train_3", "train_4", "train_5"]
    assert len(splits["test"]) == 5


@pytest.mark.parametrize(
    ("val_text", "message"),
    [("testA_1.png\n", r"names 1 non-training case\(s\): testA_1"), ("train_3.png\n", r"exactly once")],
)
def test_glas_bad_split_files(tmp_path: Path, val_text: str, message: str) -> None:
    root = layouts.write_glas_folders(tmp_path, val=2)
    (root / "splits" / "uagland_val.txt").write_text(val_text)
    with pytest.raises(DataError, match=message):
        reader_for("glas", root).official_split()


def test_glas_names_without_prefix_have_no_split(tmp_path: Path) -> None:
    root = layouts.write_glas_folders(tmp_path)
    write_image(root / "images" / "extra_1.png", rgb_image(layouts.SIZE))
    write_image(root / "masks" / "extra_1.png", square_mask(layouts.SIZE))
    with pytest.raises(DataError, match=r"not named train_<n>.*: extra_1"):
        reader_for("glas", root).official_split()


def test_monuseg_uct_reads_tif_test_images(tmp_path: Path) -> None:
    reader = reader_for("monuseg", layouts.write_monuseg_uct(tmp_path))
    test_case = reader.official_split()["test"][0]
    assert reader.list_cases()[reader.case_ids().index(test_case)].image_path.suffix == ".tif"
    assert reader.load(test_case).image.shape == (*layouts.SIZE, 3)
    assert reader.patient_of("TCGA-2Z-A9J9-01A-01-TS1") == "TCGA-2Z-A9J9"


def test_monuseg_original_rasterises_the_xml_outlines(tmp_path: Path) -> None:
    reader = reader_for("monuseg", layouts.write_monuseg_original(tmp_path))
    assert {name: len(ids) for name, ids in reader.official_split().items()} == {"train": 4, "test": 2}
    mask = reader.load(reader.case_ids()[0]).mask
    np.testing.assert_array_equal(mask, rasterize_polygons(list(layouts.NUCLEI), layouts.SIZE))
    assert mask[1:5, 1:5].all() and mask.sum() > 16


def test_rasterize_polygons() -> None:
    square = [(1.0, 1.0), (4.0, 1.0), (4.0, 4.0), (1.0, 4.0)]
    expected = np.zeros((6, 7), np.uint8)
    expected[1:5, 1:5] = 1
    np.testing.assert_array_equal(rasterize_polygons([square], (6, 7)), expected)
    triangle = rasterize_polygons([[(0.0, 0.0), (6.0, 0.0), (0.0, 6.0)]], (8, 8))
    assert triangle[0, 0] and triangle[0, 6] and triangle[6, 0] and not triangle[5, 5] and not triangle[7, 7]
    clipped = rasterize_polygons(
        [[(-5.0, -5.0), (2.0, -5.0), (2.0, 2.0), (-5.0, 2.0)], [(1.0, 1.0), (2.0, 2.0)]], (4, 4)
    )
    assert clipped[:3, :3].all() and clipped.sum() == 9


def test_read_aperio_xml(tmp_path: Path) -> None:
    path = tmp_path / "a.xml"
    path.write_text(layouts.aperio_xml())
    assert read_aperio_xml(path) == [list(polygon) for polygon in layouts.NUCLEI]
    path.write_text("<Annotations><Region><Vertices><Vertex X='1'/></Vertices></Region></Annotations>")
    with pytest.raises(DataError, match=r"a\.xml has a vertex without numeric X and Y"):
        read_aperio_xml(path)
    path.write_text("<Annotations>")
    with pytest.raises(DataError, match=r"cannot read annotation file .*a\.xml"):
        read_aperio_xml(path)
