"""The synthetic dataset: determinism, shapes, labels and that a global threshold cannot solve it."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.config import ConfigError, DataConfig
from medseg.data import DataError, build_reader
from medseg.data.synthetic import SyntheticReader, generate_case


def synthetic_config(**overrides: object) -> DataConfig:
    return DataConfig.model_validate({"dataset": "synthetic", **overrides})


def test_case_ids_and_official_split() -> None:
    reader = build_reader(synthetic_config(synthetic={"num_train": 12, "num_val": 3, "num_test": 4}))
    assert isinstance(reader, SyntheticReader)
    split = reader.official_split()
    assert {name: len(ids) for name, ids in split.items()} == {"train": 12, "val": 3, "test": 4}
    assert split["train"][7] == "train_0007"
    assert reader.case_ids() == sorted(split["train"] + split["val"] + split["test"])
    assert reader.describe() == "synthetic: 19 cases"


def test_same_seed_gives_identical_cases_and_other_seeds_differ() -> None:
    first = build_reader(synthetic_config()).load("train_0003")
    again = build_reader(synthetic_config()).load("train_0003")
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.mask, again.mask)
    other_seed = build_reader(synthetic_config(synthetic={"seed": 1})).load("train_0003")
    assert not np.array_equal(first.image, other_seed.image)
    other_split = build_reader(synthetic_config()).load("val_0003")
    assert not np.array_equal(first.image, other_split.image)


@pytest.mark.parametrize("size", [32, 96])
def test_shapes_dtypes_and_binary_labels(size: int) -> None:
    reader = build_reader(synthetic_config(synthetic={"size": size}))
    for case_id in ("train_0000", "test_0005"):
        case = reader.load(case_id)
        assert case.image.shape == (size, size, 3) and case.image.dtype == np.uint8
        assert case.mask.shape == (size, size) and case.mask.dtype == np.int64
        assert set(np.unique(case.mask)) <= {0, 1}
        assert case.image_path is None and case.case_id == case_id


def test_multiclass_produces_every_class() -> None:
    reader = build_reader(synthetic_config(num_classes=5))
    masks = np.stack([reader.load(f"train_{index:04d}").mask for index in range(24)])
    assert set(np.unique(masks)) == {0, 1, 2, 3, 4}


def test_objects_cover_a_fair_share_and_few_images_are_empty() -> None:
    masks = np.stack([generate_case(48, 2, 0, "train", index)[1] for index in range(200)])
    empty = np.mean([not mask.any() for mask in masks])
    assert 0 < empty <= 0.05
    assert 0.05 < masks.mean() < 0.3


def _channels(images: np.ndarray) -> dict[str, np.ndarray]:
    pixels = images.astype(np.float64)
    grey = np.rint(pixels @ np.array([0.299, 0.587, 0.114])).astype(np.int64)
    return {"red": images[..., 0], "green": images[..., 1], "blue": images[..., 2], "grey": grey}


def _dice_per_threshold(values: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per-image Dice of ``values >= t`` and of ``values < t`` for t = 0..256: shape (2, images, 257)."""
    foreground = masks > 0
    hist_fg = np.stack([np.bincount(v[m], minlength=256) for v, m in zip(values, foreground, strict=True)])
    hist_bg = np.stack([np.bincount(v[~m], minlength=256) for v, m in zip(values, foreground, strict=True)])
    above_fg = np.pad(np.cumsum(hist_fg[:, ::-1], axis=1)[:, ::-1], ((0, 0), (0, 1)))
    above_bg = np.pad(np.cumsum(hist_bg[:, ::-1], axis=1)[:, ::-1], ((0, 0), (0, 1)))
    n_fg, n_bg = hist_fg.sum(1, keepdims=True), hist_bg.sum(1, keepdims=True)
    scores = []
    for tp, fp in ((above_fg, above_bg), (n_fg - above_fg, n_bg - above_bg)):
        denominator = 2 * tp + fp + (n_fg - tp)
        scores.append(np.where(denominator == 0, 1.0, 2 * tp / np.maximum(denominator, 1)))
    return np.stack(scores)


def test_no_global_threshold_solves_it() -> None:
    train = [generate_case(64, 2, 0, "train", index) for index in range(48)]
    test = [generate_case(64, 2, 0, "test", index) for index in range(48)]
    train_images, train_masks = (np.stack(parts) for parts in zip(*train, strict=True))
    test_images, test_masks = (np.stack(parts) for parts in zip(*test, strict=True))
    train_channels, test_channels = _channels(train_images), _channels(test_images)
    best_train, best_test = -1.0, 0.0
    for name in train_channels:
        train_dice = _dice_per_threshold(train_channels[name], train_masks).mean(axis=1)
        best = np.unravel_index(np.argmax(train_dice), train_dice.shape)
        if train_dice[best] > best_train:
            best_train = train_dice[best]
            best_test = _dice_per_threshold(test_channels[name], test_masks).mean(axis=1)[best]
    assert best_test < 0.5, best_test


def test_unknown_case_and_too_many_classes() -> None:
    reader = build_reader(synthetic_config())
    for bad in ("train_9999", "train_7", "nope", "val_"):
        with pytest.raises(DataError, match="is not in the synthetic dataset"):
            reader.load(bad)
    with pytest.raises(ConfigError, match="at most 17 classes"):
        build_reader(synthetic_config(num_classes=18))
