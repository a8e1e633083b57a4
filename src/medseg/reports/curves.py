"""Training curves: ``progress.png`` from the per-epoch history."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["plot_progress"]


def _series(rows: Sequence[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    points = [(row["epoch"], row[key]) for row in rows if key in row and not math.isnan(row[key])]
    return [p[0] for p in points], [p[1] for p in points]


def plot_progress(rows: Sequence[dict[str, float]], path: str | Path | BinaryIO) -> None:
    """Plot loss curves (left) and validation Dice with the learning rate (right).

    The right panel's legend sits below the panel, outside the axes, so it never covers a curve.

    Args:
        rows: one mapping per epoch with ``epoch`` and any of ``train/loss``, ``val/loss``, ``val/dice``, ``lr``.
        path: destination PNG (a file name or an open binary file).
    """
    figure, (loss_axis, dice_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("train/loss", "train loss"), ("val/loss", "validation loss")):
        epochs, values = _series(rows, key)
        if values:
            loss_axis.plot(epochs, values, marker=".", label=label)
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss")
    loss_axis.legend(loc="upper right")
    loss_axis.grid(alpha=0.3)
    epochs, values = _series(rows, "val/dice")
    if values:
        dice_axis.plot(epochs, values, marker=".", color="tab:green", label="validation Dice")
        best = max(range(len(values)), key=values.__getitem__)
        dice_axis.scatter([epochs[best]], [values[best]], color="tab:red", zorder=3, label="best")
    dice_axis.set_ylim(0, 1)
    dice_axis.set_xlabel("epoch")
    dice_axis.set_ylabel("Dice")
    dice_axis.grid(alpha=0.3)
    handles, labels = dice_axis.get_legend_handles_labels()
    epochs, values = _series(rows, "lr")
    if values:
        lr_axis = dice_axis.twinx()
        lr_axis.plot(epochs, values, color="tab:gray", linestyle="--", label="learning rate")
        lr_axis.set_ylabel("learning rate")
        lr_handles, lr_labels = lr_axis.get_legend_handles_labels()
        handles, labels = handles + lr_handles, labels + lr_labels
    if handles:
        dice_axis.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(handles))
    figure.tight_layout()
    figure.savefig(path, dpi=100, format="png")
    plt.close(figure)
