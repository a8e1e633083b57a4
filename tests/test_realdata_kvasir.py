"""Kvasir-SEG end to end: one short epoch on a small subset at 64 px, then evaluate and predict."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.realdata


def test_kvasir_train_evaluate_predict(kvasir_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSEG_DATA", str(kvasir_root.parent))
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            str(REPO / "configs" / "unet-kvasir.yaml"),
            f"output_dir={tmp_path}",
            "train.epochs=1",
            "data.image_size=64",
            "data.limit=8",
            "data.batch_size=4",
            "data.num_workers=0",
            "model.params.base_channels=8",
            "train.progress_bar=false",
            "eval.overlays=2",
        ],
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "unet-kvasir"
    splits = json.loads((run / "splits.json").read_text())["splits"]
    assert {name: len(ids) for name, ids in splits.items()} == {"train": 8, "val": 8, "test": 8}
    official_test = set((kvasir_root / "splits" / "val.txt").read_text().split())
    assert set(splits["test"]) <= official_test
    assert not set(splits["train"]) & official_test and not set(splits["val"]) & official_test
    with (run / "metrics.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert math.isfinite(float(row["train/loss"])) and math.isfinite(float(row["val/dice"]))

    assert "test (" in result.output and "perimage" in result.output  # `medseg train` evaluates after training
    summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    assert summary["num_cases"] == 8 and summary["split"] == "test"
    for name in ("dice", "iou", "recall"):  # defined for every case: the test masks all hold a polyp
        stats = summary["metrics"][name]
        assert stats["n_valid"] == 8 and 0 <= stats["mean"] <= 1, (name, stats)
    precision = summary["metrics"]["precision"]  # undefined where a one-epoch model predicts nothing
    assert precision["n_valid"] + precision["n_undefined"] == 8
    cases = json.loads((run / "evaluation" / "test" / "cases.json").read_text())
    case = cases[0]
    original = Image.open(kvasir_root / "images" / f"{case['case_id']}.jpg")
    assert (case["width"], case["height"]) == original.size  # metrics at the original resolution

    image = kvasir_root / "images" / f"{splits['test'][0]}.jpg"
    result = runner.invoke(app, ["predict", str(run / "checkpoints" / "best.ckpt"), str(image), str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(tmp_path / "pred" / f"{image.stem}.png"))
    assert mask.shape == Image.open(image).size[::-1]
