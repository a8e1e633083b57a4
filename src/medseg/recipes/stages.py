"""Run an experiment: one training run, or every stage of a multi-stage recipe in order.

A staged run folder holds the experiment's ``config.yaml`` (with its stages), ``stages/<index>-<name>/`` (a complete
run folder per stage), ``stages.json`` (what each stage trained and reached) and ``checkpoints/best.ckpt`` /
``last.ckpt`` pointing at the last stage's, so ``medseg evaluate`` treats it like any run.

A stage passes weights on in two ways: ``init_from`` loads an earlier stage's **best** checkpoint into the model
(UTANet), ``teacher_from`` gives an earlier stage's **last** checkpoint to the ``reseg`` loss term as its frozen
teacher (ReSeg-UNet: stage 1 ``train.task: reconstruction``, stage 2 segmentation with the alignment term).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

from medseg.config import ExperimentConfig, save_config, stage_config
from medseg.engine.trainer import TrainResult, create_run_dir, train

__all__ = ["final_stage_config", "train_experiment"]

log = logging.getLogger(__name__)


def _publish(target: Path, link: Path) -> None:
    """Make ``link`` point at ``target`` (a relative symbolic link, or a copy where links are not possible)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    try:
        link.symlink_to(os.path.relpath(target, link.parent))
    except OSError:
        shutil.copy2(target, link)


def final_stage_config(config: ExperimentConfig) -> ExperimentConfig:
    """The configuration that produced a run's published checkpoints (the last stage's, or the run's own).

    Args:
        config: the experiment as written to the run folder.

    Returns:
        A single-run configuration.
    """
    return stage_config(config, config.stages[-1]) if config.stages else config


def train_experiment(config: ExperimentConfig) -> TrainResult:
    """Train a configuration: directly, or stage by stage when it has ``stages``.

    Args:
        config: the experiment.

    Returns:
        The result of the last stage, with ``run_dir`` the experiment's folder.
    """
    if not config.stages:
        return train(config)
    run_dir = create_run_dir(config)
    save_config(config, run_dir / "config.yaml")
    results: dict[str, TrainResult] = {}
    records = []
    for index, stage in enumerate(config.stages, start=1):
        init = results[stage.init_from].best_checkpoint if stage.init_from else None
        teacher = results[stage.teacher_from].last_checkpoint if stage.teacher_from else None
        stage_dir = run_dir / "stages" / f"{index}-{stage.name}"
        log.info(
            "stage %d/%d: %s%s%s",
            index,
            len(config.stages),
            stage.name,
            f" (initialised from {stage.init_from})" if init else "",
            f" (teacher: last checkpoint of {stage.teacher_from})" if teacher else "",
        )
        result = train(stage_config(config, stage, init, teacher), run_dir=stage_dir)
        results[stage.name] = result
        records.append(
            {
                "stage": stage.name,
                "folder": str(stage_dir.relative_to(run_dir)),
                "init_from": stage.init_from,
                "freeze_loaded": stage.freeze_loaded,
                "teacher_from": stage.teacher_from,
                "overrides": stage.overrides,
                "best_val_dice": None if math.isnan(result.best_val_dice) else result.best_val_dice,
            }
        )
        (run_dir / "stages.json").write_text(json.dumps(records, indent=2))
    final = results[config.stages[-1].name]
    for name in ("best.ckpt", "last.ckpt"):
        _publish(final.run_dir / "checkpoints" / name, run_dir / "checkpoints" / name)
    shutil.copy2(final.run_dir / "splits.json", run_dir / "splits.json")
    return TrainResult(
        run_dir, run_dir / "checkpoints" / "best.ckpt", run_dir / "checkpoints" / "last.ckpt", final.best_val_dice
    )
