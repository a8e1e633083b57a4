"""Run an experiment: one training run, or every stage of a multi-stage recipe in order.

A staged run folder holds the experiment's ``config.yaml`` (with its stages), ``stages/<index>-<name>/`` (a complete
run folder per stage), ``stages.json`` (what each stage trained and reached, and whether it is ``running`` or
``finished``) and ``checkpoints/best.ckpt`` / ``last.ckpt`` pointing at the last stage's, so ``medseg evaluate``
treats it like any run.

Resuming a staged run (:func:`resume_experiment`) skips the finished stages, continues the stage that was cut off
from its last checkpoint and then trains the remaining ones.

A stage passes weights on in two ways: ``init_from`` loads an earlier stage's **best** checkpoint into the model
(UTANet), ``teacher_from`` makes an earlier stage's **last** checkpoint the stage's ``loss.teacher_checkpoint``, the
frozen teacher of the loss terms that learn from one (ReSeg-UNet: stage 1 ``train.task: reconstruction``, stage 2
segmentation with the ``reseg`` alignment term).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

from medseg.checkpoints import final_stage_config
from medseg.config import ConfigError, ExperimentConfig, load_config, save_config, stage_config
from medseg.engine.outputs import atomic_write, writing
from medseg.engine.trainer import TrainResult, check_loggers, create_run_dir, is_rank_zero, train

__all__ = ["RESUME_OVERRIDES", "final_stage_config", "load_run_config", "resume_experiment", "train_experiment"]

RESUME_OVERRIDES = (
    "train.devices",
    "train.num_nodes",
    "train.strategy",
    "train.accelerator",
    "train.threads",
    "train.progress_bar",
    "train.loggers",
    "train.checkpoint_every_n_steps",
    "data.num_workers",
    "data.cache",
    "data.cache_dir",
)
"""Settings a resumed run may change: where and how it runs, not what it trains."""

log = logging.getLogger(__name__)


def _publish(target: Path, link: Path) -> None:
    """Make ``link`` point at ``target`` (a relative symbolic link, or a copy where links are not possible)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    try:
        link.symlink_to(os.path.relpath(target, link.parent))
    except OSError:
        shutil.copy2(target, link)


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """The configuration of a run folder, for resuming it, with runtime overrides only.

    Args:
        run_dir: a run folder written by ``medseg train``.
        overrides: dotted ``key=value`` texts; only the keys of :data:`RESUME_OVERRIDES`.

    Returns:
        The run's configuration with the overrides.

    Raises:
        ConfigError: no run folder, no ``config.yaml`` in it, or an override of what the run trains.
    """
    if not (run_dir / "config.yaml").is_file():
        what = "has no config.yaml" if run_dir.is_dir() else "does not exist"
        raise ConfigError(f"cannot resume {run_dir}: the run folder {what}")
    for text in overrides or []:
        key = text.partition("=")[0].strip()
        if key not in RESUME_OVERRIDES:
            raise ConfigError(
                f"cannot resume with {text!r}: a resumed run keeps what it trains; only "
                f"{', '.join(RESUME_OVERRIDES)} may change (start a new run to change the rest)"
            )
    return load_config(run_dir / "config.yaml", overrides)


def _read_records(run_dir: Path) -> list[dict[str, Any]]:
    try:
        records = json.loads((run_dir / "stages.json").read_text())
    except (OSError, ValueError):
        return []
    return records if isinstance(records, list) else []


def _write_records(run_dir: Path, records: list[dict[str, Any]]) -> None:
    if is_rank_zero():
        atomic_write(run_dir / "stages.json", lambda stream: stream.write(json.dumps(records, indent=2).encode()))


def resume_experiment(run_dir: Path, overrides: list[str] | None = None) -> TrainResult:
    """Continue an interrupted run (single or staged) where it stopped; a finished run is left as it is.

    Args:
        run_dir: the run folder.
        overrides: runtime overrides (:data:`RESUME_OVERRIDES`).

    Returns:
        The result, with ``finished_before`` set when there was nothing left to train.
    """
    config = load_run_config(run_dir, overrides)
    return train_experiment(config, run_dir=run_dir, resume=True)


def train_experiment(config: ExperimentConfig, run_dir: Path | None = None, resume: bool = False) -> TrainResult:
    """Train a configuration: directly, or stage by stage when it has ``stages``.

    Args:
        config: the experiment.
        run_dir: the run folder; a new one under ``config.output_dir`` when ``None``. Required to resume.
        resume: continue the run in ``run_dir``: finished stages are not trained again, the stage that was cut
            off continues from its last checkpoint.

    Returns:
        The result of the last stage, with ``run_dir`` the experiment's folder.
    """
    if not config.stages:
        return train(config, run_dir, resume=resume)
    check_loggers(config)
    previous = {record.get("stage"): record for record in _read_records(run_dir)} if resume and run_dir else {}
    if previous and all(previous.get(stage.name, {}).get("status") == "finished" for stage in config.stages):
        final = previous[config.stages[-1].name]
        log.info("%s finished before (all %d stages): nothing to train", run_dir, len(config.stages))
        score = final.get("best_val_dice")
        return TrainResult(
            run_dir,
            run_dir / "checkpoints" / "best.ckpt",
            run_dir / "checkpoints" / "last.ckpt",
            float("nan") if score is None else float(score),
            finished_before=True,
        )
    if run_dir is None or not resume:
        run_dir = run_dir or create_run_dir(config)
        if is_rank_zero():
            with writing(run_dir / "config.yaml"):
                save_config(config, run_dir / "config.yaml")
    results: dict[str, TrainResult] = {}
    records: list[dict[str, Any]] = []
    for index, stage in enumerate(config.stages, start=1):
        init = results[stage.init_from].best_checkpoint if stage.init_from else None
        teacher = results[stage.teacher_from].last_checkpoint if stage.teacher_from else None
        stage_dir = run_dir / "stages" / f"{index}-{stage.name}"
        record = previous.get(stage.name, {})
        if record.get("status") == "finished":
            log.info("stage %d/%d: %s finished before, not trained again", index, len(config.stages), stage.name)
            score = record.get("best_val_dice")
            results[stage.name] = TrainResult(
                stage_dir,
                stage_dir / "checkpoints" / "best.ckpt",
                stage_dir / "checkpoints" / "last.ckpt",
                float("nan") if score is None else float(score),
            )
            records.append(record)
            continue
        log.info(
            "stage %d/%d: %s%s%s",
            index,
            len(config.stages),
            stage.name,
            f" (initialised from {stage.init_from})" if init else "",
            f" (teacher: last checkpoint of {stage.teacher_from})" if teacher else "",
        )
        record = {
            "stage": stage.name,
            "folder": str(stage_dir.relative_to(run_dir)),
            "init_from": stage.init_from,
            "freeze_loaded": stage.freeze_loaded,
            "teacher_from": stage.teacher_from,
            "overrides": stage.overrides,
            "status": "running",
            "best_val_dice": None,
        }
        _write_records(run_dir, [*records, record])
        resume_stage = resume and stage_dir.is_dir()
        result = train(stage_config(config, stage, init, teacher), run_dir=stage_dir, resume=resume_stage)
        results[stage.name] = result
        record.update(
            status="finished", best_val_dice=None if math.isnan(result.best_val_dice) else result.best_val_dice
        )
        records.append(record)
        _write_records(run_dir, records)
    final = results[config.stages[-1].name]
    if is_rank_zero():
        for name in ("best.ckpt", "last.ckpt"):
            _publish(final.run_dir / "checkpoints" / name, run_dir / "checkpoints" / name)
        shutil.copy2(final.run_dir / "splits.json", run_dir / "splits.json")
    return TrainResult(
        run_dir, run_dir / "checkpoints" / "best.ckpt", run_dir / "checkpoints" / "last.ckpt", final.best_val_dice
    )
