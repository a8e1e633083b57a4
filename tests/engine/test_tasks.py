"""Training tasks: the registry behind ``train.task``, the task hooks the engine asks, the typed configuration the
module takes, and configurations and checkpoints written before ``train.task_params``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from medseg.config import ConfigError, ExperimentConfig, config_from_dict, load_config, stage_config
from medseg.engine import SegmentationTask, train
from medseg.tasks import TASKS, ReconstructionTask, TrainingTask, build_task, register_task
from tests.test_cli import TINY

OLD_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "evaluation" / "binary2d" / "run"

pytestmark = pytest.mark.usefixtures("one_thread")


class Inverted(TrainingTask):
    """A task of this test: the model sees ``scale - image``; the lowest validation loss picks ``best.ckpt``."""

    name = "inverted"
    monitor = "val/loss"
    mode = "min"
    evaluates = False
    checkpoint_rule = "best: lowest val/loss on inverted images; last: final epoch"

    def __init__(self, config: ExperimentConfig, scale: float = 1.0) -> None:
        super().__init__(config)
        self.scale = scale

    def model_input(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.scale - batch["image"]


@pytest.fixture
def inverted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TASKS, "_entries", dict(TASKS._entries))
    register_task(Inverted)


def test_train_task_names_a_registered_task() -> None:
    assert TASKS.names() == ["reconstruction", "segmentation"]
    assert type(build_task(load_config(None))) is TrainingTask
    assert type(build_task(load_config(None, ["train.task=reconstruction"]))) is ReconstructionTask
    with pytest.raises(ConfigError, match=r"train\.task: unknown task 'recon'; registered: reconstruction, segm"):
        load_config(None, ["train.task=recon"])


def test_task_params_are_the_task_constructor_arguments() -> None:
    config = load_config(None, ["train.task=reconstruction", "train.task_params={target: mask}"])
    assert build_task(config).target == "mask"
    with pytest.raises(ConfigError, match="task 'reconstruction' takes no colour; valid: target"):
        load_config(None, ["train.task=reconstruction", "train.task_params={colour: red}"])
    with pytest.raises(ConfigError, match=r"train\.task_params\.target: must be image or mask, got 'edges'"):
        load_config(None, ["train.task=reconstruction", "train.task_params={target: edges}"])
    with pytest.raises(ConfigError, match="task 'segmentation' takes no target; valid: none"):
        load_config(None, ["train.task_params={target: mask}"])


def test_the_engine_asks_the_task_not_its_name(inverted: None, tmp_path: Path) -> None:
    task = ["train.task=inverted", "train.task_params={scale: 2}"]
    config = load_config(None, [*TINY, f"output_dir={tmp_path}", "train.epochs=1", *task])
    module = SegmentationTask(config)
    image = torch.rand(2, 3, 32, 32)
    assert torch.equal(module.model_input({"image": image, "mask": torch.zeros(2, 32, 32)}), 2 - image)
    result = train(config)
    assert math.isnan(result.best_val_dice)
    summary = json.loads((result.run_dir / "train_summary.json").read_text())
    assert summary["checkpoint_rule"] == Inverted.checkpoint_rule and "best_val_loss" in summary
    header = (result.run_dir / "metrics.csv").read_text().splitlines()[0]
    assert "val/loss" in header and "val/dice" not in header


def test_the_module_takes_the_typed_config_and_stores_the_plain_one() -> None:
    config = load_config(None, ["model.params.base_channels=2"])
    module = SegmentationTask(config)
    assert module.config is config
    assert module.hparams["config"] == config.model_dump(mode="json")


def test_configs_written_before_task_params_still_load() -> None:
    old = {"train": {"task": "reconstruction", "recon_target": "mask"}}
    assert config_from_dict(old).train.task_params == {"target": "mask"}
    assert old == {"train": {"task": "reconstruction", "recon_target": "mask"}}  # the tree read stays as it was
    assert config_from_dict({"train": {"task": "reconstruction", "recon_target": "image"}}).train.task_params == {}
    assert config_from_dict({"train": {"recon_target": "mask"}}).train.task_params == {}  # it did nothing there
    stage = {"name": "teacher", "overrides": {"train.task": "reconstruction", "train.recon_target": "mask"}}
    staged = config_from_dict({"stages": [stage]})
    assert stage_config(staged, staged.stages[0]).train.task_params == {"target": "mask"}


def test_a_checkpoint_written_before_task_params_loads_into_the_module(tmp_path: Path) -> None:
    stored = torch.load(OLD_RUN / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert stored["hyper_parameters"]["config"]["train"]["recon_target"] == "image"
    checkpoint = tmp_path / "old.ckpt"  # with the version key that Lightning's loader reads
    torch.save({**stored, "pytorch-lightning_version": pl.__version__}, checkpoint)
    module = SegmentationTask.load_from_checkpoint(checkpoint, map_location="cpu")
    assert type(module.task) is TrainingTask and module.config.train.task_params == {}
    state = module.state_dict()
    assert state.keys() == stored["state_dict"].keys()
    assert all(torch.equal(state[key], value) for key, value in stored["state_dict"].items())
