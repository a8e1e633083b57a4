"""Run a training configuration end to end: run folder, data, model, Lightning trainer, checkpoints; resume an
interrupted run."""

from __future__ import annotations

import datetime
import importlib
import json
import logging
import os
import platform
import secrets
import sys
import time
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader

import medseg
from medseg.config import ConfigError, ExperimentConfig, load_config, resolve_path, save_config
from medseg.data import build_datasets, build_reader, make_splits, resolve_num_workers, save_splits
from medseg.engine.callbacks import EpochHistory, EpochProgressBar, EpochSeeds
from medseg.engine.checkpoint import (
    AtomicCheckpointIO,
    CheckpointError,
    ResumePoint,
    RunCheckpoint,
    find_resume_point,
    load_model_weights,
)
from medseg.engine.module import SegmentationTask
from medseg.engine.outputs import atomic_write, writing
from medseg.errors import MedsegError
from medseg.inference.predictor import resolve_precision
from medseg.runtime import set_threads

__all__ = [
    "LOGGER_EXTRAS",
    "MissingExtraError",
    "TrainResult",
    "build_loggers",
    "check_loggers",
    "create_run_dir",
    "freeze_loaded_parameters",
    "is_rank_zero",
    "load_initial_weights",
    "read_summary",
    "resolve_precision",
    "show_progress_bar",
    "train",
]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where a finished run put its outputs.

    Attributes:
        run_dir: the run folder.
        best_checkpoint: checkpoint with the best value of the task's monitored validation metric (the highest
            validation Dice of a segmentation run).
        last_checkpoint: checkpoint after the last epoch.
        best_val_dice: that highest validation Dice (NaN for a task that monitors another value).
        finished_before: the run was resumed but had already finished; nothing was trained.
    """

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_val_dice: float
    finished_before: bool = False


class MissingExtraError(MedsegError):
    """A configured feature needs a package of an optional extra that is not installed."""


LOGGER_EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
"""``train.loggers`` name -> the Python package it needs, installed by the medseg extra of the same name."""


def is_rank_zero() -> bool:
    """Whether this process is, or will become, the first process (global rank 0) of the run.

    Read from what the launchers set: torchrun's ``RANK``, Lightning's ``LOCAL_RANK`` and ``NODE_RANK`` for the
    processes it starts, SLURM's ``SLURM_PROCID``; a process without them is rank 0. Only rank 0 creates and writes
    the run folder.

    Returns:
        ``True`` on the first process.
    """
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if "LOCAL_RANK" in env or "NODE_RANK" in env:
        return int(env.get("LOCAL_RANK", 0)) == 0 and int(env.get("NODE_RANK", 0)) == 0
    return int(env.get("SLURM_PROCID", 0)) == 0


def create_run_dir(config: ExperimentConfig, overwrite: bool = False) -> Path:
    """Create ``<output_dir>/<name>``; an existing non-empty folder gets a numbered sibling unless ``overwrite``.

    Only the first process of a multi-device run creates it; the others learn its name from that process once
    Lightning has connected them (the checkpoint folders are broadcast from rank 0).

    Args:
        config: experiment configuration.
        overwrite: reuse an existing folder (its old contents stay until overwritten).

    Returns:
        The new, empty (or reused) run folder.
    """
    parent = resolve_path(config.output_dir)
    run_dir = parent / config.name
    index = 2
    while not overwrite and run_dir.exists() and any(run_dir.iterdir()):
        run_dir = parent / f"{config.name}-{index}"
        index += 1
    if is_rank_zero():
        with writing(run_dir):
            run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The run's ``train_summary.json`` (empty when missing or unreadable).

    Args:
        run_dir: the run folder.

    Returns:
        The summary; ``status`` is ``running``, ``stopped`` (an error, see ``error``) or ``finished``.
    """
    try:
        summary = json.loads((run_dir / "train_summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write(run_dir / "train_summary.json", lambda stream: stream.write(json.dumps(summary, indent=2).encode()))


def check_loggers(config: ExperimentConfig) -> None:
    """Refuse, before anything is trained or written, loggers whose optional package is not installed.

    Args:
        config: experiment configuration.

    Raises:
        MissingExtraError: the message names the logger and the extra to install.
    """
    for name in config.train.loggers:
        package = LOGGER_EXTRAS.get(name)
        if package is None:
            continue
        try:
            importlib.import_module(package)
        except ImportError:
            raise MissingExtraError(
                f"train.loggers: {name} needs the {package} package, which is not installed: "
                f"pip install 'medseg[{name}]'"
            ) from None


def build_loggers(config: ExperimentConfig, run_dir: Path, runs: dict[str, str]) -> list[Logger]:
    """Lightning loggers for ``train.loggers``, writing under ``<run_dir>/logs/``.

    ``csv``: Lightning's ``CSVLogger`` (``logs/csv/metrics.csv``); ``tensorboard``: ``logs/tensorboard/``;
    ``wandb``: Weights & Biases, project ``$WANDB_PROJECT`` or ``medseg``, files in ``logs/wandb/``; ``mlflow``:
    experiment ``name``, at ``$MLFLOW_TRACKING_URI`` or in ``logs/mlruns``. A resumed run continues its W&B and
    MLflow runs (their ids are kept in ``runs``).

    Args:
        config: experiment configuration.
        run_dir: the run folder.
        runs: logger name -> run id of the W&B or MLflow run to continue; receives the id of a new W&B run.

    Returns:
        The loggers, in the configured order.

    Raises:
        MissingExtraError: a logger's package is not installed; the message names the extra to install.
    """
    check_loggers(config)
    from lightning.pytorch import loggers

    save_dir = run_dir / "logs"
    built: list[Logger] = []
    for name in dict.fromkeys(config.train.loggers):
        if name == "csv":
            built.append(loggers.CSVLogger(save_dir, name="csv", version=""))
        elif name == "tensorboard":
            built.append(loggers.TensorBoardLogger(save_dir, name="tensorboard", version="", default_hp_metric=False))
        elif name == "wandb":
            runs.setdefault("wandb", secrets.token_hex(4))
            project = os.environ.get("WANDB_PROJECT", "medseg")
            built.append(
                loggers.WandbLogger(
                    name=run_dir.name, project=project, save_dir=str(save_dir), id=runs["wandb"], resume="allow"
                )
            )
        else:
            uri = os.environ.get("MLFLOW_TRACKING_URI") or (save_dir / "mlruns").as_uri()
            built.append(
                loggers.MLFlowLogger(
                    experiment_name=config.name, run_name=run_dir.name, tracking_uri=uri, run_id=runs.get("mlflow")
                )
            )
    return built


def _logger_runs(built: Sequence[Logger], runs: dict[str, str]) -> dict[str, str]:
    """``runs`` with the id of an MLflow run created now (rank 0 only: it creates the run)."""
    from lightning.pytorch.loggers import MLFlowLogger

    for logger in built:
        if isinstance(logger, MLFlowLogger) and logger.run_id:
            runs["mlflow"] = logger.run_id
    return runs


def _same_config(config: ExperimentConfig, path: Path) -> bool:
    """Whether ``path`` (a run's ``config.yaml``) holds ``config``."""
    try:
        return load_config(path).model_dump() == config.model_dump()
    except MedsegError:
        return False


def _save_run_config(config: ExperimentConfig, path: Path, resume: bool) -> None:
    """Write ``config.yaml``; a resumed run rewrites it only when overrides changed it, keeping its header."""
    if resume and path.is_file():
        if _same_config(config, path):
            return
        header = "".join(takewhile(lambda line: line.startswith("#"), path.read_text().splitlines(keepends=True)))
        with writing(path):
            save_config(config, path)
            path.write_text(header + path.read_text())
        return
    with writing(path):
        save_config(config, path)


def freeze_loaded_parameters(model: torch.nn.Module, loaded: Collection[str]) -> int:
    """Stop gradients of every parameter that a checkpoint provided.

    Args:
        model: the model after a non-strict load.
        loaded: keys that took the checkpoint's tensor (:attr:`~medseg.engine.checkpoint.LoadedWeights.loaded`).

    Returns:
        The number of frozen parameter tensors.
    """
    frozen = 0
    for name, parameter in model.named_parameters():
        if name in loaded:
            parameter.requires_grad_(False)
            frozen += 1
    return frozen


def load_initial_weights(model: torch.nn.Module, config: ExperimentConfig) -> None:
    """Load ``model.checkpoint`` into ``model`` (keys that fit) and freeze them when ``model.freeze_loaded``.

    Args:
        model: the freshly built model.
        config: experiment configuration; nothing happens without ``model.checkpoint``.

    Raises:
        CheckpointError: the file is not a readable checkpoint, or (with ``model.checkpoint_strict``) it fills less
            than ``model.checkpoint_min_fill`` of the model's parameters, i.e. it belongs to another architecture.
    """
    settings = config.model
    if not settings.checkpoint:
        return
    path = resolve_path(settings.checkpoint)
    loaded = load_model_weights(model, path, strict=False)
    if settings.checkpoint_strict and loaded.filled_share < settings.checkpoint_min_fill:
        raise CheckpointError(
            f"checkpoint {path} does not fit model {settings.name}: {loaded.describe()}, below "
            f"model.checkpoint_min_fill={settings.checkpoint_min_fill:g} "
            "(model.checkpoint_strict=false loads it anyway)"
        )
    log.info("loaded %s: %s", settings.checkpoint, loaded.describe())
    if settings.freeze_loaded:
        log.info("froze %d loaded parameter tensors", freeze_loaded_parameters(model, loaded.loaded))


def show_progress_bar(config: ExperimentConfig) -> bool:
    """Whether to draw the progress bar: ``train.progress_bar`` and both stdout and stderr are terminals.

    Otherwise (``medseg train ... > log.txt``, a batch job, ``train.progress_bar: false``) each epoch is one log
    line instead.

    Args:
        config: experiment configuration.

    Returns:
        ``True`` to draw the bar.
    """
    return config.train.progress_bar and sys.stdout.isatty() and sys.stderr.isatty()


PREFETCH_BATCHES = 4
"""Batches each DataLoader worker keeps ready."""


def _loader(dataset: torch.utils.data.Dataset, config: ExperimentConfig, train: bool) -> DataLoader:
    """A DataLoader for ``dataset``: ``data.num_workers`` workers (:func:`resolve_num_workers`), kept alive across
    epochs and prefetching :data:`PREFETCH_BATCHES` batches each, with pinned memory when training on CUDA."""
    workers = resolve_num_workers(config.data.num_workers)
    on_cuda = config.train.accelerator != "cpu" and torch.cuda.is_available()
    return DataLoader(
        dataset,
        batch_size=config.data.batch_size,
        shuffle=train,
        drop_last=train and len(dataset) > config.data.batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=on_cuda,
        prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
    )


def _resume_record(point: ResumePoint | None, run_dir: Path) -> dict[str, Any]:
    """One entry of ``train_summary.json``'s ``resumes``: when, and from which checkpoint, epoch and step."""
    when = datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")
    if point is None:
        return {"time": when, "checkpoint": None, "from_epoch": 1, "from_step": 0}
    return {
        "time": when,
        "checkpoint": str(point.path.relative_to(run_dir)),
        "from_epoch": point.epochs_done + 1,
        "from_step": point.step,
        "mid_epoch": point.mid_epoch,
    }


def _finished_result(run_dir: Path, summary: dict[str, Any]) -> TrainResult:
    """The result of a run that had already finished."""
    score = summary.get("best_val_dice")
    log.info("%s finished before (%s epochs): nothing to train", run_dir, summary.get("epochs"))
    return TrainResult(
        run_dir=run_dir,
        best_checkpoint=run_dir / "checkpoints" / "best.ckpt",
        last_checkpoint=run_dir / "checkpoints" / "last.ckpt",
        best_val_dice=float("nan") if score is None else float(score),
        finished_before=True,
    )


def train(
    config: ExperimentConfig,
    run_dir: Path | None = None,
    extra_callbacks: Sequence[Callback] = (),
    resume: bool = False,
) -> TrainResult:
    """Train a configuration and write the run folder, or continue an interrupted run.

    The folder receives ``config.yaml`` (resolved), ``splits.json``, ``checkpoints/best.ckpt`` (best validation
    epoch) and ``checkpoints/last.ckpt`` (final epoch; with ``train.checkpoint_every_n_steps`` also rewritten during
    epochs), ``metrics.csv`` (one row per epoch), ``progress.png`` and ``train_summary.json`` (``status``
    ``running`` from the start, ``finished`` at the end, ``stopped`` with the ``error`` when training failed;
    ``resumes`` lists each resume). Checkpoints, ``metrics.csv`` and ``progress.png`` are replaced atomically, so a
    full disk or a killed process keeps their previous version. Progress is a bar on a terminal, else one log line
    per epoch (:func:`show_progress_bar`). Only the first process of a multi-device run writes the folder.

    Resuming continues from ``checkpoints/last.ckpt`` (:func:`~medseg.engine.checkpoint.find_resume_point`) with
    Lightning's ``ckpt_path``: weights, optimiser, schedule, early stopping, the checkpoint callbacks, epoch and
    step, and the rows of ``metrics.csv`` come back; the random state of each epoch is a function of ``train.seed``
    and the epoch (:class:`~medseg.engine.callbacks.EpochSeeds`); the split is read back from ``splits.json``. A run
    stopped before its first checkpoint starts again from epoch 1 in the same folder; a finished run is left as it
    is.

    Args:
        config: experiment configuration (for a resume: the run's, with at most runtime overrides).
        run_dir: folder to write into; a new one under ``config.output_dir`` when ``None``. Required to resume.
        extra_callbacks: further Lightning callbacks (monitoring, tests), run before the checkpoint callbacks.
        resume: continue the run in ``run_dir`` instead of starting one.

    Returns:
        The run's output locations and best validation Dice.

    Raises:
        OutputWriteError: a file of the run folder could not be written (e.g. no space left on the device).
        CheckpointError: the run's checkpoints exist but none can be resumed from.
        NonFiniteError: the loss became NaN or infinite (the last good checkpoint stays).
        MissingExtraError: a configured logger is not installed.
    """
    check_loggers(config)
    rank_zero = is_rank_zero()
    previous: dict[str, Any] = {}
    if resume:
        if run_dir is None or not run_dir.is_dir():
            raise ConfigError(f"cannot resume {run_dir}: there is no such run folder")
        previous = read_summary(run_dir)
        if previous.get("status") == "finished":
            return _finished_result(run_dir, previous)
    run_dir = run_dir or create_run_dir(config)
    if rank_zero:
        with writing(run_dir):
            run_dir.mkdir(parents=True, exist_ok=True)
    set_threads(config.train.threads)

    point = find_resume_point(run_dir / "checkpoints") if resume else None
    reader = build_reader(config.data)
    split_file = run_dir / "splits.json"
    if resume and split_file.is_file():
        splits = make_splits(reader, config.data.model_copy(update={"split_file": str(split_file)}))
    else:
        splits = make_splits(reader, config.data)
    if rank_zero:
        _save_run_config(config, run_dir / "config.yaml", resume)
        if not (resume and split_file.is_file()):
            with writing(split_file):
                save_splits(splits, split_file)
    if not splits.get("train") or not splits.get("val"):
        sizes = {name: len(ids) for name, ids in splits.items()}
        raise ConfigError(f"training needs non-empty train and val splits, got {sizes}; check data.val_fraction")
    datasets = build_datasets(reader, splits, config.data)

    # seeded here, so that the initial weights do not depend on what reading the data (building its cache) drew
    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    module = SegmentationTask(config)
    load_initial_weights(module.model, config)

    monitor, mode = module.task.monitor, module.task.mode
    checkpoints = run_dir / "checkpoints"
    best = RunCheckpoint(
        dirpath=checkpoints, filename="best", monitor=monitor, mode=mode, auto_insert_metric_name=False
    )
    # ``save_last=True`` on the monitored checkpoint rewrites last.ckpt only in epochs that improve the monitored
    # value; this unmonitored checkpoint overwrites last.ckpt at the end of every epoch, after validation.
    last = RunCheckpoint(
        dirpath=checkpoints, filename="last", save_top_k=1, save_on_train_epoch_end=True, enable_version_counter=False
    )
    bar = show_progress_bar(config)
    train_loader = _loader(datasets["train"], config, True)
    seeds = EpochSeeds(config.train.seed, train_loader)
    seeds.seed_epoch(point.epochs_done if point else 0)  # before Lightning creates the first epoch's iterator
    callbacks: list[Callback] = [*extra_callbacks, seeds, best, last, EpochHistory(run_dir, log_epochs=not bar)]
    if config.train.checkpoint_every_n_steps:
        callbacks.append(
            RunCheckpoint(
                dirpath=checkpoints,
                filename="last",
                save_top_k=1,
                every_n_train_steps=config.train.checkpoint_every_n_steps,
                enable_version_counter=False,
            )
        )
    if bar:
        callbacks.append(EpochProgressBar())
    if config.train.patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=config.train.patience))
    runs: dict[str, str] = dict(previous.get("logger_runs", {}))
    loggers = build_loggers(config, run_dir, runs)
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    precision = resolve_precision(config.train.precision, config.train.accelerator)
    trainer = pl.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        num_nodes=config.train.num_nodes,
        strategy=config.train.strategy,
        precision=precision,
        deterministic=config.train.deterministic,
        logger=loggers or False,
        callbacks=callbacks,
        enable_progress_bar=bar,
        enable_model_summary=False,
        check_val_every_n_epoch=config.train.val_every,
        limit_train_batches=config.train.limit_train_batches,
        gradient_clip_val=config.optim.grad_clip,
        gradient_clip_algorithm="norm" if config.optim.grad_clip else None,
        num_sanity_val_steps=1,
        default_root_dir=run_dir,
        plugins=[AtomicCheckpointIO()],
    )
    sizes = ", ".join(f"{len(ids)} {name}" for name, ids in splits.items())
    parameters = sum(p.numel() for p in module.model.parameters())
    summary: dict[str, Any] = {
        "run": run_dir.name,
        "status": "running",
        "model": config.model.name,
        "parameters": parameters,
        "trainable_parameters": sum(p.numel() for p in module.model.parameters() if p.requires_grad),
        "precision": precision,
        "devices": trainer.world_size,
        "data": reader.describe(),
        "split_sizes": {name: len(ids) for name, ids in splits.items()},
        "versions": {
            "medseg": medseg.__version__,
            "torch": torch.__version__,
            "lightning": pl.__version__,
            "python": platform.python_version(),
        },
        "resumes": [*previous.get("resumes", []), *([_resume_record(point, run_dir)] if resume else [])],
    }
    if rank_zero:
        summary["logger_runs"] = _logger_runs(loggers, runs)
        _write_summary(run_dir, summary)
    if point is not None and rank_zero:
        log.info(
            "resuming %s from %s: %d epochs and %d steps done%s",
            run_dir,
            point.path.name,
            point.epochs_done,
            point.step,
            " (written during the next epoch, which goes on from there)" if point.mid_epoch else "",
        )
    elif resume and rank_zero:
        log.info("resuming %s: no checkpoint was written yet, training starts from epoch 1", run_dir)
    if rank_zero:
        log.info(
            "training %s (%.2f M parameters) on %s cases (%s), precision %s, %d epochs -> %s",
            config.model.name,
            parameters / 1e6,
            config.data.dataset,
            sizes,
            precision,
            config.train.epochs,
            run_dir,
        )
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            if resume:  # the folder is not empty because the run resumes in it
                warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            trainer.fit(
                module,
                train_loader,
                _loader(datasets["val"], config, False),
                ckpt_path=point.path if point else None,
                weights_only=True,
            )
    except BaseException as error:
        if rank_zero:
            text = str(error).strip()
            interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
            summary.update(
                status="stopped", error="interrupted" if interrupted else text.splitlines()[0] if text else repr(error)
            )
            _write_summary(run_dir, summary)
        raise
    run_dir = Path(last.dirpath).parent  # rank 0's folder on every process (Lightning broadcasts it)
    best_score = float(best.best_model_score) if best.best_model_score is not None else float("nan")
    result = TrainResult(
        run_dir=run_dir,
        best_checkpoint=Path(best.best_model_path),
        last_checkpoint=checkpoints / "last.ckpt" if not last.best_model_path else Path(last.best_model_path),
        best_val_dice=best_score if monitor == "val/dice" else float("nan"),
    )
    if not trainer.is_global_zero:
        return result
    summary.update(
        status="finished",
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        seconds=round(time.perf_counter() - started, 1),
    )
    summary["best_" + monitor.replace("/", "_")] = best_score
    summary["checkpoint_rule"] = module.task.checkpoint_rule
    _write_summary(run_dir, summary)
    return result
