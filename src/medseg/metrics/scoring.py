"""The scoring half of each evaluation protocol: per-case metrics from label maps, in plain numpy.

:mod:`medseg.protocols` splits the evaluation of a case into prediction (the model, in the main process) and
scoring (this module). Scoring functions are top-level and take only arrays and plain values, so a
:class:`ScoreTask` pickles cheaply and runs in a worker process; this module imports neither torch nor the
protocols, so a worker starts in a fraction of a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medseg.metrics.binary import confusion_counts
from medseg.metrics.cases import EmptyPolicy, binary_case_metrics, multiclass_case_metrics
from medseg.metrics.conventions import resunetpp_case_metrics, transunet_case_metrics, uctransnet_case_metrics

__all__ = [
    "CaseScores",
    "ScoreTask",
    "compact_labels",
    "score_binary_clean",
    "score_perimage",
    "score_resunetpp",
    "score_transunet",
    "score_uctransnet",
    "score_vmunet",
    "timed_score",
]

_CLEAN = EmptyPolicy(both_empty="nan", hd95_empty="nan")


@dataclass
class CaseScores:
    """What scoring one case gives.

    Attributes:
        metrics: metric name -> value (NaN where undefined).
        per_class: class name -> metric name -> value (multi-class protocols only).
        info: extra fields written with the case (size, empty-mask case, pixel counts).
    """

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreTask:
    """The scoring of one case: a top-level function of this module and its keyword arguments.

    Attributes:
        function: the scoring function.
        arguments: its keyword arguments (arrays and plain values).
    """

    function: Callable[..., CaseScores]
    arguments: dict[str, Any]

    def run(self) -> CaseScores:
        """Score the case here, in this process.

        Returns:
            The case's scores.
        """
        return self.function(**self.arguments)


def timed_score(task: ScoreTask) -> tuple[CaseScores, float]:
    """Run a task and measure it (what a worker process executes).

    Args:
        task: the scoring of one case.

    Returns:
        The scores and the seconds spent computing them.
    """
    started = time.perf_counter()
    scores = task.run()
    return scores, time.perf_counter() - started


def compact_labels(labels: np.ndarray) -> np.ndarray:
    """A label map in the smallest type that holds it (uint8 for up to 256 classes), to send it cheaply.

    Comparisons with class indices (``== c``, ``> 0``) give the same masks as on the original array.

    Args:
        labels: integer or boolean label map.

    Returns:
        The same values, as uint8 when they fit, else unchanged.
    """
    if labels.dtype == np.bool_ or labels.dtype == np.uint8 or labels.size == 0:
        return labels
    if labels.min() >= 0 and labels.max() <= 255:
        return labels.astype(np.uint8)
    return labels


def score_perimage(
    prediction: np.ndarray,
    mask: np.ndarray,
    num_classes: int,
    class_names: Sequence[str],
    policy: EmptyPolicy,
    metrics: Sequence[str],
) -> CaseScores:
    """Per-image metrics at the original resolution with an empty-mask policy (the ``perimage`` family).

    Args:
        prediction: ``(H, W)`` predicted class indices.
        mask: ``(H, W)`` ground-truth class indices.
        num_classes: classes including background; 2 scores the binary case ``> 0``, more average the
            foreground classes.
        class_names: names of the foreground classes 1..K-1.
        policy: empty-mask policy.
        metrics: the metrics to keep.

    Returns:
        Metrics (class means for a multi-class task), per-class metrics and ``height``/``width`` (and
        ``empty_case`` for a binary task).
    """
    info: dict[str, Any] = {"height": int(mask.shape[0]), "width": int(mask.shape[1])}
    if num_classes == 2:
        values = binary_case_metrics(prediction > 0, mask > 0, policy=policy)
        info["empty_case"] = values.pop("empty_case")
        return CaseScores({k: float(values[k]) for k in metrics}, info=info)
    names = ("background", *class_names)
    values = multiclass_case_metrics(prediction, mask, num_classes, policy=policy, class_names=names)
    per_class = {name: {k: float(v[k]) for k in metrics} for name, v in values["per_class"].items()}
    return CaseScores({k: float(values["mean"][k]) for k in metrics}, per_class=per_class, info=info)


def score_uctransnet(prediction: np.ndarray, truth: np.ndarray) -> CaseScores:
    """UCTransNet's Dice and IoU of one image (:func:`~medseg.metrics.uctransnet_case_metrics`).

    Args:
        prediction: boolean prediction at the input size.
        truth: boolean ground truth at the input size.

    Returns:
        ``dice`` and ``iou``.
    """
    return CaseScores(uctransnet_case_metrics(prediction, truth))


def score_binary_clean(prediction: np.ndarray, truth: np.ndarray, metrics: Sequence[str]) -> CaseScores:
    """Exact binary metrics, every undefined value (both masks empty, one-sided distances) undefined.

    Args:
        prediction: boolean prediction.
        truth: boolean ground truth.
        metrics: the metrics to keep.

    Returns:
        The metrics and ``empty_case``.
    """
    values = binary_case_metrics(prediction, truth, policy=_CLEAN)
    return CaseScores({name: float(values[name]) for name in metrics}, info={"empty_case": values["empty_case"]})


def score_resunetpp(prediction: np.ndarray, truth: np.ndarray) -> CaseScores:
    """ResUNet++'s smoothed Dice, IoU, precision and recall (:func:`~medseg.metrics.resunetpp_case_metrics`).

    Args:
        prediction: boolean prediction at the input size.
        truth: boolean ground truth at the input size.

    Returns:
        ``dice``, ``iou``, ``precision`` and ``recall``.
    """
    return CaseScores(resunetpp_case_metrics(prediction, truth))


def score_vmunet(prediction: np.ndarray, truth: np.ndarray) -> CaseScores:
    """One image's share of the set's confusion matrix, and its Dice (to rank the cases).

    Args:
        prediction: boolean prediction at the input size.
        truth: boolean resized ground truth.

    Returns:
        ``dice`` (NaN when both are empty) and the counts ``tp``, ``fp``, ``fn``, ``tn`` as info.
    """
    tp, fp, fn, tn = confusion_counts(prediction, truth)
    dice = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return CaseScores({"dice": dice}, info={"tp": tp, "fp": fp, "fn": fn, "tn": tn})


def _clean_class_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Any) -> dict[str, float]:
    """One class of one volume under the clean TransUNet conventions (spacing-aware, undefined kept)."""
    values = binary_case_metrics(pred, truth, spacing, _CLEAN)
    return {"dice": values["dice"], "hd95": values["hd95"], "jaccard": values["iou"], "assd": values["assd"]}


def score_transunet(
    prediction: np.ndarray,
    mask: np.ndarray,
    class_names: Sequence[str],
    spacing: tuple[float, ...] | None,
    metrics: Sequence[str],
    clean: bool,
) -> CaseScores:
    """Per-class metrics of one volume as the TransUNet protocols compute them, and their mean over classes.

    Args:
        prediction: ``(D, H, W)`` predicted class indices.
        mask: ``(D, H, W)`` ground-truth class indices.
        class_names: names of the foreground classes 1..K-1.
        spacing: voxel spacing (used by the clean variant only).
        metrics: the metrics to average over classes.
        clean: the clean conventions (:class:`~medseg.protocols.transunet.TransUNetCleanProtocol`) instead of
            the reference script's (:func:`~medseg.metrics.transunet_case_metrics`, distances in voxels).

    Returns:
        Per-class metrics, their mean over the classes where defined, and the volume's size (and, clean, the
        unit of its distances).
    """
    per_class = {
        name: (
            _clean_class_metrics(prediction == index, mask == index, spacing)
            if clean
            else transunet_case_metrics(prediction == index, mask == index)
        )
        for index, name in enumerate(class_names, start=1)
    }
    means = {
        key: float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")
        for key in metrics
        for values in [np.array([per_class[name][key] for name in per_class], dtype=float)]
    }
    info: dict[str, Any] = {"slices": int(mask.shape[0]), "height": int(mask.shape[1]), "width": int(mask.shape[2])}
    if clean:
        info["distance_unit"] = "voxels" if spacing is None else "mm"
    return CaseScores(means, per_class=per_class, info=info)
