"""Batch augmentation on tensors: exact flips and quarter turns, label-safe warps, seeding, probabilities and the
meaning of the intensity augmentations in the normalised space."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.config import DataConfig
from medseg.data import prepare_image
from medseg.data.augment import BatchAugment, batch_generator, black_level

GEOMETRY = {"hflip": 0.5, "vflip": 0.5, "rot90": 0.5, "rotate_degrees": 30, "rotate_prob": 0.5, "scale_prob": 0.5}
LIGHT = {"brightness_prob": 0.5, "contrast_prob": 0.5, "gamma_prob": 0.5, "blur_prob": 0.5, "noise_prob": 0.5}


def config(normalize: str = "unit", **transforms: object) -> DataConfig:
    """Every augmentation off unless given (the defaults flip with probability 0.5)."""
    settings = {"normalize": normalize, "hflip": 0.0, "vflip": 0.0, **transforms}
    return DataConfig.model_validate({"image_size": 16, "transforms": settings})


def batch(n: int = 8, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, size, size, generator=generator)
    mask = torch.randint(0, 4, (n, size, size), generator=generator)
    return image, mask


def test_flips_and_quarter_turns_equal_numpy() -> None:
    augment = BatchAugment(config(hflip=0.5, vflip=0.5, rot90=0.5))
    image, mask = batch(16)
    seen = set()
    for index in range(20):
        draws = augment.draw(16, batch_generator(0, 0, index))
        out_image, out_mask = augment.apply(image, mask, draws)
        for i in range(16):
            expected_image, expected_mask = image[i].numpy(), mask[i].numpy()
            flips = (bool(draws.hflip[i]), bool(draws.vflip[i]), int(draws.rot90_k[i]))
            if flips[0]:
                expected_image, expected_mask = np.flip(expected_image, -1), np.flip(expected_mask, -1)
            if flips[1]:
                expected_image, expected_mask = np.flip(expected_image, -2), np.flip(expected_mask, -2)
            expected_image = np.rot90(expected_image, flips[2], axes=(-2, -1))
            expected_mask = np.rot90(expected_mask, flips[2], axes=(-2, -1))
            np.testing.assert_array_equal(out_image[i].numpy(), expected_image)
            np.testing.assert_array_equal(out_mask[i].numpy(), expected_mask)
            seen.add(flips)
    assert len(seen) == 16  # every combination of the two flips and 0-3 quarter turns was checked


def test_rotation_and_zoom_keep_labels_and_move_image_and_mask_together() -> None:
    mask = torch.zeros(6, 32, 32, dtype=torch.long)
    mask[:, 4:14, 6:26] = 1
    mask[:, 18:28, 8:20] = 2
    mask[:, 20:30, 22:30] = 3
    image = mask.unsqueeze(1).repeat(1, 3, 1, 1).float()
    augment = BatchAugment(config(rotate_degrees=45, rotate_prob=1, scale_prob=1, scale=(0.7, 1.4)))
    out_image, out_mask = augment(image, mask, batch_generator(3, 0, 0))
    assert out_mask.dtype == torch.int64 and set(out_mask.unique().tolist()) <= {0, 1, 2, 3}
    for i in range(6):
        assert not torch.equal(out_mask[i], mask[i])
        assert (out_image[i, 0].round() == out_mask[i]).float().mean() > 0.9


def test_zero_padding_outside_the_rotated_image() -> None:
    image, mask = torch.ones(1, 3, 32, 32), torch.ones(1, 32, 32, dtype=torch.long)
    draws = BatchAugment(config(rotate_degrees=45, rotate_prob=1)).draw(1, batch_generator(0, 0, 0))
    draws.angle[0] = math.pi / 4
    out_image, out_mask = BatchAugment(config(rotate_degrees=45, rotate_prob=1)).apply(image, mask, draws)
    assert out_image[0, :, 0, 0].tolist() == [0, 0, 0] and out_mask[0, 0, 0] == 0
    assert out_image[0, :, 16, 16].tolist() == [1, 1, 1] and out_mask[0, 16, 16] == 1


def test_same_seed_same_batch_and_any_other_seed_epoch_or_batch_differs() -> None:
    augment = BatchAugment(config(**GEOMETRY, **LIGHT))
    image, mask = batch()

    def run(seed: int, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return augment(image, mask, batch_generator(seed, epoch, index))

    reference = run(0, 0, 0)
    repeated = run(0, 0, 0)
    assert torch.equal(reference[0], repeated[0]) and torch.equal(reference[1], repeated[1])
    for other in (run(1, 0, 0), run(0, 1, 0), run(0, 0, 1)):
        assert not torch.equal(reference[0], other[0])


def test_probability_zero_never_changes_a_batch() -> None:
    settings = {key: 0.0 for key in (*GEOMETRY, *LIGHT)}
    augment = BatchAugment(config(**settings))
    assert not augment.enabled
    image, mask = batch()
    for index in range(5):
        out_image, out_mask = augment(image, mask, batch_generator(0, 0, index))
        assert torch.equal(out_image, image) and torch.equal(out_mask, mask)


@pytest.mark.parametrize(
    "setting",
    [
        {"hflip": 1.0},
        {"vflip": 1.0},
        {"rot90": 1.0},
        {"rotate_degrees": 30, "rotate_prob": 1.0},
        {"scale_prob": 1.0},
        {"brightness_prob": 1.0},
        {"contrast_prob": 1.0},
        {"gamma_prob": 1.0},
        {"blur_prob": 1.0},
        {"noise_prob": 1.0},
    ],
)
def test_probability_one_changes_every_image(setting: dict[str, float]) -> None:
    augment = BatchAugment(config(**setting))
    image, mask = batch()
    out_image, _ = augment(image, mask, batch_generator(0, 0, 0))
    for i in range(len(image)):
        assert not torch.equal(out_image[i], image[i])


def test_probabilities_are_respected() -> None:
    probability = 0.3
    settings = {key: probability for key in (*GEOMETRY, *LIGHT) if key != "rotate_degrees"}
    augment = BatchAugment(config(rotate_degrees=10, **settings))
    draws = augment.draw(4000, batch_generator(0, 0, 0))
    for chosen in (draws.hflip, draws.vflip, draws.rot90_k > 0, draws.brightness, draws.contrast, draws.gamma):
        assert abs(chosen.float().mean().item() - probability) < 0.03
    for chosen in (draws.blur, draws.noise, draws.angle != 0, draws.scale != 1):
        assert abs(chosen.float().mean().item() - probability) < 0.03
    turns = draws.rot90_k[draws.rot90_k > 0]
    assert set(turns.tolist()) == {1, 2, 3} and max(abs((turns == k).float().mean() - 1 / 3) for k in (1, 2, 3)) < 0.05
    assert draws.angle.abs().max() <= math.radians(10)
    zoomed = draws.scale[draws.scale != 1]
    assert zoomed.min() >= 0.7 and zoomed.max() <= 1.4


def test_intensity_augmentations_leave_masks_alone() -> None:
    augment = BatchAugment(config(**{key: 1.0 for key in LIGHT}))
    image, mask = batch()
    out_image, out_mask = augment(image, mask, batch_generator(0, 0, 0))
    assert torch.equal(out_mask, mask) and not torch.equal(out_image, image)


def test_without_intensity_only_geometry_runs() -> None:
    augment = BatchAugment(config(**{key: 1.0 for key in LIGHT}), intensity=False)
    assert not augment.enabled
    augment = BatchAugment(config(hflip=1.0, **{key: 1.0 for key in LIGHT}), intensity=False)
    image, mask = batch()
    out_image, out_mask = augment(image, mask, batch_generator(0, 0, 0))
    assert torch.equal(out_image, image.flip(-1)) and torch.equal(out_mask, mask.flip(-1))


@pytest.mark.parametrize("normalize", ["unit", "imagenet", "zscore"])
def test_brightness_multiplies_the_raw_intensities(normalize: str) -> None:
    extra = {"mean": [100.0, 120.0, 90.0], "std": [50.0, 60.0, 40.0]} if normalize == "zscore" else {}
    cfg = config(normalize, brightness_prob=1.0, **extra)
    raw = np.random.default_rng(0).integers(0, 200, (16, 16, 3)).astype(np.float32)
    image = torch.from_numpy(prepare_image(raw, cfg))[None]
    augment = BatchAugment(cfg)
    draws = augment.draw(1, batch_generator(0, 0, 0))
    out, _ = augment.apply(image, torch.zeros(1, 16, 16, dtype=torch.long), draws)
    expected = prepare_image(raw * draws.brightness_value.item(), cfg)
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert len(black_level(cfg)) == 3


def test_contrast_keeps_channel_means_and_gamma_keeps_channel_ranges() -> None:
    image, mask = batch()
    contrast = BatchAugment(config(contrast_prob=1.0))
    out, _ = contrast(image, mask, batch_generator(0, 0, 0))
    torch.testing.assert_close(out.mean((-2, -1)), image.mean((-2, -1)))
    assert not torch.allclose(out.std((-2, -1)), image.std((-2, -1)))
    gamma = BatchAugment(config(gamma_prob=1.0))
    draws = gamma.draw(8, batch_generator(0, 0, 0))
    out, _ = gamma.apply(image, mask, draws)
    torch.testing.assert_close(out.amin((-2, -1)), image.amin((-2, -1)))
    torch.testing.assert_close(out.amax((-2, -1)), image.amax((-2, -1)))
    low, high = image.amin((-2, -1), keepdim=True), image.amax((-2, -1), keepdim=True)
    expected = ((image - low) / (high - low)) ** draws.gamma_value.view(-1, 1, 1, 1) * (high - low) + low
    torch.testing.assert_close(out, expected)


def test_blur_is_a_normalised_gaussian_per_image() -> None:
    image = torch.zeros(4, 1, 15, 15)
    image[:, :, 7, 7] = 1.0
    augment = BatchAugment(config(blur_prob=1.0, blur_sigma=(0.5, 2.0)))
    draws = augment.draw(4, batch_generator(0, 0, 0))
    out, _ = augment.apply(image, torch.zeros(4, 15, 15, dtype=torch.long), draws)
    offsets = torch.arange(-6, 7, dtype=torch.float64)  # kernel radius: 3 x the largest sigma allowed
    for i, sigma in enumerate(draws.blur_value.tolist()):
        line = torch.exp(-0.5 * (offsets / sigma) ** 2)
        line = line / line.sum()
        expected = torch.zeros(15, 15, dtype=torch.float64)
        expected[1:14, 1:14] = torch.outer(line, line)
        torch.testing.assert_close(out[i, 0].double(), expected, atol=1e-6, rtol=1e-5)
    flat = torch.full((2, 3, 8, 8), 0.25)
    blurred, _ = augment(flat, torch.zeros(2, 8, 8, dtype=torch.long), batch_generator(0, 0, 1))
    torch.testing.assert_close(blurred, flat)


def test_noise_is_relative_to_the_channel_spread() -> None:
    image = torch.rand(4, 3, 64, 64) * torch.tensor([1.0, 10.0, 100.0]).view(1, 3, 1, 1)
    augment = BatchAugment(config(noise_prob=1.0, noise_std=0.5))
    draws = augment.draw(4, batch_generator(0, 0, 0))
    out, _ = augment.apply(image, torch.zeros(4, 64, 64, dtype=torch.long), draws)
    relative = (out - image).std((-2, -1)) / image.std((-2, -1))
    expected = draws.noise_value.view(-1, 1).expand(-1, 3)
    torch.testing.assert_close(relative, expected, rtol=0.05, atol=1e-3)


def test_non_square_images_are_flipped_but_not_turned() -> None:
    image = torch.rand(2, 1, 8, 12)
    mask = (image[:, 0] > 0.5).long()
    out_image, out_mask = BatchAugment(config(hflip=1.0, vflip=1.0))(image, mask, batch_generator(0, 0, 0))
    assert torch.equal(out_image, image.flip(-1, -2)) and torch.equal(out_mask, mask.flip(-1, -2))
    for setting in ({"rot90": 1.0}, {"rotate_degrees": 10, "rotate_prob": 1.0}, {"scale_prob": 1.0}):
        with pytest.raises(ValueError, match="square"):
            BatchAugment(config(**setting))(image, mask, batch_generator(0, 0, 0))
