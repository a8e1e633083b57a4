"""Faults a long run survives: SIGKILL at any moment (then --resume), non-finite losses and weights; gradient
clipping; same-seed CPU runs that repeat exactly.

The kill tests train in a subprocess (``tests/engine/killable.py``) that pauses at a chosen moment and is then killed
with SIGKILL; the short one runs by default, the one that kills three times is ``slow`` (``make test-slow``).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import load_config
from medseg.engine import train
from medseg.engine.module import NonFiniteError
from tests.conftest import REPO_ROOT
from tests.engine import killable
from tests.test_cli import TINY

WAIT_S = 300  # generous: the subprocess imports torch and Lightning on a shared machine


def rows(run_dir: Path) -> list[dict[str, str]]:
    """``metrics.csv`` without the wall-clock column."""
    with (run_dir / "metrics.csv").open() as handle:
        return [{key: value for key, value in row.items() if key != "seconds"} for row in csv.DictReader(handle)]


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def epochs_done(path: Path) -> int:
    return int(load(path)["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])


def kill_at(run_dir: Path, phase: str, epoch: int, resume: bool = False) -> dict[str, Any]:
    """Run ``killable`` until it pauses at ``phase`` of ``epoch``, SIGKILL it and return where it was."""
    marker = run_dir.parent / "paused.json"
    marker.unlink(missing_ok=True)
    command = [sys.executable, "-m", "tests.engine.killable", str(run_dir), phase, str(epoch)]
    process = subprocess.Popen(
        [*command, *(["--resume"] if resume else [])],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + WAIT_S
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended before pausing at {phase} of epoch {epoch}: {process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run did not reach {phase} of epoch {epoch}")
        time.sleep(0.05)
    time.sleep(0.05)  # the marker is written just before the pause
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    return json.loads(marker.read_text())


def check_checkpoints(run_dir: Path) -> None:
    """Every checkpoint on disk loads with ``weights_only=True`` and holds finite weights."""
    for path in sorted((run_dir / "checkpoints").glob("[!.]*.ckpt")):
        state = load(path)["state_dict"]
        assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point()), path


def same_weights(a: Path, b: Path) -> bool:
    first, second = load(a)["state_dict"], load(b)["state_dict"]
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run, never interrupted."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    train(killable.config(run_dir), run_dir)
    return run_dir


def test_killed_in_a_step_and_resumed_equals_the_uninterrupted_run(tmp_path: Path, reference: Path) -> None:
    run_dir = tmp_path / "run"
    where = kill_at(run_dir, "step", 2)
    assert where == {"phase": "step", "epoch": 2, "step": 3}  # the second step of epoch 2
    check_checkpoints(run_dir)
    assert epochs_done(run_dir / "checkpoints" / "last.ckpt") == 1  # only the epoch in progress is lost
    assert json.loads((run_dir / "train_summary.json").read_text())["status"] == "running"

    train(killable.config(run_dir), run_dir, resume=True)
    assert rows(run_dir) == rows(reference)
    assert same_weights(run_dir / "checkpoints" / "last.ckpt", reference / "checkpoints" / "last.ckpt")
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 3
    [record] = summary["resumes"]
    assert record["checkpoint"] == "checkpoints/last.ckpt"
    assert (record["from_epoch"], record["from_step"], record["mid_epoch"]) == (2, 2, False)


@pytest.mark.slow
def test_killed_three_times_in_a_step_validation_and_a_checkpoint_write(tmp_path: Path, reference: Path) -> None:
    run_dir = tmp_path / "run"
    lost = []
    # epoch 1, before any checkpoint: the resume starts again from epoch 1
    where = kill_at(run_dir, "step", 1)
    assert not (run_dir / "checkpoints").exists()
    lost.append(where["epoch"] - 0)  # no epoch was done
    # epoch 2, during validation: epoch 1 is kept
    where = kill_at(run_dir, "validation", 2, resume=True)
    check_checkpoints(run_dir)
    lost.append(where["epoch"] - epochs_done(run_dir / "checkpoints" / "last.ckpt"))
    # epoch 3, half-way through writing last.ckpt: the previous last.ckpt (epoch 2) is intact
    where = kill_at(run_dir, "checkpoint", 3, resume=True)
    check_checkpoints(run_dir)
    temporary = list((run_dir / "checkpoints").glob(".last-*.tmp.ckpt"))
    assert len(temporary) == 1 and temporary[0].stat().st_size > 0
    with pytest.raises(Exception):  # noqa: B017 - a torch or pickle error: it is a truncated zip archive
        load(temporary[0])
    lost.append(where["epoch"] - epochs_done(run_dir / "checkpoints" / "last.ckpt"))
    assert lost == [1, 1, 1]  # at most the epoch in progress, each time

    result = subprocess.run(
        [sys.executable, "-m", "medseg", "train", "--resume", str(run_dir), "--no-evaluate"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list((run_dir / "checkpoints").glob(".*"))  # the cut-off write's temporary file is gone
    check_checkpoints(run_dir)
    assert rows(run_dir) == rows(reference)
    assert same_weights(run_dir / "checkpoints" / "last.ckpt", reference / "checkpoints" / "last.ckpt")
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert [record["from_epoch"] for record in summary["resumes"]] == [1, 2, 3]


def test_same_seed_cpu_runs_repeat_their_metrics(tmp_path: Path, reference: Path) -> None:
    run_dir = tmp_path / "again"
    train(killable.config(run_dir), run_dir)
    assert rows(run_dir) == rows(reference)
    assert len(rows(run_dir)) == 3


class PoisonWeights(pl.Callback):
    """Set one weight to NaN when ``hook`` runs in ``epoch`` (from 1)."""

    def __init__(self, hook: str, epoch: int) -> None:
        self.epoch = epoch
        setattr(self, hook, self._poison)

    def _poison(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.current_epoch + 1 == self.epoch and not trainer.sanity_checking:
            with torch.no_grad():
                next(pl_module.model.parameters()).view(-1)[0] = float("nan")


def tiny(tmp_path: Path, *overrides: str):
    return load_config(None, [*TINY, f"output_dir={tmp_path}", "train.precision=32", *overrides])


def test_a_non_finite_loss_stops_the_run_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteError) as raised:
        train(tiny(tmp_path), tmp_path / "run", extra_callbacks=[PoisonWeights("on_train_epoch_start", 2)])
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("non-finite training loss at epoch 2, step 3: loss is nan, seg is nan; ")
    assert "last finite values (step 2): loss " in message and ", seg " in message
    assert "lower optim.lr (now 0.001)" in message and "optim.grad_clip=1.0" in message
    assert "checkpoints/last.ckpt, written before it, is kept" in message
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert load(last)["epoch"] == 0
    check_checkpoints(tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["status"] == "stopped" and summary["error"] == message


def test_a_checkpoint_with_non_finite_weights_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteError, match=r"^weights became non-finite by epoch 2, step 4 \(model\.") as raised:
        train(tiny(tmp_path), tmp_path / "run", extra_callbacks=[PoisonWeights("on_validation_start", 2)])
    assert "the checkpoint was not written" in str(raised.value)
    assert load(tmp_path / "run" / "checkpoints" / "last.ckpt")["epoch"] == 0
    check_checkpoints(tmp_path / "run")


def test_cli_reports_a_diverging_run_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "x.yaml"
    config.write_text("name: x\n")
    args = ["train", str(config), f"output_dir={tmp_path}", *TINY, "train.precision=32", "optim.lr=1e30"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]  # progress lines, then the error
    assert [line for line in lines if "error" in line] == lines[-1:], lines
    assert lines[-1].startswith("error: non-finite training loss at epoch 1, step "), lines
    assert "no checkpoint had been written yet" in lines[-1] and "Traceback" not in result.output


class FirstWeights(pl.Callback):
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.state = {key: value.detach().clone() for key, value in pl_module.model.named_parameters()}


def weight_change(tmp_path: Path, name: str, *overrides: str) -> float:
    first = FirstWeights()
    settings = ["optim.name=sgd", "optim.lr=0.5", "optim.momentum=0", "optim.weight_decay=0", "scheduler.name=none"]
    result = train(tiny(tmp_path, *settings, "train.epochs=1", *overrides), tmp_path / name, extra_callbacks=[first])
    state = load(result.last_checkpoint)["state_dict"]
    changes = [(state[f"model.{key}"] - value).norm() ** 2 for key, value in first.state.items()]
    return float(sum(changes) ** 0.5)


def test_grad_clip_bounds_each_step(tmp_path: Path) -> None:
    # two SGD steps of lr 0.5 with gradients clipped to norm 1e-4 move the weights by at most 1e-4
    assert weight_change(tmp_path, "clipped", "optim.grad_clip=0.0001") <= 1e-4 * 1.0001
    assert weight_change(tmp_path, "free") > 1e-2


def test_queued_checks_name_the_first_non_finite_step() -> None:
    """On an accelerator the flags of several steps are read at once: the error still names the first bad step."""
    from types import SimpleNamespace

    from medseg.engine.module import SegmentationTask

    task = SegmentationTask(load_config(None, TINY))
    strategy = SimpleNamespace(reduce_boolean_decision=lambda decision, all: decision)
    task.trainer = SimpleNamespace(strategy=strategy, current_epoch=0, precision="32-true", checkpoint_callbacks=[])
    for step, loss in enumerate([0.9, float("nan"), 0.7], start=1):
        value = {"loss": torch.tensor(loss)}
        task._pending_finite.append((step, value, torch.isfinite(value["loss"]).all()))
    with pytest.raises(NonFiniteError, match=r"epoch 1, step 2: loss is nan; last finite values \(step 1\): loss 0.9"):
        task._read_finite_flags()
    assert task._pending_finite == []
