"""Callbacks that make a run folder explain itself: the per-epoch CSV and ``progress.png``."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from medseg.reports import plot_progress

__all__ = ["EpochHistory"]


class EpochHistory(pl.Callback):
    """Append one row per epoch to ``metrics.csv`` and redraw ``progress.png``.

    Columns: ``epoch``, ``step``, ``lr``, ``seconds`` and every epoch-level metric the module logged
    (``train/loss``, ``train/<term>``, ``val/loss``, ``val/dice`` ...). Epochs without validation leave the
    validation columns empty.

    Args:
        run_dir: the run folder.
    """

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.rows: list[dict[str, float]] = []
        self._started = 0.0
        self._validated = False

    @property
    def csv_path(self) -> Path:
        """Where the history is written."""
        return self.run_dir / "metrics.csv"

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
        self._write()

    def _write(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns.extend(key for key in row if key not in columns)
        with self.csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({key: _format(row.get(key)) for key in columns})
        plot_progress(self.rows, self.run_dir / "progress.png")


def _format(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e12:
        return int(value)
    return value
