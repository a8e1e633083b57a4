"""Low-level metrics of :mod:`medseg.metrics.binary`, checked against MedPy (test-time reference only).

Fixtures: hand-made 2D shapes, seeded random blobs, 3D volumes, anisotropic spacing, single-pixel objects and
objects touching the image border.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from medpy.metric import binary as mb
from scipy import ndimage

from medseg.metrics import (
    EmptyPolicy,
    assd,
    binary_case_metrics,
    confusion_counts,
    dice,
    hd95,
    iou,
    normalize_spacing,
    precision,
    recall,
    surface_distances,
    symmetric_surface_distances,
)

MaskCase = tuple[np.ndarray, np.ndarray, "float | tuple[float, ...] | None"]


def box(shape: tuple[int, ...], *slices: slice) -> np.ndarray:
    """Boolean array of ``shape`` that is True inside ``slices``."""
    mask = np.zeros(shape, dtype=bool)
    mask[slices] = True
    return mask


def ball(shape: tuple[int, ...], center: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    """Boolean (hyper-)ellipsoid of the given radii per axis."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii, strict=True)) <= 1.0


def blobs(shape: tuple[int, ...], seed: int, sigma: float = 3.0, fraction: float = 0.3) -> np.ndarray:
    """Seeded random smooth blobs covering about ``fraction`` of the array."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), sigma)
    return noise > np.quantile(noise, 1.0 - fraction)


def ring() -> np.ndarray:
    """A 2D annulus (an object with an inner border)."""
    return ball((48, 48), (24, 24), (15, 15)) & ~ball((48, 48), (24, 24), (8, 8))


def pixel(shape: tuple[int, ...], *index: int) -> np.ndarray:
    """Boolean array of ``shape`` with a single True element at ``index``."""
    mask = np.zeros(shape, dtype=bool)
    mask[index] = True
    return mask


# name -> builder of (pred, gt, spacing); every mask is non-empty.
NONEMPTY_CASES: dict[str, Callable[[], MaskCase]] = {
    "squares_2d": lambda: (
        box((40, 40), slice(10, 30), slice(10, 30)),
        box((40, 40), slice(14, 36), slice(8, 25)),
        None,
    ),
    "identical_2d": lambda: (ball((32, 32), (16, 16), (9, 6)), ball((32, 32), (16, 16), (9, 6)), None),
    "disk_vs_ellipse_aniso_2d": lambda: (
        ball((50, 60), (25, 30), (12, 12)),
        ball((50, 60), (23, 33), (9, 17)),
        (0.5, 1.3),
    ),
    "ring_vs_disk_2d": lambda: (ring(), ball((48, 48), (26, 22), (13, 13)), None),
    "l_shape_vs_rect_2d": lambda: (
        box((30, 30), slice(5, 25), slice(5, 10)) | box((30, 30), slice(20, 25), slice(5, 22)),
        box((30, 30), slice(8, 22), slice(4, 18)),
        2.0,
    ),
    "blobs_2d_seed0": lambda: (blobs((64, 80), 0), blobs((64, 80), 100), None),
    "blobs_2d_seed1_scalar_spacing": lambda: (blobs((64, 80), 1, sigma=2.0), blobs((64, 80), 101), 0.8),
    "blobs_2d_seed2_aniso": lambda: (
        blobs((50, 50), 2, fraction=0.1),
        blobs((50, 50), 102, fraction=0.5),
        (1.7, 0.4),
    ),
    "spheres_3d_aniso": lambda: (
        ball((16, 32, 32), (8, 16, 16), (5, 10, 10)),
        ball((16, 32, 32), (7, 18, 15), (4, 12, 9)),
        (2.5, 0.7, 0.7),
    ),
    "blobs_3d": lambda: (blobs((20, 32, 32), 3), blobs((20, 32, 32), 103), None),
    "blobs_3d_aniso": lambda: (blobs((20, 32, 32), 4, sigma=2.0), blobs((20, 32, 32), 104), (2.5, 0.7, 0.7)),
    "single_pixel_vs_blob_2d": lambda: (pixel((40, 40), 30, 5), ball((40, 40), (15, 20), (6, 8)), None),
    "single_pixel_both_2d": lambda: (pixel((20, 20), 3, 4), pixel((20, 20), 15, 9), (0.6, 1.1)),
    "single_voxel_vs_sphere_3d": lambda: (
        pixel((12, 20, 20), 1, 2, 3),
        ball((12, 20, 20), (6, 10, 10), (3, 6, 6)),
        (2.5, 0.7, 0.7),
    ),
    "touching_border_2d": lambda: (
        box((30, 40), slice(0, 30), slice(0, 12)),
        box((30, 40), slice(0, 20), slice(5, 40)),
        None,
    ),
    "full_image_vs_corner_2d": lambda: (
        np.ones((25, 25), dtype=bool),
        box((25, 25), slice(0, 6), slice(19, 25)),
        None,
    ),
    "touching_border_3d_aniso": lambda: (
        box((10, 24, 24), slice(0, 10), slice(0, 24), slice(0, 6)),
        ball((10, 24, 24), (5, 12, 4), (5, 10, 5)),
        (2.5, 0.7, 0.7),
    ),
}

TOL = 1e-6
OVERLAP_REFERENCES = {
    "dice": (dice, mb.dc),
    "iou": (iou, mb.jc),
    "precision": (precision, mb.precision),
    "recall": (recall, mb.recall),
}
SURFACE_REFERENCES = {"hd95": (hd95, mb.hd95), "assd": (assd, mb.assd)}
medpy_surface_distances = getattr(mb, "__surface_distances")


@pytest.fixture(params=sorted(NONEMPTY_CASES), ids=str)
def mask_case(request: pytest.FixtureRequest) -> MaskCase:
    pred, gt, spacing = NONEMPTY_CASES[request.param]()
    assert pred.any() and gt.any() and pred.shape == gt.shape
    return pred, gt, spacing


@pytest.mark.parametrize("metric", sorted(OVERLAP_REFERENCES))
def test_overlap_metrics_match_medpy(mask_case: MaskCase, metric: str) -> None:
    pred, gt, _ = mask_case
    ours, reference = OVERLAP_REFERENCES[metric]
    assert ours(pred, gt) == pytest.approx(reference(pred, gt), abs=TOL)


@pytest.mark.parametrize("metric", sorted(SURFACE_REFERENCES))
def test_surface_metrics_match_medpy(mask_case: MaskCase, metric: str) -> None:
    pred, gt, spacing = mask_case
    ours, reference = SURFACE_REFERENCES[metric]
    assert ours(pred, gt, spacing) == pytest.approx(reference(pred, gt, voxelspacing=spacing), abs=TOL)


def test_surface_distances_match_medpy(mask_case: MaskCase) -> None:
    pred, gt, spacing = mask_case
    for a, b in ((pred, gt), (gt, pred)):
        np.testing.assert_allclose(
            surface_distances(a, b, spacing), medpy_surface_distances(a, b, spacing), rtol=0, atol=TOL
        )
    d_pg, d_gp = symmetric_surface_distances(pred, gt, spacing)
    np.testing.assert_array_equal(d_pg, surface_distances(pred, gt, spacing))
    np.testing.assert_array_equal(d_gp, surface_distances(gt, pred, spacing))


def test_case_metrics_match_medpy(mask_case: MaskCase) -> None:
    pred, gt, spacing = mask_case
    result = binary_case_metrics(pred, gt, spacing, EmptyPolicy(both_empty="nan", hd95_empty="diagonal"))
    assert result["empty_case"] == "none"
    for metric, (_, reference) in OVERLAP_REFERENCES.items():
        assert result[metric] == pytest.approx(reference(pred, gt), abs=TOL), metric
    for metric, (_, reference) in SURFACE_REFERENCES.items():
        assert result[metric] == pytest.approx(reference(pred, gt, voxelspacing=spacing), abs=TOL), metric


def test_hand_computed_values() -> None:
    pred = box((10, 10), slice(0, 4), slice(0, 4))  # 16 pixels
    gt = box((10, 10), slice(2, 6), slice(0, 4))  # 16 pixels, 8 shared
    assert confusion_counts(pred, gt) == (8, 8, 8, 76)
    assert dice(pred, gt) == 0.5
    assert iou(pred, gt) == pytest.approx(1 / 3)
    assert precision(pred, gt) == 0.5
    assert recall(pred, gt) == 0.5
    a, b = pixel((10, 10), 2, 3), pixel((10, 10), 5, 7)
    assert hd95(a, b) == pytest.approx(5.0)
    assert assd(a, b) == pytest.approx(5.0)
    assert hd95(a, b, spacing=(2.0, 0.5)) == pytest.approx(math.sqrt(6.0**2 + 2.0**2))
    assert hd95(pred, pred) == 0.0
    # A full image's border is its outer frame: the image edge counts as background.
    full = np.ones((5, 5), dtype=bool)
    assert surface_distances(full, full).shape == (16,)


def test_assd_pools_both_directions() -> None:
    """ASSD weights every border pixel equally (pooled mean, as MedPy >= 0.5.2); HD95 interpolates linearly."""
    pred = pixel((1, 10), 0, 0)
    # A one-row object is all border: d(pred -> gt) = [3] and d(gt -> pred) = [3, 4, 5].
    gt = box((1, 10), slice(0, 1), slice(3, 6))
    np.testing.assert_array_equal(surface_distances(gt, pred), [3.0, 4.0, 5.0])
    assert assd(pred, gt) == pytest.approx(15 / 4)  # not (3 + 4) / 2
    assert mb.assd(pred, gt) == pytest.approx(15 / 4)
    assert hd95(pred, gt) == pytest.approx(4.85)  # 95th percentile of [3, 3, 4, 5]


def test_non_boolean_masks_are_thresholded_at_nonzero() -> None:
    pred = np.array([[0, 2, 3], [0, 0, 1]])
    gt = np.array([[0.0, 0.5, 0.0], [1.0, 0.0, 1.0]])
    assert confusion_counts(pred, gt) == (2, 1, 1, 2)


def test_overlap_zero_denominator_is_nan_without_warning() -> None:
    empty = np.zeros((4, 5), dtype=bool)
    some = box((4, 5), slice(1, 3), slice(1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(dice(empty, empty))
        assert math.isnan(iou(empty, empty))
        assert math.isnan(precision(empty, some))
        assert math.isnan(recall(some, empty))
    assert dice(empty, some) == 0.0
    assert precision(some, empty) == 0.0
    assert recall(empty, some) == 0.0


@pytest.mark.parametrize("func", [surface_distances, hd95, assd, symmetric_surface_distances])
def test_surface_metrics_reject_empty_masks(func: Callable[..., object]) -> None:
    empty = np.zeros((6, 6), dtype=bool)
    some = box((6, 6), slice(1, 3), slice(1, 3))
    with pytest.raises(ValueError, match="first mask is empty"):
        func(empty, some)
    with pytest.raises(ValueError, match="second mask is empty"):
        func(some, empty)


def test_medpy_behaviour_on_empty_masks() -> None:
    """MedPy's own choices, which :class:`EmptyPolicy` replaces deliberately."""
    empty = np.zeros((6, 6), dtype=bool)
    some = box((6, 6), slice(1, 3), slice(1, 3))
    for a, b in ((empty, some), (some, empty), (empty, empty)):
        with pytest.raises(RuntimeError, match="does not contain any binary object"):
            mb.hd95(a, b)
        with pytest.raises(RuntimeError, match="does not contain any binary object"):
            mb.assd(a, b)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert math.isnan(mb.dc(empty, empty))  # our policy "one" gives 1.0
        assert mb.jc(empty, empty) == 1.0  # while MedPy's Dice is NaN here; our low-level iou is NaN
        assert math.isnan(iou(empty, empty))
        assert mb.dc(empty, some) == 0.0
        assert math.isnan(mb.precision(empty, some))
        assert math.isnan(mb.recall(some, empty))


@pytest.mark.parametrize(
    "func",
    [
        confusion_counts,
        dice,
        iou,
        precision,
        recall,
        surface_distances,
        hd95,
        assd,
        binary_case_metrics,
    ],
)
def test_mismatched_shapes_raise(func: Callable[..., object]) -> None:
    with pytest.raises(ValueError, match=r"\(4, 5\) vs \(5, 4\)"):
        func(np.ones((4, 5), dtype=bool), np.ones((5, 4), dtype=bool))


def test_spacing_normalisation_and_validation() -> None:
    np.testing.assert_array_equal(normalize_spacing(None, 3), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(normalize_spacing(0.5, 2), [0.5, 0.5])
    np.testing.assert_array_equal(normalize_spacing((2.5, 0.7, 0.7), 3), [2.5, 0.7, 0.7])
    with pytest.raises(ValueError, match="one value per axis"):
        normalize_spacing((1.0, 1.0), 3)
    with pytest.raises(ValueError, match="positive"):
        normalize_spacing((1.0, 0.0), 2)
    mask = box((8, 8), slice(2, 5), slice(2, 5))
    with pytest.raises(ValueError, match="one value per axis"):
        hd95(mask, mask, spacing=(1.0, 1.0, 1.0))
