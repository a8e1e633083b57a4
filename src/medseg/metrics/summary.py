"""Aggregation of per-case metrics into dataset-level statistics that keep undefined values visible."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["DEFAULT_SUMMARY_METRICS", "mean_over_classes", "summarize"]

DEFAULT_SUMMARY_METRICS: tuple[str, ...] = ("dice", "iou", "precision", "recall", "hd95")


def summarize(
    cases: Sequence[Mapping[str, float | str]], metrics: Sequence[str] = DEFAULT_SUMMARY_METRICS
) -> dict[str, dict[str, float | int]]:
    """Mean, population std and median of each metric over cases, counting undefined (NaN) values.

    NaN values are left out of ``mean``, ``std`` and ``median`` and counted in ``n_undefined``; nothing is
    dropped silently. When a metric has no valid value (all NaN, or no cases) its ``mean``, ``std`` and
    ``median`` are ``float('nan')``: ``json.dumps`` writes these as the non-standard token ``NaN``, so a
    caller writing strict JSON should map them to ``null`` (``math.isnan`` tells them apart).

    Args:
        cases: one mapping per case, e.g. from :func:`~medseg.metrics.cases.binary_case_metrics`; keys not in
            ``metrics`` (such as ``empty_case``) are ignored.
        metrics: names of the metrics to summarise; each must be present in every case.

    Returns:
        ``{metric: {"mean", "std", "median", "n_valid", "n_undefined"}}`` with float statistics (std with
        ``ddof=0``) and int counts.

    Raises:
        KeyError: if a case lacks one of ``metrics``.
    """
    summary: dict[str, dict[str, float | int]] = {}
    for name in metrics:
        values = np.array([float(case[name]) for case in cases], dtype=np.float64)
        valid = values[~np.isnan(values)]
        if valid.size:
            mean, std, median = float(valid.mean()), float(valid.std()), float(np.median(valid))
        else:
            mean = std = median = float("nan")
        summary[name] = {
            "mean": mean,
            "std": std,
            "median": median,
            "n_valid": int(valid.size),
            "n_undefined": int(values.size - valid.size),
        }
    return summary


def mean_over_classes(
    per_class: Mapping[str, Mapping[str, Mapping[str, float | int]]], metrics: Sequence[str]
) -> dict[str, float]:
    """The other aggregation order of multi-class results: mean over classes of each class's mean over cases.

    With undefined values this differs from the mean over cases of each case's class mean (what
    :func:`summarize` of the per-case class means gives), because classes and cases with undefined values
    weigh differently.

    Args:
        per_class: class name -> :func:`summarize` output over the cases for that class.
        metrics: the metrics to aggregate.

    Returns:
        Metric -> mean of the classes' ``mean`` values, leaving out classes whose mean is undefined (NaN when
        every class's is).
    """
    result: dict[str, float] = {}
    for name in metrics:
        means = np.array([float(stats[name]["mean"]) for stats in per_class.values()], dtype=np.float64)
        valid = means[~np.isnan(means)]
        result[name] = float(valid.mean()) if valid.size else float("nan")
    return result
