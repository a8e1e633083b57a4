from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.errors import MedsegError
from medseg.inference.tta import DEFAULT_TTA, TTA_TRANSFORMS, apply, check_transforms, invert


@pytest.mark.parametrize("name", TTA_TRANSFORMS)
def test_each_transform_is_undone_by_its_inverse_on_numpy_and_torch(name: str) -> None:
    array = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    moved = apply(array, name)
    np.testing.assert_array_equal(apply(torch.from_numpy(array), name).numpy(), moved)
    assert moved.shape == ((2, 5, 3) if name in ("rot90", "rot270", "transpose") else (2, 3, 5))
    assert not np.array_equal(moved, array) or moved.shape != array.shape
    np.testing.assert_array_equal(invert(moved, name), array)
    np.testing.assert_array_equal(invert(torch.from_numpy(moved.copy()), name).numpy(), array)


def test_transforms_are_what_their_names_say() -> None:
    image = np.array([[1, 2], [3, 4]])
    assert apply(image, "hflip").tolist() == [[2, 1], [4, 3]]
    assert apply(image, "vflip").tolist() == [[3, 4], [1, 2]]
    assert apply(image, "rot90").tolist() == [[2, 4], [1, 3]]  # counter-clockwise
    assert apply(image, "rot180").tolist() == [[4, 3], [2, 1]]
    assert apply(image, "transpose").tolist() == [[1, 3], [2, 4]]


def test_unknown_transforms_are_refused_and_duplicates_dropped() -> None:
    assert check_transforms(["hflip", "hflip", "rot90"]) == ("hflip", "rot90")
    assert set(DEFAULT_TTA) <= set(TTA_TRANSFORMS)
    with pytest.raises(MedsegError, match="unknown test-time augmentation mirror; use hflip"):
        check_transforms(["mirror"])
