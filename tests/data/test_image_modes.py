"""Pixel formats: ``medseg data check`` and the torch dataset read images with the same decoder and agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.config import DataConfig
from medseg.data import DataError, build_datasets, build_reader, check_dataset, read_image
from tests.data.folders import folder_config, rgb_image, square_mask, write_image

SIZE = (16, 16)


def write_folder(root: Path, odd_name: str, odd_image: np.ndarray | Image.Image) -> Path:
    """``images/`` + ``masks/`` with two 8-bit RGB cases and one ``odd_name`` image in another format."""
    for index in range(2):
        write_image(root / "images" / f"rgb{index}.png", rgb_image(SIZE, index))
        write_image(root / "masks" / f"rgb{index}.png", square_mask(SIZE))
    image = odd_image if isinstance(odd_image, Image.Image) else Image.fromarray(odd_image)
    image.save(root / "images" / odd_name)
    write_image(root / "masks" / f"{Path(odd_name).stem}.png", square_mask(SIZE))
    return root


def data_config(root: Path) -> DataConfig:
    return folder_config(root, image_size=SIZE[0], in_channels=1)


def grey16() -> np.ndarray:
    """16-bit grey values covering the range: 0, 65535, an 8-bit value stored as 16 bits, and odd values."""
    values = np.arange(SIZE[0] * SIZE[1], dtype=np.uint16).reshape(SIZE) * 251
    values[0, :4] = [0, 65535, 257 * 200, 1]
    return values


def test_16_bit_grey_png_is_accepted_by_check_and_dataset_with_the_documented_scaling(tmp_path: Path) -> None:
    raw = grey16()
    root = write_folder(tmp_path, "deep.png", raw)
    assert Image.open(root / "images" / "deep.png").mode == "I;16"

    report = check_dataset(root)
    assert report.ok, report.to_text()

    image = read_image(root / "images" / "deep.png")
    assert image.dtype == np.float32 and image.shape == (*SIZE, 1)
    np.testing.assert_array_equal(image[..., 0], raw.astype(np.float32) / 257)
    assert image[0, 0, 0] == 0 and image[0, 1, 0] == 255 and image[0, 2, 0] == 200  # 257 * v reads as v

    cfg = data_config(root)
    reader = build_reader(cfg)
    splits = {"train": ["rgb0"], "val": ["deep", "rgb1"], "test": []}
    datasets = build_datasets(reader, splits, cfg, cache=False)  # exact; the cache keeps float16 precision
    served = [datasets["val"][index] for index in range(len(datasets["val"]))]
    assert [item["case_id"] for item in served] == ["deep", "rgb1"]  # nothing skipped
    np.testing.assert_allclose(served[0]["image"][0].numpy(), raw / 65535, atol=1e-6)  # unit: x / 255


def test_8_bit_images_are_read_unchanged(tmp_path: Path) -> None:
    colour, grey = rgb_image(SIZE, 3), rgb_image(SIZE, 4)[..., 0]
    for name, pixels in (("c.png", colour), ("g.png", grey), ("c.bmp", colour)):
        image = read_image(write_image(tmp_path / name, pixels))
        assert image.dtype == np.uint8
        np.testing.assert_array_equal(image, pixels if pixels.ndim == 3 else pixels[..., None])


@pytest.mark.parametrize(
    ("bad", "message"), [(float("nan"), "1 pixel(s) that are NaN or infinite"), (float("inf"), "NaN or infinite")]
)
def test_non_finite_float_tiff_is_refused_by_check_and_dataset_naming_the_file(
    tmp_path: Path, bad: float, message: str
) -> None:
    pixels = np.linspace(0, 1, SIZE[0] * SIZE[1], dtype=np.float32).reshape(SIZE)
    pixels[3, 5] = bad
    root = write_folder(tmp_path, "float.tif", pixels)
    assert Image.open(root / "images" / "float.tif").mode == "F"

    report = check_dataset(root)
    assert not report.ok and len(report.problems) == 1, report.to_text()
    problem = report.problems[0]
    assert "float.tif" in problem and message in problem and "\n" not in problem

    cfg = data_config(root)
    reader = build_reader(cfg)
    with pytest.raises(DataError, match=r"float\.tif has .*NaN or infinite") as error:
        build_datasets(reader, {"train": ["float", "rgb0"], "val": ["rgb1"], "test": []}, cfg)
    assert "\n" not in str(error.value)


def test_finite_float_tiff_is_read_as_stored(tmp_path: Path) -> None:
    pixels = np.linspace(-2, 3, SIZE[0] * SIZE[1], dtype=np.float32).reshape(SIZE)
    root = write_folder(tmp_path, "float.tif", pixels)
    assert check_dataset(root).ok
    image = build_reader(data_config(root)).load("float").image
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image[..., 0], pixels)


def test_32_bit_integer_image_outside_16_bits_is_refused_by_both(tmp_path: Path) -> None:
    pixels = np.full(SIZE, 1000, dtype=np.int32)
    pixels[0, 0] = 70000
    root = write_folder(tmp_path, "wide.tif", pixels)
    assert Image.open(root / "images" / "wide.tif").mode == "I"
    report = check_dataset(root)
    assert len(report.problems) == 1 and "wide.tif" in report.problems[0] and "1000..70000" in report.problems[0]
    cfg = data_config(root)
    with pytest.raises(DataError, match=r"wide\.tif is a 32-bit integer image with values 1000\.\.70000"):
        build_datasets(build_reader(cfg), {"train": ["wide"], "val": ["rgb0"], "test": []}, cfg)


def test_palette_and_grey_alpha_images(tmp_path: Path) -> None:
    palette = Image.new("P", SIZE[::-1])
    palette.putpalette([0, 0, 0, 10, 20, 30])
    palette.putpixel((2, 1), 1)
    palette.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.dtype == np.uint8 and image.shape == (*SIZE, 3)
    assert image[1, 2].tolist() == [10, 20, 30] and image[0, 0].tolist() == [0, 0, 0]
    Image.new("LA", (4, 3), (90, 128)).save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").tolist() == np.full((3, 4, 1), 90).tolist()


def test_16_bit_colour_png_is_read_as_8_bit_by_pillow(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    pixels = np.zeros((*SIZE, 3), np.uint16)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 0xFFFF, 0x1280, 0x00FF  # cv2 writes BGR
    cv2.imwrite(str(tmp_path / "c16.png"), pixels)
    image = read_image(tmp_path / "c16.png")
    assert image.dtype == np.uint8 and image[0, 0].tolist() == [0x00, 0x12, 0xFF]  # the high byte of R, G, B
