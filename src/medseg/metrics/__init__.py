"""Segmentation metrics: overlap and surface distances, an explicit empty-mask policy, and aggregation.

* :mod:`medseg.metrics.binary`: policy-free numpy metrics of two binary masks (2D or 3D).
* :mod:`medseg.metrics.cases`: per-case metrics with :class:`EmptyPolicy` (binary and multi-class).
* :mod:`medseg.metrics.summary`: dataset-level mean/std/median that count undefined values.
* :mod:`medseg.metrics.conventions`: formulas and empty-mask conventions of published evaluation scripts.
"""

from __future__ import annotations

from medseg.metrics.binary import (
    ASSD_DEFINITIONS,
    AssdDefinition,
    assd,
    assd_from_distances,
    confusion_counts,
    dice,
    hd95,
    hd95_from_distances,
    iou,
    normalize_spacing,
    precision,
    recall,
    surface_distances,
    symmetric_surface_distances,
)
from medseg.metrics.cases import CASE_METRICS, EmptyPolicy, binary_case_metrics, multiclass_case_metrics
from medseg.metrics.conventions import (
    global_confusion_metrics,
    resunetpp_case_metrics,
    transunet_case_metrics,
    uctransnet_case_metrics,
)
from medseg.metrics.summary import DEFAULT_SUMMARY_METRICS, mean_over_classes, summarize

__all__ = [
    "ASSD_DEFINITIONS",
    "CASE_METRICS",
    "DEFAULT_SUMMARY_METRICS",
    "AssdDefinition",
    "EmptyPolicy",
    "assd",
    "assd_from_distances",
    "binary_case_metrics",
    "confusion_counts",
    "dice",
    "global_confusion_metrics",
    "hd95",
    "hd95_from_distances",
    "iou",
    "mean_over_classes",
    "multiclass_case_metrics",
    "normalize_spacing",
    "precision",
    "recall",
    "resunetpp_case_metrics",
    "summarize",
    "surface_distances",
    "symmetric_surface_distances",
    "transunet_case_metrics",
    "uctransnet_case_metrics",
]
