"""medseg train --resume: a run continues from its last checkpoint (moved folder, mid-epoch checkpoint, damaged
last.ckpt, staged recipe), a finished run is left alone, and only runtime settings may change."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import load_config
from medseg.engine import train
from medseg.recipes import stages
from tests.engine import killable
from tests.test_cli import TINY

runner = CliRunner()


class CrashAt(pl.Callback):
    """Raise in the second batch of ``epoch`` (from 1), as a crash would stop the run there."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, index: int) -> None:
        if trainer.current_epoch + 1 == self.epoch and index == 1:
            raise RuntimeError("simulated crash")


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as handle:
        return [{key: value for key, value in row.items() if key != "seconds"} for row in csv.DictReader(handle)]


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "train_summary.json").read_text())


def crashed_run(run_dir: Path, epoch: int, *overrides: str) -> Path:
    """A killable-configured run stopped in ``epoch``."""
    config = load_config(None, [*killable.SETTINGS, f"output_dir={run_dir.parent}", f"name={run_dir.name}", *overrides])
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, run_dir, extra_callbacks=[CrashAt(epoch)])
    return run_dir


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    train(killable.config(run_dir), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def moved_and_resumed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped in epoch 3, moved to another folder, then resumed there with the CLI."""
    root = tmp_path_factory.mktemp("moved")
    crashed = crashed_run(root / "run", 3)
    assert summary(crashed)["status"] == "stopped" and summary(crashed)["error"] == "simulated crash"
    moved = root / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(crashed, moved)
    result = runner.invoke(app, ["train", "--resume", str(moved), "--no-evaluate"])
    assert result.exit_code == 0, result.output
    return moved


def test_a_resumed_run_continues_where_it_stopped_even_in_a_moved_folder(
    moved_and_resumed: Path, reference: Path
) -> None:
    assert rows(moved_and_resumed) == rows(reference)
    last, expected = (
        load(moved_and_resumed / "checkpoints" / "last.ckpt"),
        load(reference / "checkpoints" / "last.ckpt"),
    )
    assert all(torch.equal(last["state_dict"][key], value) for key, value in expected["state_dict"].items())
    # the best epoch is still compared against after the move: epoch 1 stays best, as in the reference
    best = load(moved_and_resumed / "checkpoints" / "best.ckpt")
    assert best["epoch"] == load(reference / "checkpoints" / "best.ckpt")["epoch"] == 0
    done = summary(moved_and_resumed)
    assert done["status"] == "finished" and done["epochs"] == 3 and "error" not in done
    [record] = done["resumes"]
    assert (record["checkpoint"], record["from_epoch"], record["from_step"]) == ("checkpoints/last.ckpt", 3, 4)
    assert (
        json.loads((moved_and_resumed / "splits.json").read_text())["splits"]
        == json.loads((reference / "splits.json").read_text())["splits"]
    )


def test_resuming_a_finished_run_says_so_and_does_nothing(moved_and_resumed: Path) -> None:
    before = {path.name: path.stat().st_mtime_ns for path in moved_and_resumed.rglob("*") if path.is_file()}
    result = runner.invoke(app, ["train", "--resume", str(moved_and_resumed)])
    assert result.exit_code == 0, result.output
    assert f"run {moved_and_resumed} had already finished: nothing to do" in " ".join(result.output.split())
    after = {path.name: path.stat().st_mtime_ns for path in moved_and_resumed.rglob("*") if path.is_file()}
    assert after == before and not (moved_and_resumed / "evaluation").exists()


def test_a_mid_epoch_checkpoint_resumes_inside_its_epoch(tmp_path: Path) -> None:
    run_dir = crashed_run(tmp_path / "run", 2, "train.checkpoint_every_n_steps=1")
    last = load(run_dir / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (1, 3)  # written after the first step of epoch 2
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--no-evaluate"])
    assert result.exit_code == 0, result.output
    [record] = summary(run_dir)["resumes"]
    assert (record["from_epoch"], record["from_step"], record["mid_epoch"]) == (2, 3, True)
    assert [(row["epoch"], row["step"]) for row in rows(run_dir)] == [("1", "2"), ("2", "4"), ("3", "6")]


def test_a_damaged_last_checkpoint_falls_back_to_best(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = crashed_run(tmp_path / "run", 3)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    with caplog.at_level(logging.WARNING, logger="medseg"):
        train(killable.config(run_dir), run_dir, resume=True)
    [warning] = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warning.startswith(f"checkpoint {last} could not be read: ")
    assert f"resuming from {run_dir / 'checkpoints' / 'best.ckpt'} instead (1 epochs done)" in warning
    [record] = summary(run_dir)["resumes"]
    assert (record["checkpoint"], record["from_epoch"]) == ("checkpoints/best.ckpt", 2)
    assert summary(run_dir)["status"] == "finished" and len(rows(run_dir)) == 3
    assert load(last)["epoch"] == 2


def test_without_a_usable_checkpoint_resume_is_one_line_naming_the_files(tmp_path: Path) -> None:
    run_dir = crashed_run(tmp_path / "run", 3)
    for name in ("last.ckpt", "best.ckpt"):
        path = run_dir / "checkpoints" / name
        path.write_bytes(path.read_bytes()[:1000])
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert message.startswith(f"error: checkpoint {run_dir / 'checkpoints' / 'last.ckpt'} could not be read")
    assert f"checkpoint {run_dir / 'checkpoints' / 'best.ckpt'} could not be read" in message
    assert f"start the run again (medseg train {run_dir / 'config.yaml'})" in message
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train.epochs=9"], "cannot resume with 'train.epochs=9': a resumed run keeps what it trains; only"),
        (["other.yaml"], "--resume reads"),
    ],
)
def test_resume_takes_runtime_overrides_only(tmp_path: Path, args: list[str], expected: str) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("name: run\n")
    result = runner.invoke(app, ["train", "--resume", str(run_dir), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], lines


def test_resume_of_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: cannot resume {tmp_path / 'nothing'}: the run folder does not exist"


RECIPE = """
name: staged
stages:
  - name: plain
  - name: again
    init_from: plain
"""


def test_a_staged_run_stopped_in_stage_two_resumes_without_training_stage_one_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = tmp_path / "staged.yaml"
    recipe.write_text(RECIPE)
    config = load_config(recipe, [*TINY, f"output_dir={tmp_path}", "train.precision=32"])
    real_train = stages.train

    def crash_in_stage_two(stage: Any, run_dir: Path, *args: Any, **kwargs: Any) -> Any:
        callbacks = [CrashAt(2)] if run_dir.name == "2-again" else []
        return real_train(stage, run_dir, callbacks, **kwargs)

    monkeypatch.setattr(stages, "train", crash_in_stage_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        stages.train_experiment(config)
    monkeypatch.undo()
    run_dir = tmp_path / "staged"
    records = json.loads((run_dir / "stages.json").read_text())
    assert [(record["stage"], record["status"]) for record in records] == [("plain", "finished"), ("again", "running")]
    first = run_dir / "stages" / "1-plain"
    untouched = {path: path.stat().st_mtime_ns for path in first.rglob("*") if path.is_file()}

    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--no-evaluate"])
    assert result.exit_code == 0, result.output
    assert "stage 1/2: plain finished before, not trained again" in result.output
    assert {path: path.stat().st_mtime_ns for path in first.rglob("*") if path.is_file()} == untouched
    records = json.loads((run_dir / "stages.json").read_text())
    assert [(record["stage"], record["status"]) for record in records] == [("plain", "finished"), ("again", "finished")]
    second = run_dir / "stages" / "2-again"
    assert [record["from_epoch"] for record in summary(second)["resumes"]] == [2]
    assert len(rows(second)) == 2
    assert (run_dir / "checkpoints" / "best.ckpt").resolve() == (second / "checkpoints" / "best.ckpt").resolve()

    again = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert again.exit_code == 0 and "had already finished: nothing to do" in " ".join(again.output.split())
