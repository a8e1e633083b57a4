"""Overlap and surface-distance metrics of two binary masks (2D images or 3D volumes).

These are the low-level, policy-free building blocks: the overlap ratios return ``nan`` when their denominator
is 0 and the surface distances reject empty masks. :func:`medseg.metrics.cases.binary_case_metrics` wraps them
with an explicit empty-mask policy.

The surface distances follow the usual definition (as in MedPy): the border of a mask is the mask minus its
binary erosion with the connectivity-1 structuring element, and the distance of a border voxel of ``a`` to
``b`` is the Euclidean distance transform of the complement of ``b``'s border, in spacing units. HD95 is the
95th percentile of the distances of both directions pooled. ASSD has two definitions in use
(:data:`ASSD_DEFINITIONS`): ``"pooled"``, the mean of the distances of both directions pooled (MedPy >= 0.5.2,
the default here), and ``"mean_of_directed"``, the mean of the two directed averages (MedPy up to 0.4.0, which
the TransUNet-family evaluation scripts ran with). They differ when the two borders differ in size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

__all__ = [
    "ASSD_DEFINITIONS",
    "AssdDefinition",
    "assd",
    "assd_from_distances",
    "confusion_counts",
    "dice",
    "hd95",
    "hd95_from_distances",
    "iou",
    "normalize_spacing",
    "precision",
    "recall",
    "surface_distances",
    "symmetric_surface_distances",
]

Spacing = float | Sequence[float] | None

AssdDefinition = Literal["pooled", "mean_of_directed"]

ASSD_DEFINITIONS: dict[str, str] = {
    "pooled": (
        "pooled: mean of the surface distances of both directions together, "
        "(sum d(pred->gt) + sum d(gt->pred)) / (|border pred| + |border gt|) (medpy >= 0.5.2)"
    ),
    "mean_of_directed": (
        "mean of the two directed average surface distances, (asd(pred, gt) + asd(gt, pred)) / 2 (medpy <= 0.4.0)"
    ),
}
"""Each ASSD definition with the sentence a summary states for it."""


def _as_pair(pred: ArrayLike, gt: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Convert two masks to boolean arrays (non-zero is foreground) and check their shapes match."""
    p = np.asarray(pred).astype(bool, copy=False)
    g = np.asarray(gt).astype(bool, copy=False)
    if p.shape != g.shape:
        raise ValueError(f"prediction and ground truth shapes differ: {p.shape} vs {g.shape}")
    return p, g


def _ratio(num: int, den: int) -> float:
    """``num / den``, or ``nan`` when ``den`` is 0."""
    return num / den if den else float("nan")


def normalize_spacing(spacing: Spacing, ndim: int) -> np.ndarray:
    """Per-axis voxel spacing as a float array of length ``ndim``.

    Args:
        spacing: one value per axis, a single value for all axes, or ``None`` for unit spacing.
        ndim: number of array axes.

    Returns:
        Float64 array of shape ``(ndim,)``.

    Raises:
        ValueError: if a sequence has the wrong length or a value is not positive.
    """
    if spacing is None:
        return np.ones(ndim)
    values = np.asarray(spacing, dtype=np.float64)
    if values.ndim == 0:
        values = np.full(ndim, float(values))
    if values.shape != (ndim,):
        raise ValueError(f"spacing {tuple(values.tolist())} must have one value per axis ({ndim} axes)")
    if not np.all(values > 0):
        raise ValueError(f"spacing values must be positive, got {tuple(values.tolist())}")
    return values


def confusion_counts(pred: ArrayLike, gt: ArrayLike) -> tuple[int, int, int, int]:
    """Voxel-wise confusion counts of two masks of the same shape.

    Args:
        pred: predicted mask (non-zero is foreground).
        gt: ground-truth mask of the same shape.

    Returns:
        ``(tp, fp, fn, tn)`` as Python ints.

    Raises:
        ValueError: if the shapes differ.
    """
    p, g = _as_pair(pred, gt)
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(g)) - tp
    return tp, fp, fn, p.size - tp - fp - fn


def dice(pred: ArrayLike, gt: ArrayLike) -> float:
    """Dice coefficient ``2 tp / (2 tp + fp + fn)``.

    Args:
        pred: predicted mask.
        gt: ground-truth mask of the same shape.

    Returns:
        The Dice coefficient, ``nan`` when both masks are empty.
    """
    tp, fp, fn, _ = confusion_counts(pred, gt)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def iou(pred: ArrayLike, gt: ArrayLike) -> float:
    """Intersection over union (Jaccard index) ``tp / (tp + fp + fn)``.

    Args:
        pred: predicted mask.
        gt: ground-truth mask of the same shape.

    Returns:
        The IoU, ``nan`` when both masks are empty.
    """
    tp, fp, fn, _ = confusion_counts(pred, gt)
    return _ratio(tp, tp + fp + fn)


def precision(pred: ArrayLike, gt: ArrayLike) -> float:
    """Precision (positive predictive value) ``tp / (tp + fp)``.

    Args:
        pred: predicted mask.
        gt: ground-truth mask of the same shape.

    Returns:
        The precision, ``nan`` when the prediction is empty.
    """
    tp, fp, _, _ = confusion_counts(pred, gt)
    return _ratio(tp, tp + fp)


def recall(pred: ArrayLike, gt: ArrayLike) -> float:
    """Recall (sensitivity) ``tp / (tp + fn)``.

    Args:
        pred: predicted mask.
        gt: ground-truth mask of the same shape.

    Returns:
        The recall, ``nan`` when the ground truth is empty.
    """
    tp, _, fn, _ = confusion_counts(pred, gt)
    return _ratio(tp, tp + fn)


def _border(mask: np.ndarray) -> np.ndarray:
    """Border voxels of a mask: the mask minus its connectivity-1 erosion (outside the image is empty)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, iterations=1)


def _directed(border_a: np.ndarray, border_b: np.ndarray, sampling: np.ndarray) -> np.ndarray:
    """Distances from each voxel of ``border_a`` to the nearest voxel of ``border_b``."""
    return ndimage.distance_transform_edt(~border_b, sampling=sampling)[border_a]


def _check_nonempty(a: np.ndarray, b: np.ndarray) -> None:
    """Raise ValueError if either mask has no foreground voxel."""
    for name, mask in (("first", a), ("second", b)):
        if not mask.any():
            raise ValueError(f"surface distances are undefined: the {name} mask is empty")


def surface_distances(a: ArrayLike, b: ArrayLike, spacing: Spacing = None) -> np.ndarray:
    """Directed surface distances from the border of ``a`` to the border of ``b``.

    Args:
        a: source mask (its border voxels are the query points).
        b: target mask of the same shape.
        spacing: voxel spacing per axis, a scalar for all axes, or ``None`` for 1.

    Returns:
        1D float array with one distance per border voxel of ``a`` (C order), in spacing units.

    Raises:
        ValueError: if the shapes differ, either mask is empty or the spacing is invalid.
    """
    ma, mb = _as_pair(a, b)
    _check_nonempty(ma, mb)
    return _directed(_border(ma), _border(mb), normalize_spacing(spacing, ma.ndim))


def symmetric_surface_distances(
    pred: ArrayLike, gt: ArrayLike, spacing: Spacing = None
) -> tuple[np.ndarray, np.ndarray]:
    """Both directed surface-distance arrays, computing each border once.

    Args:
        pred: predicted mask.
        gt: ground-truth mask of the same shape.
        spacing: voxel spacing (see :func:`surface_distances`).

    Returns:
        ``(pred -> gt, gt -> pred)`` distance arrays.

    Raises:
        ValueError: if the shapes differ, either mask is empty or the spacing is invalid.
    """
    p, g = _as_pair(pred, gt)
    _check_nonempty(p, g)
    sampling = normalize_spacing(spacing, p.ndim)
    p, g = _crop_to_union(p, g)
    border_p, border_g = _border(p), _border(g)
    return _directed(border_p, border_g, sampling), _directed(border_g, border_p, sampling)


def _crop_to_union(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union grown by one voxel (within the array).

    Borders, the distances between them and their C order stay the same (the margin keeps the erosion's view of
    the outside), while the distance transforms cover only the box: the slow part of a volume's metrics.
    """
    union = a | b
    box = []
    for axis in range(union.ndim):
        present = np.flatnonzero(union.any(axis=tuple(i for i in range(union.ndim) if i != axis)))
        box.append(slice(max(int(present[0]) - 1, 0), min(int(present[-1]) + 2, union.shape[axis])))
    return a[tuple(box)], b[tuple(box)]


def hd95_from_distances(d_pg: np.ndarray, d_gp: np.ndarray) -> float:
    """HD95 from precomputed directed distances (see :func:`symmetric_surface_distances`).

    Args:
        d_pg: prediction -> ground-truth surface distances.
        d_gp: ground-truth -> prediction surface distances.

    Returns:
        The 95th percentile (numpy's default linear interpolation) of both arrays pooled.
    """
    return float(np.percentile(np.concatenate([d_pg, d_gp]), 95))


def assd_from_distances(d_pg: np.ndarray, d_gp: np.ndarray, definition: AssdDefinition = "pooled") -> float:
    """ASSD from precomputed directed distances (see :func:`symmetric_surface_distances`).

    Args:
        d_pg: prediction -> ground-truth surface distances.
        d_gp: ground-truth -> prediction surface distances.
        definition: ``"pooled"``: the mean of all distances of both arrays pooled,
            ``(sum(d_pg) + sum(d_gp)) / (len(d_pg) + len(d_gp))``, which weights each border voxel equally
            (MedPy's definition since 0.5.2); ``"mean_of_directed"``: ``(mean(d_pg) + mean(d_gp)) / 2``, which
            weights each direction equally (MedPy up to 0.4.0; 0.5.0 and 0.5.1 raise when the borders differ
            in size).

    Returns:
        The ASSD in the distances' units.

    Raises:
        ValueError: an unknown definition.
    """
    if definition == "pooled":
        return float(np.concatenate([d_pg, d_gp]).mean())
    if definition == "mean_of_directed":
        return float((d_pg.mean() + d_gp.mean()) / 2)
    raise ValueError(f"unknown ASSD definition {definition!r}; choose one of {', '.join(ASSD_DEFINITIONS)}")


def hd95(pred: ArrayLike, gt: ArrayLike, spacing: Spacing = None) -> float:
    """95th-percentile Hausdorff distance (same definition as ``medpy.metric.binary.hd95``).

    Args:
        pred: predicted mask, non-empty.
        gt: ground-truth mask of the same shape, non-empty.
        spacing: voxel spacing per axis, a scalar for all axes, or ``None`` for 1.

    Returns:
        The HD95 in spacing units.

    Raises:
        ValueError: if the shapes differ, either mask is empty or the spacing is invalid.
    """
    return hd95_from_distances(*symmetric_surface_distances(pred, gt, spacing))


def assd(pred: ArrayLike, gt: ArrayLike, spacing: Spacing = None, definition: AssdDefinition = "pooled") -> float:
    """Average symmetric surface distance.

    The default ``"pooled"`` definition is ``medpy.metric.binary.assd`` of MedPy >= 0.5.2;
    ``"mean_of_directed"`` is that of MedPy <= 0.4.0 (see :func:`assd_from_distances`).

    Args:
        pred: predicted mask, non-empty.
        gt: ground-truth mask of the same shape, non-empty.
        spacing: voxel spacing per axis, a scalar for all axes, or ``None`` for 1.
        definition: ``"pooled"`` or ``"mean_of_directed"``.

    Returns:
        The ASSD in spacing units.

    Raises:
        ValueError: if the shapes differ, either mask is empty, the spacing is invalid or the definition unknown.
    """
    return assd_from_distances(*symmetric_surface_distances(pred, gt, spacing), definition=definition)
