"""train.loggers: Lightning's loggers write under the run folder's logs/, next to the run's own metrics.csv and
progress.png; a logger whose optional package is missing is refused in one line naming the extra."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import load_config
from medseg.engine import train
from tests.test_cli import TINY


def test_tensorboard_and_csv_loggers_get_the_epoch_metrics(tmp_path: Path) -> None:
    pytest.importorskip(
        "tensorboard", reason="the tensorboard extra (pip install medseg[tensorboard]) is not installed"
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = load_config(None, [*TINY, f"output_dir={tmp_path}", "train.loggers=[tensorboard, csv]"])
    run_dir = train(config).run_dir
    assert (run_dir / "metrics.csv").is_file() and (run_dir / "progress.png").is_file()  # the run's own, as always

    events = EventAccumulator(str(run_dir / "logs" / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "val/loss", "val/dice", "lr-AdamW"} <= set(scalars)
    with (run_dir / "metrics.csv").open() as handle:
        ours = [float(row["val/dice"]) for row in csv.DictReader(handle)]
    assert [event.value for event in events.Scalars("val/dice")] == pytest.approx(ours)

    with (run_dir / "logs" / "csv" / "metrics.csv").open() as handle:
        logged = [float(row["val/dice"]) for row in csv.DictReader(handle) if row.get("val/dice")]
    assert logged == pytest.approx(ours)


@pytest.mark.parametrize("name", ["wandb", "mlflow", "tensorboard"])
def test_a_missing_logger_package_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # makes `import <name>` fail as if it were not installed
    config = tmp_path / "x.yaml"
    config.write_text("name: x\n")
    args = ["train", str(config), f"output_dir={tmp_path}", *TINY, f"train.loggers=[csv, {name}]"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: train.loggers: {name} needs the {name} package, which is not installed: pip install 'medseg[{name}]'"
    )
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_an_unknown_logger_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "x.yaml"
    config.write_text("name: x\n")
    result = CliRunner().invoke(app, ["train", str(config), "train.loggers=[neptune]"])
    assert result.exit_code == 2
    assert "config key 'train.loggers.0'" in result.output and "neptune" in result.output
