"""The image_folder reader: formats, label rules and clear errors for bad folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.config import ConfigError, DataConfig
from medseg.data import DataError, build_reader
from medseg.data.files import to_class_indices
from medseg.data.image_folder import ImageFolderReader
from tests.data.folders import folder_config, rgb_image, square_mask, write_binary_folder, write_image


@pytest.mark.parametrize("ext", [".png", ".jpg", ".JPEG", ".bmp", ".tif", ".TIFF"])
def test_reads_every_format(tmp_path: Path, ext: str) -> None:
    write_image(tmp_path / "images" / f"a{ext}", rgb_image((20, 30)))
    write_image(tmp_path / "masks" / f"a{ext}", square_mask((20, 30)))
    reader = build_reader(folder_config(tmp_path, mask_threshold=128 if ext.lower() in {".jpg", ".jpeg"} else None))
    assert isinstance(reader, ImageFolderReader)
    [record] = reader.list_cases()
    assert record.case_id == "a" and record.image_path == tmp_path / "images" / f"a{ext}"
    case = reader.load("a")
    assert case.image.shape == (20, 30, 3) and case.image.dtype == np.uint8
    assert case.mask.shape == (20, 30) and case.mask.dtype == np.int64
    np.testing.assert_array_equal(case.mask, square_mask((20, 30), value=1))


def test_binary_masks_0_255_become_0_1_and_cases_are_sorted(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, 3)
    reader = build_reader(folder_config(tmp_path))
    assert reader.case_ids() == ["case_00", "case_01", "case_02"]
    assert set(np.unique(reader.load("case_01").mask)) == {0, 1}
    assert reader.describe() == f"image_folder: 3 cases in {tmp_path.resolve()}"


def test_grey_image_keeps_one_channel(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "g.png", np.full((8, 9), 77, np.uint8))
    write_image(tmp_path / "masks" / "g.png", square_mask((8, 9)))
    image = build_reader(folder_config(tmp_path)).load("g").image
    assert image.shape == (8, 9, 1) and image.dtype == np.uint8 and (image == 77).all()


def test_one_bit_masks_are_read_like_0_255(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "b.bmp", rgb_image((10, 12)))
    write_image(tmp_path / "masks" / "b.bmp", square_mask((10, 12)) > 0)
    for threshold in (None, 128):
        mask = build_reader(folder_config(tmp_path, mask_threshold=threshold)).load("b").mask
        np.testing.assert_array_equal(mask, square_mask((10, 12), 1))


def test_multiclass_masks(tmp_path: Path) -> None:
    mask = np.zeros((16, 16), np.uint8)
    mask[:8, :8], mask[8:, 8:], mask[:8, 8:] = 1, 2, 3
    write_image(tmp_path / "images" / "m.png", rgb_image((16, 16)))
    write_image(tmp_path / "masks" / "m.png", mask)
    case = build_reader(folder_config(tmp_path, num_classes=4)).load("m")
    np.testing.assert_array_equal(case.mask, mask)


def test_label_map_maps_raw_values(tmp_path: Path) -> None:
    mask = np.zeros((10, 10), np.uint8)
    mask[:5], mask[5:, :5] = 100, 200
    write_image(tmp_path / "images" / "m.png", rgb_image((10, 10)))
    write_image(tmp_path / "masks" / "m.png", mask)
    case = build_reader(folder_config(tmp_path, num_classes=3, label_map={100: 1, 200: 2})).load("m")
    assert (case.mask[:5] == 1).all() and (case.mask[5:, :5] == 2).all() and (case.mask[5:, 5:] == 0).all()


def test_rgb_mask_with_equal_channels_is_read_as_grey(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "r.png", rgb_image((12, 12)))
    write_image(tmp_path / "masks" / "r.png", np.repeat(square_mask((12, 12))[..., None], 3, axis=-1))
    np.testing.assert_array_equal(build_reader(folder_config(tmp_path)).load("r").mask, square_mask((12, 12), 1))


def test_rgb_mask_with_different_channels_is_an_error(tmp_path: Path) -> None:
    mask = np.zeros((12, 12, 3), np.uint8)
    mask[2:6, 2:6, 0] = 1
    write_image(tmp_path / "images" / "r.png", rgb_image((12, 12)))
    write_image(tmp_path / "masks" / "r.png", mask)
    with pytest.raises(DataError, match=r"r\.png.*channels differ"):
        build_reader(folder_config(tmp_path)).load("r")


def test_threshold_binarises_lossy_jpeg_masks(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "j.jpg", rgb_image((32, 32)))
    yy, xx = np.mgrid[0:32, 0:32]
    disk = (yy - 15.3) ** 2 + (xx - 14.7) ** 2 <= 81
    write_image(tmp_path / "masks" / "j.jpg", disk.astype(np.uint8) * 255)
    without = build_reader(folder_config(tmp_path))
    with pytest.raises(DataError, match=r"j\.jpg has values"):
        without.load("j")
    mask = build_reader(folder_config(tmp_path, mask_threshold=128)).load("j").mask
    assert set(np.unique(mask)) == {0, 1}
    assert (mask != disk).sum() <= 8


def test_missing_mask_is_an_error_naming_the_file(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, 2)
    write_image(tmp_path / "images" / "lonely.png", rgb_image((24, 32)))
    with pytest.raises(DataError, match=r"1 image\(s\) .* no mask .*: lonely\.png"):
        build_reader(folder_config(tmp_path))


def test_mask_without_image_is_an_error(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, 2)
    write_image(tmp_path / "masks" / "orphan.png", square_mask((24, 32)))
    with pytest.raises(DataError, match=r"no image .*orphan\.png"):
        build_reader(folder_config(tmp_path))


def test_size_mismatch_is_an_error(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "s.png", rgb_image((20, 30)))
    write_image(tmp_path / "masks" / "s.png", square_mask((20, 31)))
    with pytest.raises(DataError, match=r"s\.png is 30x20 .* mask .*s\.png is 31x20"):
        build_reader(folder_config(tmp_path)).load("s")


def test_unexpected_mask_values_are_an_error_naming_file_and_values(tmp_path: Path) -> None:
    mask = square_mask((16, 16))
    mask[0, 0] = 128
    write_image(tmp_path / "images" / "v.png", rgb_image((16, 16)))
    write_image(tmp_path / "masks" / "v.png", mask)
    with pytest.raises(DataError, match=r"masks/v\.png has values 128, 255 "):
        build_reader(folder_config(tmp_path)).load("v")
    with pytest.raises(DataError, match=r"v\.png has values 128 .*extend data.label_map"):
        build_reader(folder_config(tmp_path, label_map={255: 1})).load("v")


def test_unreadable_image_is_an_error_naming_the_file(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, 1)
    (tmp_path / "images" / "broken.png").write_bytes(b"this is not a png")
    write_image(tmp_path / "masks" / "broken.png", square_mask((24, 32)))
    reader = build_reader(folder_config(tmp_path))
    with pytest.raises(DataError, match=r"cannot read image .*broken\.png"):
        reader.load("broken")


def test_duplicate_stems_are_an_error(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, 1)
    write_image(tmp_path / "images" / "case_00.jpg", rgb_image((24, 32)))
    with pytest.raises(DataError, match=r"same name stem.*case_00"):
        build_reader(folder_config(tmp_path))


def test_unknown_case_id_is_an_error(tmp_path: Path) -> None:
    reader = build_reader(folder_config(write_binary_folder(tmp_path, 1)))
    with pytest.raises(DataError, match="'nope' is not in the image_folder dataset"):
        reader.load("nope")


def test_missing_folders_and_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data folder .*nowhere does not exist \(data.root="):
        build_reader(folder_config(tmp_path / "nowhere"))
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match=r"no image files in .*images"):
        build_reader(folder_config(tmp_path))
    write_image(tmp_path / "only_images" / "images" / "a.png", rgb_image((4, 4)))
    with pytest.raises(DataError, match=r"mask folder .*only_images/masks does not exist"):
        build_reader(folder_config(tmp_path / "only_images"))
    with pytest.raises(ConfigError, match=r"data\.root is not set"):
        build_reader(DataConfig(dataset="image_folder"))
    with pytest.raises(
        ConfigError, match=r"unknown dataset 'nope'.*valid: auto, acdc, busi, .*image_folder, .*kvasir, .*synthetic"
    ):
        build_reader(DataConfig(dataset="nope"))
    with pytest.raises(ConfigError, match=r"data\.label_map maps to classes outside 0\.\.1"):
        build_reader(folder_config(write_binary_folder(tmp_path / "ok", 1), label_map={255: 2}))


def test_root_expands_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_binary_folder(tmp_path / "set", 1)
    monkeypatch.setenv("MY_DATA", str(tmp_path))
    assert build_reader(folder_config(Path("${MY_DATA}/set"))).case_ids() == ["case_00"]


def test_sixteen_bit_masks_and_wide_values(tmp_path: Path) -> None:
    mask = np.zeros((6, 6), np.uint16)
    mask[:3] = 1000
    write_image(tmp_path / "images" / "w.png", rgb_image((6, 6)))
    write_image(tmp_path / "masks" / "w.png", mask)
    loaded = build_reader(folder_config(tmp_path, label_map={1000: 1})).load("w").mask
    np.testing.assert_array_equal(loaded, (mask > 0).astype(np.int64))
    raw = np.array([[-1, 70000], [0, 70000]])
    np.testing.assert_array_equal(to_class_indices(raw, "x", 3, {-1: 2, 70000: 1}), [[2, 1], [0, 1]])
    with pytest.raises(DataError, match="values -1 "):
        to_class_indices(raw, "x", 3, {70000: 1})


def test_validate_reads_every_mask_without_decoding_images(tmp_path: Path) -> None:
    write_binary_folder(tmp_path, 4)
    bad = square_mask((24, 32))
    bad[0, 0] = 128
    write_image(tmp_path / "masks" / "case_02.png", bad)
    reader = build_reader(folder_config(tmp_path))
    reader.validate(["case_00", "case_01"])
    with pytest.raises(DataError, match=r"case_02\.png has values 128"):
        reader.validate(reader.case_ids())
    write_image(tmp_path / "masks" / "case_02.png", square_mask((24, 31)))
    with pytest.raises(DataError, match=r"case_02\.png is 32x24 .* is 31x24"):
        reader.validate(reader.case_ids())
    (tmp_path / "images" / "case_02.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cannot read image .*case_02\.png"):
        reader.validate(reader.case_ids())
