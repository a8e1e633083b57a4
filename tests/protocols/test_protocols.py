"""Protocols against the reference formulas (medpy and the published scripts' conventions), on fixtures."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from medpy.metric import binary as medpy

from medseg.config import load_config
from medseg.data import LoadedCase
from medseg.errors import MedsegError
from medseg.inference import Predictor
from medseg.metrics import EmptyPolicy, global_confusion_metrics, transunet_case_metrics, uctransnet_case_metrics
from medseg.models import SegmentationModel, SegOutput
from medseg.protocols import ProtocolContext, get_protocol, list_protocols


class IntensityOracle(SegmentationModel):
    """Predicts the class encoded in the image intensity: class k where the pixel value is k / (K - 1)."""

    output_stride = 1

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.in_channels, self.num_classes = 1, num_classes
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        value = x[:, :1] + self.anchor
        if self.num_classes == 1:
            return SegOutput(logits=(value - 0.5) * 40)
        levels = torch.arange(self.num_classes, dtype=x.dtype).view(1, -1, 1, 1) / (self.num_classes - 1)
        return SegOutput(logits=-((value - levels) ** 2) * 1e4)


def oracle_predictor(num_classes: int, size: int) -> Predictor:
    config = load_config(
        None,
        [
            f"data.num_classes={num_classes}",
            "data.in_channels=1",
            "data.transforms.normalize=none",
            f"data.image_size={size}",
        ],
    )
    return Predictor(IntensityOracle(config.out_channels), config)


def context(num_classes: int, size: int, names: tuple[str, ...] | None = None) -> ProtocolContext:
    return ProtocolContext(
        num_classes=num_classes, image_size=size, class_names=names or tuple(f"c{i}" for i in range(1, num_classes))
    )


def square(shape: tuple[int, ...], top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[..., top : top + side, left : left + side] = True
    return mask


def test_every_protocol_is_listed_with_a_description() -> None:
    protocols = list_protocols()
    for name in (
        "transunet_synapse",
        "transunet_acdc",
        "uctransnet_2d",
        "vmunet_global",
        "perimage_binary",
        "transunet_synapse_clean",
        "transunet_acdc_clean",
        "perimage_binary_clean",
        "perimage",
    ):
        assert protocols[name], name
    with pytest.raises(MedsegError, match=r"unknown protocol 'nope'.*transunet_acdc"):
        get_protocol("nope", context(2, 32))
    with pytest.raises(MedsegError, match="expects 4 classes"):
        get_protocol("transunet_acdc", context(2, 32))


def test_transunet_case_metrics_match_medpy_and_conventions() -> None:
    rng = np.random.default_rng(0)
    gt = square((6, 30, 30), 5, 5, 12)
    pred = gt ^ (rng.random(gt.shape) < 0.05)
    values = transunet_case_metrics(pred, gt)
    assert values["dice"] == pytest.approx(medpy.dc(pred, gt), abs=1e-12)
    assert values["jaccard"] == pytest.approx(medpy.jc(pred, gt), abs=1e-12)
    assert values["hd95"] == pytest.approx(medpy.hd95(pred, gt), abs=1e-9)
    # ASSD as medpy 0.4.0 computed it (the SelfReg tables): the mean of the two directed averages
    assert values["assd"] == pytest.approx((medpy.asd(pred, gt) + medpy.asd(gt, pred)) / 2, abs=1e-9)
    empty = np.zeros_like(gt)
    assert transunet_case_metrics(pred, empty) == {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "assd": 0.0}
    assert transunet_case_metrics(empty, gt) == {"dice": 0.0, "jaccard": 0.0, "hd95": 0.0, "assd": 0.0}
    assert transunet_case_metrics(empty, empty) == {"dice": 0.0, "jaccard": 0.0, "hd95": 0.0, "assd": 0.0}


def test_uctransnet_and_global_formulas() -> None:
    gt = square((10, 10), 0, 0, 4)  # 16 px
    pred = square((10, 10), 0, 0, 2)  # 4 px inside
    values = uctransnet_case_metrics(pred, gt)
    assert values["dice"] == pytest.approx(8 / (20 + 1e-5), abs=1e-12)
    assert values["iou"] == pytest.approx(4 / 16)
    assert uctransnet_case_metrics(np.zeros((4, 4)), np.zeros((4, 4))) == {"dice": 0.0, "iou": 0.0}
    scores = global_confusion_metrics(tp=30, fp=10, fn=20, tn=140)
    assert scores["dsc"] == pytest.approx(60 / 90)
    assert scores["miou"] == pytest.approx(30 / 60)
    assert scores["accuracy"] == pytest.approx(170 / 200)
    assert scores["specificity"] == pytest.approx(140 / 150)
    assert scores["sensitivity"] == pytest.approx(30 / 50)


def acdc_like_volume() -> SimpleNamespace:
    """Class 1 predicted imperfectly, class 2 missed (only in GT), class 3 predicted but absent from GT."""
    shape = (4, 32, 32)
    truth = np.zeros(shape, dtype=np.int64)
    truth[square(shape, 4, 4, 10)] = 1
    truth[:2][square((2, 32, 32), 20, 20, 6)] = 2
    predicted = np.zeros(shape, dtype=np.int64)
    predicted[square(shape, 5, 4, 10)] = 1
    predicted[1:3][square((2, 32, 32), 2, 24, 5)] = 3
    return SimpleNamespace(
        case_id="v1", image=predicted.astype(np.float32) / 3, mask=truth, spacing=(10.0, 1.5, 1.5), predicted=predicted
    )


def test_transunet_acdc_per_volume_matches_medpy() -> None:
    volume = acdc_like_volume()
    protocol = get_protocol("transunet_acdc", context(4, 32, ("RV", "Myo", "LV")))
    result = protocol.evaluate_volume(oracle_predictor(4, 32), volume)
    np.testing.assert_array_equal(result.prediction, volume.predicted)
    rv = result.per_class["RV"]
    assert rv["dice"] == pytest.approx(medpy.dc(volume.predicted == 1, volume.mask == 1), abs=1e-9)
    assert rv["hd95"] == pytest.approx(medpy.hd95(volume.predicted == 1, volume.mask == 1), abs=1e-9)
    assert (result.per_class["Myo"]["dice"], result.per_class["Myo"]["hd95"]) == (0.0, 0.0)  # missed
    assert (result.per_class["LV"]["dice"], result.per_class["LV"]["hd95"]) == (1.0, 0.0)  # absent, predicted
    assert result.metrics["dice"] == pytest.approx((rv["dice"] + 0 + 1) / 3)
    assert result.metrics["hd95"] == pytest.approx(rv["hd95"] / 3)
    summary = protocol.summarize([result, result])
    assert summary["per_class"]["RV"]["dice"]["mean"] == pytest.approx(rv["dice"])


def test_transunet_clean_uses_spacing_and_reports_undefined() -> None:
    volume = acdc_like_volume()
    protocol = get_protocol("transunet_acdc_clean", context(4, 32, ("RV", "Myo", "LV")))
    result = protocol.evaluate_volume(oracle_predictor(4, 32), volume)
    expected = medpy.hd95(volume.predicted == 1, volume.mask == 1, voxelspacing=volume.spacing)
    assert result.per_class["RV"]["hd95"] == pytest.approx(expected, abs=1e-9)
    assert result.per_class["Myo"]["dice"] == 0.0 and np.isnan(result.per_class["Myo"]["hd95"])
    assert result.per_class["LV"]["dice"] == 0.0 and np.isnan(result.per_class["LV"]["hd95"])
    assert result.metrics["hd95"] == pytest.approx(expected)  # mean over the classes where it is defined


def test_transunet_resizes_slices_in_and_out() -> None:
    volume = acdc_like_volume()
    big = SimpleNamespace(
        case_id="v",
        image=np.kron(volume.image, np.ones((1, 2, 2), np.float32)),
        mask=np.kron(volume.mask, np.ones((1, 2, 2), np.int64)),
        spacing=None,
    )
    protocol = get_protocol("transunet_acdc", context(4, 32, ("RV", "Myo", "LV")))
    result = protocol.evaluate_volume(oracle_predictor(4, 32), big)
    assert result.prediction.shape == (4, 64, 64)
    assert result.per_class["RV"]["dice"] > 0.85


def binary_case(pred: np.ndarray, truth: np.ndarray, case_id: str) -> LoadedCase:
    return LoadedCase(case_id=case_id, image=pred.astype(np.float32)[..., None], mask=truth.astype(np.int64))


def test_uctransnet_2d_protocol_at_input_size() -> None:
    truth, pred = square((32, 32), 4, 4, 10), square((32, 32), 6, 4, 10)
    protocol = get_protocol("uctransnet_2d", context(2, 32))
    result = protocol.evaluate_case(oracle_predictor(2, 32), binary_case(pred, truth, "a"))
    assert result.metrics == pytest.approx(uctransnet_case_metrics(pred, truth))
    empty = np.zeros((32, 32), bool)
    clean = get_protocol("uctransnet_2d_clean", context(2, 32))
    assert np.isnan(clean.evaluate_case(oracle_predictor(2, 32), binary_case(empty, empty, "e")).metrics["dice"])
    assert protocol.evaluate_case(oracle_predictor(2, 32), binary_case(empty, empty, "e")).metrics["dice"] == 0.0


def test_vmunet_global_is_one_confusion_matrix() -> None:
    truth_a, pred_a = square((32, 32), 0, 0, 16), square((32, 32), 0, 0, 16)  # perfect, large
    truth_b, pred_b = square((32, 32), 0, 0, 2), square((32, 32), 10, 10, 2)  # missed, small
    protocol = get_protocol("vmunet_global", context(2, 32))
    predictor = oracle_predictor(2, 32)
    results = [
        protocol.evaluate_case(predictor, binary_case(p, t, n))
        for p, t, n in ((pred_a, truth_a, "a"), (pred_b, truth_b, "b"))
    ]
    summary = protocol.summarize(results)
    assert summary["confusion"] == {"tp": 256, "fp": 4, "fn": 4, "tn": 2048 - 264}
    assert summary["metrics"]["dsc"]["value"] == pytest.approx(512 / 520)
    assert summary["metrics"]["miou"]["value"] == pytest.approx(256 / 264)
    assert np.mean([r.metrics["dice"] for r in results]) == pytest.approx(0.5)  # per-image mean differs


def test_perimage_binary_fixed_policies() -> None:
    empty = np.zeros((32, 32), bool)
    predictor = oracle_predictor(2, 32)
    both_empty = binary_case(empty, empty, "e")
    assert get_protocol("perimage_binary", context(2, 32)).evaluate_case(predictor, both_empty).metrics["dice"] == 1
    clean = get_protocol("perimage_binary_clean", context(2, 32)).evaluate_case(predictor, both_empty)
    assert np.isnan(clean.metrics["dice"])
    configurable = get_protocol("perimage", ProtocolContext(2, 32, ("fg",), policy=EmptyPolicy("nan", "nan")))
    assert np.isnan(configurable.evaluate_case(predictor, both_empty).metrics["dice"])
    with pytest.raises(MedsegError, match="evaluates 2D images"):
        configurable.evaluate_volume(predictor, acdc_like_volume())
