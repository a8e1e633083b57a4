"""Each protocol's one-line result (``Protocol.headline``) from a summary, undefined values included."""

from __future__ import annotations

from medseg.protocols import ProtocolContext, get_protocol


def context(num_classes: int) -> ProtocolContext:
    return ProtocolContext(num_classes, 32, tuple(f"c{i}" for i in range(1, num_classes)))


def test_per_case_protocols_print_each_mean_and_na_for_undefined_or_missing() -> None:
    summary = {
        "metrics": {
            "dice": {"mean": 0.81234, "std": 0.1},
            "hd95": {"mean": None, "n_valid": 0},
            "assd": {"n_valid": 0},
        }
    }
    line = get_protocol("transunet_acdc", context(4)).headline(summary)
    assert line == "dice 0.8123, hd95 n/a, assd n/a"


def test_global_protocol_prints_the_confusion_matrix_scores() -> None:
    summary = {
        "metrics": {
            "dsc": {"value": 0.9},
            "miou": {"value": 0.8},
            "accuracy": {"value": 0.95},
            "specificity": {"value": 0.97},
            "sensitivity": {"value": None},
            "precision": {"value": 0.5},
        }
    }
    line = get_protocol("vmunet_global", context(2)).headline(summary)
    assert line.startswith("DSC 0.9000, mIoU 0.8000, Acc 0.9500, Spe 0.9700, Sen n/a")
    assert "confusion matrix" in line
