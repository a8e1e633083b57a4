"""Run a training configuration end to end: run folder, data, model, Lightning trainer, checkpoints."""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader

import medseg
from medseg.config import ConfigError, ExperimentConfig, resolve_path, save_config
from medseg.data import build_datasets, build_reader, make_splits, resolve_num_workers, save_splits
from medseg.engine.callbacks import EpochHistory, EpochProgressBar
from medseg.engine.checkpoint import AtomicCheckpointIO, CheckpointError, load_model_weights
from medseg.engine.module import SegmentationTask
from medseg.engine.outputs import atomic_write, writing
from medseg.runtime import set_threads

__all__ = [
    "TrainResult",
    "create_run_dir",
    "freeze_loaded_parameters",
    "load_initial_weights",
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
        best_checkpoint: checkpoint with the highest validation Dice (lowest validation loss for a reconstruction
            run).
        last_checkpoint: checkpoint after the last epoch.
        best_val_dice: that highest validation Dice (NaN for a reconstruction run).
    """

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_val_dice: float


def create_run_dir(config: ExperimentConfig, overwrite: bool = False) -> Path:
    """Create ``<output_dir>/<name>``; an existing non-empty folder gets a numbered sibling unless ``overwrite``.

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
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def resolve_precision(precision: str, accelerator: str) -> str:
    """Turn ``auto`` into ``bf16-mixed`` where the hardware runs bfloat16 natively, else ``32``.

    Args:
        precision: configured precision.
        accelerator: configured accelerator.

    Returns:
        A Lightning precision setting.
    """
    if precision != "auto":
        return precision
    on_gpu = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if torch.backends.mkldnn.is_available() and torch.cpu._is_avx512_bf16_supported() else "32"


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


def train(
    config: ExperimentConfig, run_dir: Path | None = None, extra_callbacks: Sequence[Callback] = ()
) -> TrainResult:
    """Train a configuration and write the run folder.

    The folder receives ``config.yaml`` (resolved), ``splits.json``, ``checkpoints/best.ckpt`` (best validation
    epoch) and ``checkpoints/last.ckpt`` (final epoch), ``metrics.csv`` (one row per epoch), ``progress.png`` and
    ``train_summary.json``. Checkpoints, ``metrics.csv`` and ``progress.png`` are replaced atomically, so a full
    disk keeps their previous version. Progress is a bar on a terminal, else one log line per epoch
    (:func:`show_progress_bar`).

    Args:
        config: experiment configuration.
        run_dir: folder to write into; a new one under ``config.output_dir`` when ``None``.
        extra_callbacks: further Lightning callbacks (monitoring, tests), run before the checkpoint callbacks.

    Returns:
        The run's output locations and best validation Dice.

    Raises:
        OutputWriteError: a file of the run folder could not be written (e.g. no space left on the device).
    """
    run_dir = run_dir or create_run_dir(config)
    with writing(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    set_threads(config.train.threads)

    reader = build_reader(config.data)
    splits = make_splits(reader, config.data)
    with writing(run_dir / "config.yaml"):
        save_config(config, run_dir / "config.yaml")
    with writing(run_dir / "splits.json"):
        save_splits(splits, run_dir / "splits.json")
    if not splits.get("train") or not splits.get("val"):
        sizes = {name: len(ids) for name, ids in splits.items()}
        raise ConfigError(f"training needs non-empty train and val splits, got {sizes}; check data.val_fraction")
    datasets = build_datasets(reader, splits, config.data)

    task = SegmentationTask(config.model_dump(mode="json"))
    load_initial_weights(task.model, config)

    reconstruction = config.train.task == "reconstruction"
    monitor, mode = ("val/loss", "min") if reconstruction else ("val/dice", "max")
    best = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=monitor,
        mode=mode,
        auto_insert_metric_name=False,
    )
    # ``save_last=True`` on the monitored checkpoint rewrites last.ckpt only in epochs that improve the monitored
    # value; this unmonitored checkpoint overwrites last.ckpt at the end of every epoch, after validation.
    last = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="last",
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    bar = show_progress_bar(config)
    callbacks: list[Callback] = [*extra_callbacks, best, last, EpochHistory(run_dir, log_epochs=not bar)]
    if bar:
        callbacks.append(EpochProgressBar())
    if config.train.patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=config.train.patience))
    precision = resolve_precision(config.train.precision, config.train.accelerator)
    trainer = pl.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        precision=precision,
        deterministic=config.train.deterministic,
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=bar,
        enable_model_summary=False,
        check_val_every_n_epoch=config.train.val_every,
        limit_train_batches=config.train.limit_train_batches,
        num_sanity_val_steps=1,
        default_root_dir=run_dir,
        plugins=[AtomicCheckpointIO()],
    )
    sizes = ", ".join(f"{len(ids)} {name}" for name, ids in splits.items())
    parameters = sum(p.numel() for p in task.model.parameters())
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
    trainer.fit(task, _loader(datasets["train"], config, True), _loader(datasets["val"], config, False))
    best_score = float(best.best_model_score) if best.best_model_score is not None else float("nan")
    result = TrainResult(
        run_dir=run_dir,
        best_checkpoint=Path(best.best_model_path),
        last_checkpoint=Path(last.best_model_path),
        best_val_dice=float("nan") if reconstruction else best_score,
    )
    summary = {
        "run": run_dir.name,
        "model": config.model.name,
        "parameters": parameters,
        "trainable_parameters": sum(p.numel() for p in task.model.parameters() if p.requires_grad),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "precision": precision,
        "seconds": round(time.perf_counter() - started, 1),
        **(
            {
                "best_val_loss": best_score,
                "checkpoint_rule": "best: lowest validation reconstruction loss (val/loss); last: final epoch "
                "(the ReSeg teacher)",
            }
            if reconstruction
            else {
                "best_val_dice": result.best_val_dice,
                "checkpoint_rule": "best: highest validation Dice (val/dice); last: final epoch",
            }
        ),
        "data": reader.describe(),
        "split_sizes": {name: len(ids) for name, ids in splits.items()},
        "versions": {
            "medseg": medseg.__version__,
            "torch": torch.__version__,
            "lightning": pl.__version__,
            "python": platform.python_version(),
        },
    }
    atomic_write(run_dir / "train_summary.json", lambda stream: stream.write(json.dumps(summary, indent=2).encode()))
    return result
