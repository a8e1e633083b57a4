"""prepare_image (channels, normalisation) and build_transforms (resize, no augmentation, output types)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medseg.config import ConfigError, DataConfig
from medseg.data import DataError, build_transforms, prepare_image
from medseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def config(**overrides: object) -> DataConfig:
    return DataConfig.model_validate(overrides)


def test_channel_conversions() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    repeated = prepare_image(grey, config(transforms={"normalize": "none"}))
    assert repeated.shape == (3, 3, 4) and repeated.dtype == np.float32
    assert (repeated == grey[..., 0]).all()
    assert prepare_image(grey[..., 0], config(transforms={"normalize": "none"})).shape == (3, 3, 4)
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 200, 50
    luminance = prepare_image(rgb, config(in_channels=1, transforms={"normalize": "none"}))
    assert luminance.shape == (1, 2, 2)
    np.testing.assert_allclose(luminance, 0.299 * 100 + 0.587 * 200 + 0.114 * 50, rtol=1e-6)


def test_impossible_channel_conversions_are_errors() -> None:
    with pytest.raises(DataError, match=r"image x\.png has 4 channels; cannot convert .*in_channels=3"):
        prepare_image(np.zeros((2, 2, 4), np.uint8), config(), source="x.png")
    with pytest.raises(DataError, match="has 3 channels"):
        prepare_image(np.zeros((2, 2, 3), np.uint8), config(in_channels=2))
    with pytest.raises(DataError, match="must be"):
        prepare_image(np.zeros((2, 2, 3, 1), np.uint8), config())


def test_normalisations() -> None:
    image = np.array([[[0, 128, 255], [10, 20, 30]]], dtype=np.uint8)
    unit = prepare_image(image, config())
    np.testing.assert_allclose(unit, image.transpose(2, 0, 1) / 255, rtol=1e-6)
    imagenet = prepare_image(image, config(transforms={"normalize": "imagenet"}))
    expected = (image / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(imagenet, expected.transpose(2, 0, 1), rtol=1e-5)
    zscore = prepare_image(image, config(transforms={"normalize": "zscore", "mean": [1, 2, 3], "std": [2, 4, 8]}))
    expected = (image - np.array([1, 2, 3])) / np.array([2, 4, 8])
    np.testing.assert_allclose(zscore, expected.transpose(2, 0, 1), rtol=1e-6)
    minmax = prepare_image(image, config(transforms={"normalize": "minmax"}))
    assert minmax.min() == 0 and minmax.max() == 1
    assert (prepare_image(np.full((2, 2, 3), 9, np.uint8), config(transforms={"normalize": "minmax"})) == 0).all()
    np.testing.assert_array_equal(
        prepare_image(image, config(transforms={"normalize": "none"})), image.transpose(2, 0, 1)
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"transforms": {"normalize": "zscore"}}, r"zscore needs data.transforms.mean"),
        (
            {"transforms": {"normalize": "zscore", "mean": [1, 2], "std": [1, 1, 1]}},
            r"needs data.transforms.mean",
        ),
        (
            {"transforms": {"normalize": "zscore", "mean": [1, 2, 3], "std": [1, 0, 1]}},
            r"std must be positive",
        ),
        ({"in_channels": 1, "transforms": {"normalize": "imagenet"}}, r"imagenet needs data.in_channels=3"),
    ],
)
def test_bad_normalisation_settings(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prepare_image(np.zeros((2, 2, 3), np.uint8), config(**overrides))
    with pytest.raises(ConfigError, match=message):
        build_transforms(config(**overrides))


@pytest.mark.parametrize("native", [(40, 50), (300, 200), (64, 64)])
def test_eval_transform_resizes_to_plain_tensors(native: tuple[int, int]) -> None:
    mask = np.zeros(native, np.int64)
    mask[: native[0] // 2] = 2
    mask[native[0] // 2 :, : native[1] // 3] = 1
    image = np.random.default_rng(0).random((3, *native), dtype=np.float32)
    out = build_transforms(config(image_size=64, num_classes=3))({"image": image, "mask": mask})
    assert type(out["image"]) is torch.Tensor and type(out["mask"]) is torch.Tensor
    assert out["image"].shape == (3, 64, 64) and out["image"].dtype == torch.float32
    assert out["mask"].shape == (64, 64) and out["mask"].dtype == torch.int64
    assert set(out["mask"].unique().tolist()) == {0, 1, 2}
    assert out["image"].min() >= 0 and out["image"].max() <= 1


@pytest.mark.parametrize("native", [(70, 45), (20, 30)])
def test_eval_resize_is_torch_bilinear(native: tuple[int, int]) -> None:
    image = np.random.default_rng(1).random((3, *native), dtype=np.float32)
    out = build_transforms(config(image_size=32))({"image": image})["image"]
    batch = torch.from_numpy(image)[None]
    expected = F.interpolate(batch, size=(32, 32), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out, expected)


def test_eval_transform_accepts_an_image_alone() -> None:
    out = build_transforms(config(image_size=32))({"image": np.ones((1, 50, 70), np.float32)})
    assert set(out) == {"image"} and out["image"].shape == (1, 32, 32)
    torch.testing.assert_close(out["image"], torch.ones(1, 32, 32))


def test_transform_does_not_augment() -> None:
    mask = np.zeros((32, 32), np.int64)
    mask[4:12, 6:26] = 1
    image = np.random.default_rng(2).random((3, 32, 32), dtype=np.float32)
    cfg = config(
        image_size=32,
        transforms={"hflip": 1.0, "vflip": 1.0, "rot90": 1.0, "rotate_degrees": 30, "rotate_prob": 1},
    )
    for _ in range(3):
        out = build_transforms(cfg)({"image": image, "mask": mask})
        torch.testing.assert_close(out["image"], torch.from_numpy(image))
        assert torch.equal(out["mask"], torch.from_numpy(mask))
