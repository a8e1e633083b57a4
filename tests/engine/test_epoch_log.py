"""Progress without a terminal: one log line per epoch; with a terminal: a bar counting epochs as 1/N."""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from medseg.config import load_config
from medseg.engine import train
from medseg.engine.callbacks import EpochProgressBar, format_epoch
from medseg.engine.trainer import show_progress_bar
from tests.test_cli import TINY

LINE = re.compile(
    r"epoch (\d+)/(\d+)  train loss ([\d.]+)  val loss ([\d.]+)  val Dice ([\d.]+)  [\d.]+ s",
)


def test_each_epoch_is_one_log_line_matching_metrics_csv(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(None, [*TINY, f"output_dir={tmp_path}", "train.progress_bar=false"])
    with caplog.at_level(logging.INFO, logger="medseg"):
        train(config, tmp_path / "run")
    lines = [r.getMessage() for r in caplog.records if r.name == "medseg.engine.callbacks"]
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(lines) == len(rows) == 2, lines
    for line, row in zip(lines, rows, strict=True):
        match = LINE.fullmatch(line)
        assert match, line
        assert match.groups() == (
            row["epoch"],
            "2",
            f"{float(row['train/loss']):.4f}",
            f"{float(row['val/loss']):.4f}",
            f"{float(row['val/dice']):.4f}",
        )


def test_epoch_line_lists_several_loss_terms_and_skips_missing_validation() -> None:
    row = {"epoch": 3.0, "seconds": 12.34, "train/loss": 0.5, "train/seg": 0.45, "train/tamosc_balance": 0.05}
    assert format_epoch(row, 10) == "epoch 3/10  train loss 0.5000 (seg 0.4500, tamosc_balance 0.0500)  12.3 s"


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    config = load_config(None, [])
    assert not show_progress_bar(config)  # pytest captures the output: not a terminal
    monkeypatch.setattr("sys.stdout", Terminal())
    monkeypatch.setattr("sys.stderr", Terminal())
    assert show_progress_bar(config)
    assert not show_progress_bar(load_config(None, ["train.progress_bar=false"]))


@pytest.mark.parametrize(
    ("epoch", "epochs", "shown"), [(0, 16, "Epoch 1/16"), (15, 16, "Epoch 16/16"), (0, 1, "Epoch 1/1")]
)
def test_progress_bar_counts_epochs_from_one(epoch: int, epochs: int, shown: str) -> None:
    bar = EpochProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=epochs)
    assert bar._get_train_description(epoch).strip().endswith(shown)
