"""Callbacks that make a run explain itself and resumable: the per-epoch CSV, ``progress.png``, one log line per
epoch, a progress bar that counts epochs from 1 and the per-epoch seeding of every random number generator."""

from __future__ import annotations

import csv
import io
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import RichProgressBar
from torch.utils.data import DataLoader, RandomSampler

from medseg.engine.outputs import atomic_write
from medseg.reports import plot_progress

__all__ = ["EpochHistory", "EpochProgressBar", "EpochSeeds", "epoch_seed", "format_epoch"]

log = logging.getLogger(__name__)


class EpochHistory(pl.Callback):
    """Append one row per epoch to ``metrics.csv``, redraw ``progress.png`` and optionally log the row.

    Columns: ``epoch``, ``step``, ``lr``, ``seconds`` and every epoch-level metric the module logged
    (``train/loss``, ``train/<term>``, ``val/loss``, ``val/dice`` ...). Epochs without validation leave the
    validation columns empty. Both files are replaced atomically, so a failed write keeps the previous version.
    Only the first process of a multi-device run writes or logs (the metrics are already reduced over processes).

    The rows are part of the callback's state in each checkpoint, so a resumed run continues the history from its
    checkpoint's epoch (rows of epochs trained after that checkpoint, and lost, are dropped and written anew).

    Args:
        run_dir: the run folder.
        log_epochs: log each row as one line (:func:`format_epoch`) on the ``medseg`` logger, for runs without a
            progress bar.
    """

    def __init__(self, run_dir: str | Path, log_epochs: bool = False) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.log_epochs = log_epochs
        self.rows: list[dict[str, float]] = []
        self._started = 0.0
        self._validated = False

    @property
    def csv_path(self) -> Path:
        """Where the history is written."""
        return self.run_dir / "metrics.csv"

    def state_dict(self) -> dict[str, Any]:
        """The rows so far (plain floats: a checkpoint holding them loads with ``weights_only=True``)."""
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a checkpoint's rows."""
        self.rows = [dict(row) for row in state_dict.get("rows", [])]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a run resumed in the middle of an epoch starts there, without on_train_epoch_start
        self._started = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()
        self._validated = False

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, float] = {
            "epoch": float(trainer.current_epoch + 1),
            "step": float(trainer.global_step),
            "lr": float(trainer.optimizers[0].param_groups[0]["lr"]),
            "seconds": round(time.perf_counter() - self._started, 3),
        }
        for key, value in sorted(trainer.callback_metrics.items()):
            wanted = key.startswith("train/") or (self._validated and key.startswith("val/"))
            if wanted and not key.endswith("_step"):
                row[key.removesuffix("_epoch")] = float(value)
        self.rows.append(row)
        if not trainer.is_global_zero:
            return
        self._write()
        if self.log_epochs:
            log.info("%s", format_epoch(row, trainer.max_epochs))

    def _write(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns.extend(key for key in row if key not in columns)
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        for row in self.rows:
            writer.writerow({key: _format(row.get(key)) for key in columns})
        atomic_write(self.csv_path, lambda stream: stream.write(text.getvalue().encode()))
        atomic_write(self.run_dir / "progress.png", lambda stream: plot_progress(self.rows, stream))


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one training epoch: a fixed function of the run's seed and the epoch.

    Args:
        seed: ``train.seed``.
        epoch: the epoch, from 0.

    Returns:
        A non-negative 63-bit seed.
    """
    return (seed * 1_000_003 + epoch * 7_919 + 12_345) % 2**63


class EpochSeeds(pl.Callback):
    """Seed every random number generator at the start of each training epoch from ``train.seed`` and the epoch.

    Python's, NumPy's and torch's global generators (dropout, stochastic depth ...), the training loader's shuffle
    (its ``RandomSampler`` gets a generator of its own) and the loader's worker seeds all restart from
    :func:`epoch_seed` at each epoch. What an epoch draws therefore depends on the seed and the epoch only, not on
    what earlier epochs drew, which makes a run resumed from an end-of-epoch checkpoint repeat exactly the epochs an
    uninterrupted run trains, whatever the number of data-loader workers. (Under a multi-device strategy Lightning
    replaces the shuffle by its ``DistributedSampler``, seeded by ``train.seed`` and the epoch.)

    Args:
        seed: ``train.seed``.
        loader: the training data loader given to ``Trainer.fit``.
    """

    def __init__(self, seed: int, loader: DataLoader) -> None:
        super().__init__()
        self.seed = seed
        self.loader = loader
        self._shuffle = torch.Generator()
        self._workers = torch.Generator()
        if isinstance(loader.sampler, RandomSampler):
            loader.sampler.generator = self._shuffle
        loader.generator = self._workers  # worker seeds: drawn without touching the global generator

    def seed_epoch(self, epoch: int) -> None:
        """Reseed everything for ``epoch``; call before the loader's iterator of that epoch is created.

        Args:
            epoch: the epoch, from 0.
        """
        seed = epoch_seed(self.seed, epoch)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)  # also seeds every CUDA device
        self._shuffle.manual_seed(seed + 1)
        self._workers.manual_seed(seed + 2)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a run resumed in the middle of an epoch starts there, without on_train_epoch_start
        self.seed_epoch(trainer.current_epoch)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seed_epoch(trainer.current_epoch)


def format_epoch(row: dict[str, float], max_epochs: int | None = None) -> str:
    """One line for an epoch row of ``metrics.csv``.

    Example: ``epoch 2/16  train loss 0.4123 (seg 0.4011, tamosc_balance 0.1120)  val loss 0.4000  val Dice 0.6543
    3.2 s``; the loss terms are listed when there are several.

    Args:
        row: the epoch's row (``epoch``, ``seconds``, ``train/loss``, ``train/<term>``, ``val/loss``, ``val/dice``).
        max_epochs: the planned number of epochs, shown after the slash.

    Returns:
        The line; metrics the row lacks (no validation this epoch) are left out.
    """
    epoch = f"epoch {int(row['epoch'])}" + (f"/{max_epochs}" if max_epochs and max_epochs > 0 else "")
    parts = [epoch]
    if "train/loss" in row:
        terms = [
            f"{key.removeprefix('train/')} {value:.4f}"
            for key, value in row.items()
            if key.startswith("train/") and key != "train/loss"
        ]
        shown = f" ({', '.join(terms)})" if len(terms) > 1 else ""  # a single term is the loss itself
        parts.append(f"train loss {row['train/loss']:.4f}{shown}")
    if "val/loss" in row:
        parts.append(f"val loss {row['val/loss']:.4f}")
    if "val/dice" in row:
        parts.append(f"val Dice {row['val/dice']:.4f}")
    parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts)


class EpochProgressBar(RichProgressBar):
    """Lightning's Rich progress bar with the epoch counted from 1 out of the planned total (``Epoch 1/16``).

    Lightning's own bar shows the zero-based epoch over the last index (``Epoch 0/15``; ``Epoch 0/0`` for a
    one-epoch run).
    """

    def _get_train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            description += f"/{self.trainer.max_epochs}"
        if len(self.validation_description) > len(description):
            description = f"{description:{len(self.validation_description)}}"
        return description


def _format(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e12:
        return int(value)
    return value
