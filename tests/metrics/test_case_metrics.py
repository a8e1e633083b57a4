"""Per-case metrics: every empty-mask case under both policies, multi-class labels, input validation."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from medpy.metric import binary as mb

from medseg.metrics import CASE_METRICS, EmptyPolicy, binary_case_metrics, multiclass_case_metrics

NAN = float("nan")
SHAPE = (4, 6)
SPACING = (2.0, 0.5)
DIAGONAL = math.sqrt(73.0)  # sqrt((4 * 2.0) ** 2 + (6 * 0.5) ** 2)
EMPTY = np.zeros(SHAPE, dtype=bool)
SOME = np.zeros(SHAPE, dtype=bool)
SOME[1:3, 2:5] = True

POLICIES = [
    EmptyPolicy(both_empty=both, hd95_empty=one_sided) for both in ("one", "nan") for one_sided in ("nan", "diagonal")
]


def assert_metrics(result: dict[str, float | str], expected: dict[str, float | str]) -> None:
    """Compare metric dicts key by key, NaN equal to NaN."""
    assert set(result) == set(expected)
    for key, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(result[key], float) and math.isnan(result[key]), (key, result[key])
        else:
            assert result[key] == pytest.approx(value, abs=1e-12), (key, result[key])


@pytest.mark.parametrize("policy", POLICIES, ids=str)
def test_both_empty(policy: EmptyPolicy) -> None:
    score, distance = (1.0, 0.0) if policy.both_empty == "one" else (NAN, NAN)
    expected = dict.fromkeys(("dice", "iou", "precision", "recall"), score)
    expected |= {"hd95": distance, "assd": distance, "empty_case": "both"}
    assert_metrics(binary_case_metrics(EMPTY, EMPTY, SPACING, policy), expected)


@pytest.mark.parametrize("policy", POLICIES, ids=str)
def test_prediction_empty(policy: EmptyPolicy) -> None:
    distance = DIAGONAL if policy.hd95_empty == "diagonal" else NAN
    expected = {"dice": 0.0, "iou": 0.0, "precision": NAN, "recall": 0.0}
    expected |= {"hd95": distance, "assd": distance, "empty_case": "pred"}
    assert_metrics(binary_case_metrics(EMPTY, SOME, SPACING, policy), expected)


@pytest.mark.parametrize("policy", POLICIES, ids=str)
def test_ground_truth_empty(policy: EmptyPolicy) -> None:
    distance = DIAGONAL if policy.hd95_empty == "diagonal" else NAN
    expected = {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": NAN}
    expected |= {"hd95": distance, "assd": distance, "empty_case": "gt"}
    assert_metrics(binary_case_metrics(SOME, EMPTY, SPACING, policy), expected)


@pytest.mark.parametrize("policy", POLICIES, ids=str)
def test_both_nonempty_ignores_policy(policy: EmptyPolicy) -> None:
    pred = np.zeros(SHAPE, dtype=bool)
    pred[0:2, 2:4] = True  # 4 pixels, 2 shared with SOME (6 pixels)
    result = binary_case_metrics(pred, SOME, SPACING, policy)
    assert result["empty_case"] == "none"
    assert result["dice"] == pytest.approx(0.4)
    assert result["iou"] == pytest.approx(0.25)
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(1 / 3)
    assert result["hd95"] == pytest.approx(mb.hd95(pred, SOME, voxelspacing=SPACING), abs=1e-6)
    assert result["assd"] == pytest.approx(mb.assd(pred, SOME, voxelspacing=SPACING), abs=1e-6)


def test_diagonal_3d_anisotropic_and_default_spacing() -> None:
    gt = np.zeros((3, 10, 20), dtype=bool)
    gt[1, 4, 4] = True
    aniso = binary_case_metrics(np.zeros_like(gt), gt, (2.5, 0.7, 0.7), EmptyPolicy(hd95_empty="diagonal"))
    assert aniso["hd95"] == pytest.approx(math.sqrt(7.5**2 + 7.0**2 + 14.0**2))
    assert aniso["assd"] == aniso["hd95"]
    unit = binary_case_metrics(gt, np.zeros_like(gt), policy=EmptyPolicy(hd95_empty="diagonal"))
    assert unit["hd95"] == pytest.approx(math.sqrt(9 + 100 + 400))


def test_empty_policy_defaults_and_validation() -> None:
    assert EmptyPolicy() == EmptyPolicy(both_empty="one", hd95_empty="nan")
    with pytest.raises(ValueError, match="both_empty"):
        EmptyPolicy(both_empty="zero")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hd95_empty"):
        EmptyPolicy(hd95_empty="max")  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        EmptyPolicy().both_empty = "nan"  # type: ignore[misc]


def _labels() -> tuple[np.ndarray, np.ndarray]:
    """4-class label maps: classes 1 and 2 present in both, class 3 absent from both."""
    gt = np.zeros((20, 20), dtype=np.int64)
    gt[2:8, 2:8] = 1
    gt[10:18, 5:15] = 2
    pred = np.zeros_like(gt)
    pred[3:9, 2:7] = 1
    pred[11:18, 6:16] = 2
    return pred, gt


def test_multiclass_with_class_absent_in_both() -> None:
    pred, gt = _labels()
    names = ["background", "liver", "kidney", "tumour"]
    result = multiclass_case_metrics(pred, gt, 4, spacing=(0.8, 1.2), class_names=names)
    assert list(result["per_class"]) == ["liver", "kidney", "tumour"]
    for label, name in ((1, "liver"), (2, "kidney")):
        per = result["per_class"][name]
        assert per["empty_case"] == "none"
        assert per["dice"] == pytest.approx(mb.dc(pred == label, gt == label), abs=1e-6)
        assert per["hd95"] == pytest.approx(mb.hd95(pred == label, gt == label, voxelspacing=(0.8, 1.2)), abs=1e-6)
    tumour = result["per_class"]["tumour"]
    assert tumour["empty_case"] == "both" and tumour["dice"] == 1.0 and tumour["hd95"] == 0.0
    dices = [result["per_class"][n]["dice"] for n in names[1:]]
    assert result["mean"]["dice"] == pytest.approx(sum(dices) / 3)
    assert set(result["mean"]) == set(CASE_METRICS)

    nan_policy = multiclass_case_metrics(pred, gt, 4, spacing=(0.8, 1.2), policy=EmptyPolicy(both_empty="nan"))
    assert math.isnan(nan_policy["per_class"]["class_3"]["dice"])
    liver, kidney = nan_policy["per_class"]["class_1"], nan_policy["per_class"]["class_2"]
    for metric in CASE_METRICS:
        assert nan_policy["mean"][metric] == pytest.approx((liver[metric] + kidney[metric]) / 2)


def test_multiclass_mean_is_nan_only_when_all_classes_are_nan() -> None:
    _, gt = _labels()
    empty_pred = np.zeros_like(gt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice" RuntimeWarning
        result = multiclass_case_metrics(empty_pred, gt, 3)
    assert math.isnan(result["mean"]["precision"])  # undefined for every class
    assert math.isnan(result["mean"]["hd95"])
    assert result["mean"]["dice"] == 0.0
    assert result["mean"]["recall"] == 0.0


def test_multiclass_binary_is_class_one() -> None:
    pred, gt = _labels()
    pred, gt = (pred == 1).astype(np.uint8), (gt == 1).astype(np.uint8)
    result = multiclass_case_metrics(pred, gt, 2, spacing=0.5)
    expected = binary_case_metrics(pred == 1, gt == 1, spacing=0.5)
    assert result["per_class"] == {"class_1": expected}
    assert result["mean"] == {metric: expected[metric] for metric in CASE_METRICS}


def test_multiclass_validation() -> None:
    pred, gt = _labels()
    with pytest.raises(ValueError, match=r"\(20, 20\) vs \(20, 19\)"):
        multiclass_case_metrics(pred, gt[:, :19], 4)
    with pytest.raises(ValueError, match="at least 2"):
        multiclass_case_metrics(pred, gt, 1)
    with pytest.raises(ValueError, match="class_names needs 4 names"):
        multiclass_case_metrics(pred, gt, 4, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"ground truth labels must lie in \[0, 2\)"):
        multiclass_case_metrics(np.zeros_like(gt), gt, 2)
