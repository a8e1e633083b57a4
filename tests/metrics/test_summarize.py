"""Aggregation over cases: NaN values are counted as undefined, never averaged or silently dropped."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from medseg.metrics import DEFAULT_SUMMARY_METRICS, EmptyPolicy, binary_case_metrics, summarize

NAN = float("nan")


def test_nan_values_are_counted_and_excluded() -> None:
    cases = [
        {"dice": 0.5, "hd95": 2.0},
        {"dice": NAN, "hd95": NAN},
        {"dice": 1.0, "hd95": 4.0},
        {"dice": 0.25, "hd95": NAN},
    ]
    summary = summarize(cases, metrics=("dice", "hd95"))
    assert summary["dice"] == {
        "mean": pytest.approx(0.5833333333),
        "std": pytest.approx(float(np.std([0.5, 1.0, 0.25]))),
        "median": 0.5,
        "n_valid": 3,
        "n_undefined": 1,
    }
    assert summary["dice"]["std"] == pytest.approx(0.3118047822)  # population std (ddof=0)
    hd = summary["hd95"]
    assert (hd["mean"], hd["std"], hd["median"], hd["n_valid"], hd["n_undefined"]) == (3.0, 1.0, 3.0, 2, 2)
    assert isinstance(hd["n_valid"], int) and isinstance(hd["n_undefined"], int)


def test_all_nan_and_no_cases() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        all_nan = summarize([{"iou": NAN}, {"iou": NAN}], metrics=("iou",))["iou"]
        none = summarize([], metrics=("iou",))["iou"]
    assert all(math.isnan(all_nan[key]) for key in ("mean", "std", "median"))
    assert (all_nan["n_valid"], all_nan["n_undefined"]) == (0, 2)
    assert all(math.isnan(none[key]) for key in ("mean", "std", "median"))
    assert (none["n_valid"], none["n_undefined"]) == (0, 0)


def test_summarize_case_metrics_with_empty_cases() -> None:
    empty = np.zeros((8, 8), dtype=bool)
    square = np.zeros((8, 8), dtype=bool)
    square[2:6, 2:6] = True
    policy = EmptyPolicy(both_empty="nan", hd95_empty="nan")
    cases = [
        binary_case_metrics(square, square, policy=policy),  # perfect
        binary_case_metrics(empty, empty, policy=policy),  # both empty: all NaN
        binary_case_metrics(empty, square, policy=policy),  # missed object: dice 0, precision NaN, hd95 NaN
    ]
    summary = summarize(cases)
    assert set(summary) == set(DEFAULT_SUMMARY_METRICS) == {"dice", "iou", "precision", "recall", "hd95"}
    assert summary["dice"]["mean"] == 0.5 and summary["dice"]["n_valid"] == 2
    assert summary["dice"]["n_undefined"] == 1
    assert summary["precision"]["mean"] == 1.0 and summary["precision"]["n_undefined"] == 2
    assert summary["recall"]["mean"] == 0.5 and summary["recall"]["n_undefined"] == 1
    assert summary["hd95"]["mean"] == 0.0 and summary["hd95"]["n_undefined"] == 2


def test_missing_metric_raises() -> None:
    with pytest.raises(KeyError, match="hd95"):
        summarize([{"dice": 1.0}], metrics=("dice", "hd95"))
