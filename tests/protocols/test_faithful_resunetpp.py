"""The ResUNet++ Kvasir protocol: 8-bit resizing to the input size and ``+1e-15`` smoothed per-image metrics."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.data import LoadedCase
from medseg.errors import MedsegError
from medseg.metrics import resunetpp_case_metrics
from medseg.protocols import get_protocol, list_protocols
from medseg.protocols.eightbit import resize_linear_u8
from tests.protocols.test_protocols import context, oracle_predictor

EPS = 1e-15


def official(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The official script's formulas on flattened 0/1 arrays (metrics.py of the ResUNet++ release)."""
    y_true, y_pred = y_true.reshape(-1).astype(np.uint8), y_pred.reshape(-1).astype(np.uint8)
    intersection = (y_true * y_pred).sum()
    union = y_true.sum() + y_pred.sum() - intersection
    return {
        "dice": (2 * intersection + EPS) / (y_true.sum() + y_pred.sum() + EPS),
        "iou": (intersection + EPS) / (union + EPS),
        "precision": (intersection + EPS) / (y_pred.sum() + EPS),
        "recall": (intersection + EPS) / (y_true.sum() + EPS),
    }


def square(top: int, side: int, size: int = 10) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[top : top + side, top : top + side] = True
    return mask


@pytest.mark.parametrize(
    ("pred", "truth", "expected"),
    [
        (square(0, 2), square(0, 4), {"dice": 8 / 20, "iou": 4 / 16, "precision": 1.0, "recall": 4 / 16}),
        (square(0, 0), square(0, 4), {"dice": 0.0, "iou": 0.0, "precision": 1.0, "recall": 0.0}),  # empty prediction
        (square(0, 4), square(0, 0), {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 1.0}),  # empty truth
        (square(0, 0), square(0, 0), {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}),  # both empty
    ],
)
def test_smoothed_formulas(pred: np.ndarray, truth: np.ndarray, expected: dict[str, float]) -> None:
    values = resunetpp_case_metrics(pred, truth)
    assert values == pytest.approx(expected, abs=1e-12)
    assert values == pytest.approx(official(truth, pred), rel=1e-15)


def test_protocol_scores_at_input_size() -> None:
    assert "resunetpp_kvasir" in list_protocols()
    mask = np.zeros((45, 61), np.int64)
    mask[5:30, 10:40] = 1
    predicted = np.zeros_like(mask)
    predicted[8:30, 10:45] = 1
    case = LoadedCase("k", (predicted * 255).astype(np.uint8)[..., None], mask)
    protocol = get_protocol("resunetpp_kvasir", context(2, 32))
    result = protocol.evaluate_case(oracle_predictor(2, 32), case)
    assert result.prediction.shape == (32, 32)
    truth = resize_linear_u8((mask * 255).astype(np.uint8), (32, 32)) > 0.5  # test.py keeps the mask in 0..255
    prediction = resize_linear_u8((predicted * 255).astype(np.uint8), (32, 32)) > 0
    assert result.metrics == pytest.approx(official(truth, prediction), rel=1e-12)
    empty = LoadedCase("e", np.zeros((40, 40, 1), np.uint8), np.zeros((40, 40), np.int64))
    assert protocol.evaluate_case(oracle_predictor(2, 32), empty).metrics == pytest.approx(
        {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    )
    summary = protocol.summarize([result])
    assert summary["metrics"]["precision"]["n_undefined"] == 0
    with pytest.raises(MedsegError, match="binary"):
        get_protocol("resunetpp_kvasir", context(3, 32))
