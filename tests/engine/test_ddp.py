"""Two-process DDP training on CPU (gloo) through the `medseg train` command: one run folder written by rank 0, epoch
metrics reduced over both processes, validation Dice the mean over the validation set (the image Lightning's
DistributedSampler repeats is left out), best checkpoint chosen on that global Dice."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medseg.config import load_config
from medseg.data import build_datasets, build_reader, load_splits
from medseg.engine import batch_dice, build_model, load_model_weights
from tests.conftest import REPO_ROOT
from tests.test_cli import TINY

SETTINGS = [
    *TINY,
    "data.batch_size=2",
    "data.synthetic.num_val=5",  # 5 images on 2 processes: the sampler repeats one to give each 3
    "data.num_workers=0",
    "train.devices=2",
    "train.strategy=ddp",
    "train.accelerator=cpu",
    "train.threads=1",
    "train.precision=32",
]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("ddp")
    config = out / "tiny.yaml"
    config.write_text("name: tiny\n")
    command = [sys.executable, "-m", "medseg", "train", str(config), f"output_dir={out / 'runs'}", *SETTINGS]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return out / "runs", result


def test_rank_zero_alone_writes_the_usual_run_folder(ddp_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    runs, result = ddp_run
    assert [path.name for path in runs.iterdir()] == ["tiny"]  # no second folder from the other process
    run = runs / "tiny"
    files = {str(path.relative_to(run)) for path in run.rglob("*") if path.is_file()}
    expected = {"config.yaml", "splits.json", "metrics.csv", "progress.png", "train_summary.json"}
    assert expected | {"checkpoints/best.ckpt", "checkpoints/last.ckpt"} <= files
    assert {name.split("/")[0] for name in files} == expected | {"checkpoints", "evaluation"}
    assert (run / "evaluation" / "test" / "summary.json").is_file()
    assert result.stdout.count("run folder:") == 1 and result.stdout.count("report:") == 1
    summary = json.loads((run / "train_summary.json").read_text())
    # 8 training images, 2 per batch on each of 2 processes: 2 steps per epoch
    assert (summary["status"], summary["devices"], summary["epochs"], summary["steps"]) == ("finished", 2, 2, 4)


def test_validation_dice_is_the_mean_over_the_validation_set(
    ddp_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    run = ddp_run[0] / "tiny"
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2"]  # one row per epoch, not one per process

    config = load_config(run / "config.yaml")
    reader = build_reader(config.data)
    validation = build_datasets(reader, load_splits(run / "splits.json"), config.data)["val"]
    model = build_model(config)
    load_model_weights(model, run / "checkpoints" / "last.ckpt")
    model.eval()
    with torch.no_grad():
        dice = [
            batch_dice(model(item["image"][None]), item["mask"][None], config.eval.threshold) for item in validation
        ]
    assert len(dice) == 5
    assert float(rows[-1]["val/dice"]) == pytest.approx(float(torch.cat(dice).mean()), rel=1e-5)

    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    highest = max(float(row["val/dice"]) for row in rows)
    assert json.loads((run / "train_summary.json").read_text())["best_val_dice"] == pytest.approx(highest)
    assert float(rows[best["epoch"]]["val/dice"]) == pytest.approx(highest)
