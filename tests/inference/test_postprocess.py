from __future__ import annotations

import numpy as np

from medseg.inference.postprocess import PostProcess


def grid(text: str) -> np.ndarray:
    return np.array([[int(char) for char in line] for line in text.split()])


def test_largest_component_per_class_with_diagonal_neighbours() -> None:
    labels = grid("1100000 1100002 0010022 0000000 1000000")
    kept = PostProcess(largest_component=True)(labels)
    # the class-1 pixel at (2, 2) touches the 2x2 block diagonally: one component of 5; (4, 0) is removed
    np.testing.assert_array_equal(kept, grid("1100000 1100002 0010022 0000000 0000000"))


def test_small_components_are_removed() -> None:
    labels = grid("1100002 1100000 0000000 0000011")
    np.testing.assert_array_equal(PostProcess(min_size=3)(labels), grid("1100000 1100000 0000000 0000000"))
    np.testing.assert_array_equal(PostProcess(min_size=2)(labels), grid("1100000 1100000 0000000 0000011"))


def test_holes_enclosed_by_one_class_are_filled() -> None:
    labels = grid("11111000 10001000 10101222 11111202 00000222")
    filled = PostProcess(fill_holes=True)(labels)
    np.testing.assert_array_equal(filled, grid("11111000 11111000 11111222 11111222 00000222"))
    shared = grid("1112 1002 1222")  # enclosed by classes 1 and 2 together: not a hole of either
    np.testing.assert_array_equal(PostProcess(fill_holes=True)(shared), shared)


def test_volumes_connect_across_slices_and_nothing_changes_when_off() -> None:
    volume = np.zeros((3, 4, 4), np.int64)
    volume[0, 0, 0] = volume[1, 1, 1] = 1  # diagonal neighbours in 3D: one component of 2
    volume[2, 3, 3] = 1
    kept = PostProcess(largest_component=True)(volume)
    assert kept[0, 0, 0] == kept[1, 1, 1] == 1 and kept[2, 3, 3] == 0
    off = PostProcess()
    assert not off.active and off(volume) is volume
