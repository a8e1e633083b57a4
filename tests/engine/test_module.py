from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from medseg.config import SchedulerConfig, load_config
from medseg.engine import SegmentationTask, batch_dice
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
    task = SegmentationTask(config)
    task.trainer = SimpleNamespace(estimated_stepping_batches=10)
    setup = task.configure_optimizers()
    assert isinstance(setup["optimizer"], torch.optim.NAdam)
    plateau = setup["lr_scheduler"]["scheduler"]
    assert isinstance(plateau, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert setup["lr_scheduler"]["monitor"] == "val/loss" and setup["lr_scheduler"]["interval"] == "epoch"
    for _ in range(5):
        plateau.step(1.0)
    assert setup["optimizer"].param_groups[0]["lr"] == pytest.approx(0.005)


def augmenting_task(*overrides: str) -> SegmentationTask:
    settings = [
        "model.params.base_channels=2",
        "data.image_size=16",
        "data.transforms.hflip=1",
        "data.transforms.vflip=0",
    ]
    return SegmentationTask(load_config(None, [*settings, *overrides]))


def ramp_batch(size: int = 2) -> dict[str, Any]:
    image = torch.arange(16.0).repeat(size, 3, 16, 1) / 16
    mask = torch.zeros(size, 16, 16, dtype=torch.long)
    mask[:, :, :4] = 1
    return {"image": image, "mask": mask, "case_id": [f"c{index}" for index in range(size)]}


def fake_trainer(training: bool, batches_done: int = 0) -> SimpleNamespace:
    """What the batch hook reads of the trainer: mode, epoch, rank and the batches already done this epoch."""
    progress = SimpleNamespace(current=SimpleNamespace(ready=batches_done))
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
    return SimpleNamespace(training=training, current_epoch=0, global_rank=0, fit_loop=loop)


def test_the_batch_hook_augments_training_batches_only() -> None:
    task = augmenting_task("data.transforms.brightness_prob=1")
    batch = ramp_batch()
    task.trainer = fake_trainer(training=False)
    assert task.on_after_batch_transfer(batch, 0) is batch
    task.trainer = fake_trainer(training=True)
    first = task.on_after_batch_transfer(batch, 0)
    assert torch.equal(first["mask"], batch["mask"].flip(-1)) and first["case_id"] == batch["case_id"]
    assert not torch.allclose(first["image"], batch["image"].flip(-1))  # and brightened
    task.trainer = fake_trainer(training=True, batches_done=1)
    second = task.on_after_batch_transfer(batch, 0)
    assert not torch.equal(second["image"], first["image"])  # the next batch draws other brightness factors
    task.trainer = fake_trainer(training=True)  # the same batch index (a new epoch's start, or a resumed run)
    torch.testing.assert_close(task.on_after_batch_transfer(batch, 0)["image"], first["image"])


def test_a_reconstruction_run_augments_the_geometry_only() -> None:
    task = augmenting_task("train.task=reconstruction", "data.transforms.brightness_prob=1")
    task.trainer = fake_trainer(training=True)
    batch = ramp_batch()
    out = task.on_after_batch_transfer(batch, 0)
    assert torch.equal(out["image"], batch["image"].flip(-1)) and torch.equal(out["mask"], batch["mask"].flip(-1))


def test_training_sees_augmented_batches_and_validation_does_not(tmp_path: Path) -> None:
    seen: dict[str, list[torch.Tensor]] = {"train": [], "val": []}

    class Record(Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, index: int) -> None:
            seen["train"].append(batch["mask"])

        def on_validation_batch_start(
            self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, index: int, loader: int = 0
        ) -> None:
            seen["val"].append(batch["mask"])

    items = [{key: value[0] for key, value in ramp_batch(1).items()} for _ in range(4)]
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[Record()],
        default_root_dir=tmp_path,
    )
    trainer.fit(augmenting_task(), DataLoader(items, batch_size=2), DataLoader(items, batch_size=2))
    original = ramp_batch()["mask"]
    assert len(seen["train"]) == 2 and all(torch.equal(mask, original.flip(-1)) for mask in seen["train"])
    assert len(seen["val"]) == 2 and all(torch.equal(mask, original) for mask in seen["val"])
