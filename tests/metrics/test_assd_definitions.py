"""The two ASSD definitions: pooled (MedPy >= 0.5.2) and mean of the directed averages (MedPy <= 0.4.0).

MedPy 0.4.0's ``assd`` is transcribed below (it is not installable next to the newer MedPy the other tests use);
hand-made fixtures where the two borders differ in size make the definitions disagree.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from medseg.metrics import (
    ASSD_DEFINITIONS,
    assd,
    assd_from_distances,
    symmetric_surface_distances,
    transunet_case_metrics,
)


def _medpy040_surface_distances(
    result: np.ndarray, reference: np.ndarray, voxelspacing: tuple[float, ...] | None = None, connectivity: int = 1
) -> np.ndarray:
    """``medpy.metric.binary.__surface_distances`` of MedPy 0.4.0, transcribed."""
    result = np.atleast_1d(result.astype(bool))
    reference = np.atleast_1d(reference.astype(bool))
    if voxelspacing is not None:
        voxelspacing = np.asarray(voxelspacing, dtype=np.float64)
    footprint = ndimage.generate_binary_structure(result.ndim, connectivity)
    result_border = result ^ ndimage.binary_erosion(result, structure=footprint, iterations=1)
    reference_border = reference ^ ndimage.binary_erosion(reference, structure=footprint, iterations=1)
    dt = ndimage.distance_transform_edt(~reference_border, sampling=voxelspacing)
    return dt[result_border]


def _medpy040_asd(result: np.ndarray, reference: np.ndarray, voxelspacing: tuple[float, ...] | None = None) -> float:
    """``medpy.metric.binary.asd`` of MedPy 0.4.0: the mean of the directed surface distances."""
    return float(_medpy040_surface_distances(result, reference, voxelspacing).mean())


def medpy040_assd(result: np.ndarray, reference: np.ndarray, voxelspacing: tuple[float, ...] | None = None) -> float:
    """``medpy.metric.binary.assd`` of MedPy 0.4.0: ``numpy.mean((asd(r, ref), asd(ref, r)))``."""
    return float(
        np.mean((_medpy040_asd(result, reference, voxelspacing), _medpy040_asd(reference, result, voxelspacing)))
    )


def pixel_and_square() -> tuple[np.ndarray, np.ndarray]:
    """A single pixel on the corner of a 3 x 3 square: borders of 1 and 8 pixels."""
    pred = np.zeros((10, 10), bool)
    pred[2, 2] = True
    gt = np.zeros((10, 10), bool)
    gt[2:5, 2:5] = True
    return pred, gt


def test_hand_computed_fixture_separates_the_definitions() -> None:
    pred, gt = pixel_and_square()
    # d(pred -> gt) = [0]; d(gt -> pred) over the 8 border pixels: 0, 1, 2, 1, sqrt 5, 2, sqrt 5, sqrt 8.
    total = 6 + 2 * math.sqrt(5) + math.sqrt(8)
    assert assd(pred, gt, definition="mean_of_directed") == pytest.approx((0 + total / 8) / 2)
    assert assd(pred, gt) == pytest.approx(total / 9)  # pooled, the default
    assert medpy040_assd(pred, gt) == pytest.approx((0 + total / 8) / 2)
    assert assd(pred, gt) > 1.7 * assd(pred, gt, definition="mean_of_directed")


@pytest.mark.parametrize("spacing", [None, (3.0, 0.7, 1.1)])
def test_mean_of_directed_matches_medpy_040_on_3d_blobs(spacing: tuple[float, ...] | None) -> None:
    rng = np.random.default_rng(3)
    noise = ndimage.gaussian_filter(rng.random((8, 30, 26)), 2.0)
    gt = noise > np.quantile(noise, 0.75)
    pred = ndimage.binary_dilation(gt, iterations=2) & (rng.random(gt.shape) > 0.1)
    expected = medpy040_assd(pred, gt, spacing)
    assert assd(pred, gt, spacing, definition="mean_of_directed") == pytest.approx(expected, rel=1e-12)
    d_pg, d_gp = symmetric_surface_distances(pred, gt, spacing)
    assert d_pg.size != d_gp.size
    pooled = np.concatenate([d_pg, d_gp]).mean()
    assert assd_from_distances(d_pg, d_gp) == pytest.approx(pooled)
    assert abs(pooled - expected) > 1e-3  # the fixture does tell them apart


def test_transunet_conventions_use_medpy_040() -> None:
    pred, gt = pixel_and_square()
    assert transunet_case_metrics(pred, gt)["assd"] == pytest.approx(medpy040_assd(pred, gt))


def test_definitions_are_named_and_unknown_ones_rejected() -> None:
    assert "0.4.0" in ASSD_DEFINITIONS["mean_of_directed"] and "0.5.2" in ASSD_DEFINITIONS["pooled"]
    pred, gt = pixel_and_square()
    with pytest.raises(ValueError, match="unknown ASSD definition 'medpy'"):
        assd(pred, gt, definition="medpy")  # type: ignore[arg-type]
