from __future__ import annotations

import math

import pytest
import torch

from medseg.config import SchedulerConfig
from medseg.engine import batch_dice
from medseg.engine.schedules import lr_multiplier
from medseg.engine.trainer import resolve_precision


def test_batch_dice_binary() -> None:
    target = torch.zeros(3, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    target[1, :2] = 1
    logits = torch.full((3, 1, 4, 4), -10.0)
    logits[0, 0, :2] = 10.0  # perfect
    logits[1, 0, :1] = 10.0  # half of the object: 2*4/(4+8)
    dice = batch_dice(logits, target)  # third image: both empty -> 1
    torch.testing.assert_close(dice, torch.tensor([1.0, 2 / 3, 1.0]))


def test_batch_dice_multiclass_averages_foreground_classes() -> None:
    target = torch.tensor([[[0, 1], [2, 2]]])
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1, 0, 1] = 5  # class 1 right
    logits[0, 1, 1, 0] = 5  # class 2 pixel predicted as 1
    logits[0, 2, 1, 1] = 5
    # class 1: pred 2 px, truth 1, overlap 1 -> 2/3; class 2: pred 1, truth 2, overlap 1 -> 2/3
    torch.testing.assert_close(batch_dice(logits, target), torch.tensor([2 / 3]))


@pytest.mark.parametrize("name", ["poly", "cosine", "none"])
def test_schedules(name: str) -> None:
    config = SchedulerConfig(name=name, power=0.9, min_lr=1e-4)
    factor = lr_multiplier(config, base_lr=1e-2, total_steps=100, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    if name == "poly":
        assert factor(55) == pytest.approx((1 - 45 / 90) ** 0.9)
        assert factor(100) == 0
    elif name == "cosine":
        assert factor(55) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
        assert factor(100) == pytest.approx(0.01)
    else:
        assert factor(55) == 1.0


def test_precision_resolution() -> None:
    assert resolve_precision("32", "cpu") == "32"
    assert resolve_precision("auto", "cpu") in {"32", "bf16-mixed"}


def test_optimizer_and_plateau_schedule_from_config() -> None:
    from types import SimpleNamespace

    from medseg.config import load_config
    from medseg.engine import SegmentationTask

    config = load_config(
        None,
        [
            "model.params.base_channels=2",
            "optim.name=nadam",
            "optim.lr=0.01",
            "scheduler.name=plateau",
            "scheduler.factor=0.5",
            "scheduler.patience=3",
        ],
    )
    task = SegmentationTask(config.model_dump(mode="json"))
    task.trainer = SimpleNamespace(estimated_stepping_batches=10)
    setup = task.configure_optimizers()
    assert isinstance(setup["optimizer"], torch.optim.NAdam)
    plateau = setup["lr_scheduler"]["scheduler"]
    assert isinstance(plateau, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert setup["lr_scheduler"]["monitor"] == "val/loss" and setup["lr_scheduler"]["interval"] == "epoch"
    for _ in range(5):
        plateau.step(1.0)
    assert setup["optimizer"].param_groups[0]["lr"] == pytest.approx(0.005)
