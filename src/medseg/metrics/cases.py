"""Per-case segmentation metrics with an explicit policy for empty masks.

A case is one image (or volume) with a predicted and a ground-truth mask. Overlap metrics (Dice, IoU,
precision, recall) and surface metrics (HD95, ASSD) are undefined when a mask is empty; :class:`EmptyPolicy`
fixes what is reported then. The four cases, reported as ``empty_case``:

==============  =========  =========  =========  ===================================================
``empty_case``  Dice, IoU  precision  recall     HD95, ASSD
==============  =========  =========  =========  ===================================================
``"both"``      1.0 / NaN  1.0 / NaN  1.0 / NaN  0.0 / NaN
``"pred"``      0.0        NaN        0.0        NaN / diagonal
``"gt"``        0.0        0.0        NaN        NaN / diagonal
``"none"``      computed   computed   computed   :func:`~medseg.metrics.binary.hd95`, ``assd``
==============  =========  =========  =========  ===================================================

"x / y" is x with ``both_empty="one"`` and y with ``"nan"`` (``"both"`` row), x with ``hd95_empty="nan"`` and
y with ``"diagonal"`` (``"pred"`` and ``"gt"`` rows).
``"pred"`` means the prediction is empty and the ground truth is not, ``"gt"`` the reverse. The diagonal is
``sqrt(sum((shape_i * spacing_i) ** 2))``, in spacing units. NaN means "undefined":
:func:`~medseg.metrics.summary.summarize` counts such values instead of averaging them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from medseg.metrics.binary import (
    Spacing,
    assd_from_distances,
    confusion_counts,
    hd95_from_distances,
    normalize_spacing,
    symmetric_surface_distances,
)
from medseg.metrics.summary import summarize

__all__ = ["CASE_METRICS", "EmptyPolicy", "binary_case_metrics", "multiclass_case_metrics"]

CASE_METRICS: tuple[str, ...] = ("dice", "iou", "precision", "recall", "hd95", "assd")

_NAN = float("nan")


@dataclass(frozen=True)
class EmptyPolicy:
    """What to report when the prediction and/or the ground truth of a case is empty.

    * Both empty: Dice, IoU, precision and recall are 1.0 with ``both_empty="one"`` (a correct "nothing
      there") or NaN with ``both_empty="nan"``; HD95 and ASSD are 0.0 with ``"one"`` and NaN with ``"nan"``.
    * Prediction empty, ground truth not: Dice = IoU = recall = 0.0, precision NaN (no predicted voxel).
    * Ground truth empty, prediction not: Dice = IoU = precision = 0.0, recall NaN (no true voxel).
    * In both one-sided cases HD95 and ASSD are NaN with ``hd95_empty="nan"`` or the image diagonal
      ``sqrt(sum((shape_i * spacing_i) ** 2))`` with ``hd95_empty="diagonal"`` (a worst-case penalty).
    * Both non-empty: every metric is computed normally.

    Attributes:
        both_empty: score when both masks are empty: ``"one"`` (perfect) or ``"nan"`` (undefined).
        hd95_empty: HD95/ASSD when exactly one mask is empty: ``"nan"`` or ``"diagonal"``.
    """

    both_empty: Literal["one", "nan"] = "one"
    hd95_empty: Literal["nan", "diagonal"] = "nan"

    def __post_init__(self) -> None:
        """Reject values outside the documented choices."""
        if self.both_empty not in ("one", "nan"):
            raise ValueError(f"both_empty must be 'one' or 'nan', got {self.both_empty!r}")
        if self.hd95_empty not in ("nan", "diagonal"):
            raise ValueError(f"hd95_empty must be 'nan' or 'diagonal', got {self.hd95_empty!r}")


def binary_case_metrics(
    pred: ArrayLike, gt: ArrayLike, spacing: Spacing = None, policy: EmptyPolicy = EmptyPolicy()
) -> dict[str, float | str]:
    """All metrics of one binary case, applying ``policy`` to empty masks.

    Args:
        pred: predicted mask (non-zero is foreground), 2D or 3D.
        gt: ground-truth mask of the same shape.
        spacing: voxel spacing per axis, a scalar for all axes, or ``None`` for 1.
        policy: empty-mask policy (see the module docstring).

    Returns:
        ``{"dice", "iou", "precision", "recall", "hd95", "assd"}`` as floats (NaN = undefined) and
        ``"empty_case"``: ``"none"``, ``"both"``, ``"pred"`` (prediction empty) or ``"gt"`` (ground truth
        empty).

    Raises:
        ValueError: if the shapes differ or the spacing is invalid.
    """
    tp, fp, fn, _ = confusion_counts(pred, gt)
    shape = np.shape(pred)
    sampling = normalize_spacing(spacing, len(shape))  # validated in every case, not only when it is used
    pred_empty, gt_empty = tp + fp == 0, tp + fn == 0
    if pred_empty and gt_empty:
        score, distance = (1.0, 0.0) if policy.both_empty == "one" else (_NAN, _NAN)
        return {
            "dice": score,
            "iou": score,
            "precision": score,
            "recall": score,
            "hd95": distance,
            "assd": distance,
            "empty_case": "both",
        }
    if pred_empty or gt_empty:
        distance = (
            float(np.sqrt(np.sum((np.asarray(shape) * sampling) ** 2))) if policy.hd95_empty == "diagonal" else _NAN
        )
        return {
            "dice": 0.0,
            "iou": 0.0,
            "precision": _NAN if pred_empty else 0.0,
            "recall": _NAN if gt_empty else 0.0,
            "hd95": distance,
            "assd": distance,
            "empty_case": "pred" if pred_empty else "gt",
        }
    d_pg, d_gp = symmetric_surface_distances(pred, gt, spacing)
    return {
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "hd95": hd95_from_distances(d_pg, d_gp),
        "assd": assd_from_distances(d_pg, d_gp),
        "empty_case": "none",
    }


def multiclass_case_metrics(
    pred_labels: ArrayLike,
    gt_labels: ArrayLike,
    num_classes: int,
    spacing: Spacing = None,
    policy: EmptyPolicy = EmptyPolicy(),
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per-class and class-mean metrics of one case with integer label maps (0 = background).

    Each foreground class ``c`` in ``1..num_classes-1`` is scored as the binary case ``(pred == c, gt == c)``
    with :func:`binary_case_metrics`. The class mean of each metric ignores NaN classes; it is NaN only when
    the metric is NaN for every class.

    Args:
        pred_labels: predicted label map with values in ``[0, num_classes)``.
        gt_labels: ground-truth label map of the same shape.
        num_classes: number of classes including background (2 = binary).
        spacing: voxel spacing per axis, a scalar for all axes, or ``None`` for 1.
        policy: empty-mask policy (see the module docstring).
        class_names: ``num_classes`` names indexed by label value (the background name is unused); defaults
            to ``"class_1"``, ``"class_2"``, ...

    Returns:
        ``{"per_class": {name: binary_case_metrics(...)}, "mean": {metric: float}}`` for the metrics in
        :data:`CASE_METRICS`.

    Raises:
        ValueError: if the shapes differ, ``num_classes < 2``, ``class_names`` has the wrong length or a label
            lies outside ``[0, num_classes)``.
    """
    pred = np.asarray(pred_labels)
    gt = np.asarray(gt_labels)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction and ground truth shapes differ: {pred.shape} vs {gt.shape}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if class_names is None:
        class_names = [f"class_{c}" for c in range(num_classes)]
    elif len(class_names) != num_classes:
        raise ValueError(f"class_names needs {num_classes} names (background first), got {len(class_names)}")
    for name, labels in (("prediction", pred), ("ground truth", gt)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]"
            )
    per_class = {
        class_names[c]: binary_case_metrics(pred == c, gt == c, spacing, policy) for c in range(1, num_classes)
    }
    stats = summarize(list(per_class.values()), CASE_METRICS)
    return {"per_class": per_class, "mean": {metric: stats[metric]["mean"] for metric in CASE_METRICS}}
