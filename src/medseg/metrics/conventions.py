"""Metric definitions exactly as particular published evaluation scripts compute them.

Each function reproduces one reference script's formulas and empty-mask conventions, so that numbers can be
compared with the papers that use it. They are used by the named protocols in :mod:`medseg.protocols`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from medseg.metrics.binary import (
    Spacing,
    assd_from_distances,
    confusion_counts,
    hd95_from_distances,
    symmetric_surface_distances,
)

__all__ = [
    "global_confusion_metrics",
    "resunetpp_case_metrics",
    "transunet_case_metrics",
    "uctransnet_case_metrics",
]


def transunet_case_metrics(pred: ArrayLike, gt: ArrayLike, spacing: Spacing = None) -> dict[str, float]:
    """Dice, Jaccard, HD95 and ASSD of one class in one volume as TransUNet (and SelfReg) compute them.

    Both masks non-empty: medpy's ``dc``, ``jc``, ``hd95`` and ``assd``, ASSD as medpy 0.4.0 (the version the
    SelfReg ACDC/Synapse tables were computed with) defines it: the mean of the two directed average surface
    distances, not the pooled mean of medpy >= 0.5.2. Prediction non-empty and ground truth empty: Dice 1,
    Jaccard 1, HD95 0, ASSD 0. Otherwise (prediction empty, including both empty): all 0. The reference script
    passes no spacing, so distances are in voxels unless ``spacing`` is given.

    Args:
        pred: binary prediction (any non-zero value is foreground).
        gt: binary ground truth of the same shape.
        spacing: voxel spacing per axis; ``None`` (the reference) means 1.

    Returns:
        ``dice``, ``jaccard``, ``hd95`` and ``assd``.
    """
    pred = np.asarray(pred).astype(bool)
    gt = np.asarray(gt).astype(bool)
    has_pred, has_gt = bool(pred.any()), bool(gt.any())
    if has_pred and has_gt:
        tp, fp, fn, _ = confusion_counts(pred, gt)
        d_pg, d_gp = symmetric_surface_distances(pred, gt, spacing)
        return {
            "dice": 2 * tp / (2 * tp + fp + fn),
            "jaccard": tp / (tp + fp + fn),
            "hd95": hd95_from_distances(d_pg, d_gp),
            "assd": assd_from_distances(d_pg, d_gp, definition="mean_of_directed"),
        }
    if has_pred:
        return {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "assd": 0.0}
    return {"dice": 0.0, "jaccard": 0.0, "hd95": 0.0, "assd": 0.0}


def uctransnet_case_metrics(pred: ArrayLike, gt: ArrayLike) -> dict[str, float]:
    """Dice and IoU of one binary image as UCTransNet's test script computes them.

    Dice is ``2·Σ(p·g) / (Σp + Σg + 1e-5)`` (so two empty masks score 0) and IoU is scikit-learn's
    ``jaccard_score`` with its default ``zero_division`` (two empty masks score 0).

    Args:
        pred: binary prediction.
        gt: binary ground truth.

    Returns:
        ``dice`` and ``iou``.
    """
    tp, fp, fn, _ = confusion_counts(pred, gt)
    union = tp + fp + fn
    return {"dice": 2 * tp / (2 * tp + fp + fn + 1e-5), "iou": tp / union if union else 0.0}


def resunetpp_case_metrics(pred: ArrayLike, gt: ArrayLike) -> dict[str, float]:
    """Dice, IoU, precision and recall of one binary image as ResUNet++'s official test script computes them.

    Every ratio is smoothed with ``1e-15`` in numerator and denominator: Dice ``(2·tp + ε) / (Σp + Σg + ε)``,
    IoU ``(tp + ε) / (Σp + Σg - tp + ε)``, precision ``(tp + ε) / (Σp + ε)``, recall ``(tp + ε) / (Σg + ε)``.
    So an image with both masks empty scores 1 everywhere, an empty prediction has precision 1 and an empty
    ground truth recall 1 (where the exact ratios are undefined).

    Args:
        pred: binary prediction.
        gt: binary ground truth of the same shape.

    Returns:
        ``dice``, ``iou``, ``precision`` and ``recall``.
    """
    tp, fp, fn, _ = confusion_counts(pred, gt)
    eps = 1e-15
    return {
        "dice": (2 * tp + eps) / (2 * tp + fp + fn + eps),
        "iou": (tp + eps) / (tp + fp + fn + eps),
        "precision": (tp + eps) / (tp + fp + eps),
        "recall": (tp + eps) / (tp + fn + eps),
    }


def global_confusion_metrics(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Dataset-level scores from one confusion matrix over every pixel of the evaluated set (VM-UNet, ASC-Seg).

    Args:
        tp: true-positive pixels summed over the set.
        fp: false positives.
        fn: false negatives.
        tn: true negatives.

    Returns:
        ``dsc`` (F1), ``miou`` (foreground IoU, named as in those papers), ``accuracy``, ``specificity``,
        ``sensitivity`` and ``precision``; a ratio with a zero denominator is NaN.
    """

    def ratio(num: int, den: int) -> float:
        return num / den if den else float("nan")

    return {
        "dsc": ratio(2 * tp, 2 * tp + fp + fn),
        "miou": ratio(tp, tp + fp + fn),
        "accuracy": ratio(tp + tn, tp + fp + fn + tn),
        "specificity": ratio(tn, tn + fp),
        "sensitivity": ratio(tp, tp + fn),
        "precision": ratio(tp, tp + fp),
    }
