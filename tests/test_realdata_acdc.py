"""ACDC end to end: train on 2D slices, evaluate per volume with the TransUNet protocol, per-class report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli import app

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.realdata


def test_acdc_slices_train_and_volumes_evaluate(
    acdc_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDSEG_DATA", str(acdc_root.parent))
    runner = CliRunner()
    args = [
        "train",
        str(REPO / "configs" / "unet-acdc.yaml"),
        f"output_dir={tmp_path}",
        "train.epochs=1",
        "data.image_size=32",
        "data.limit=6",
        "data.batch_size=6",
        "data.num_workers=0",
        "model.params.base_channels=4",
        "train.progress_bar=false",
        "eval.overlays=1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "unet-acdc"
    splits = json.loads((run / "splits.json").read_text())["splits"]
    assert all(":" not in case for case in splits["test"])  # volumes, not slices
    patients = {name: {case.split("_")[0] for case in ids} for name, ids in splits.items()}
    assert not patients["train"] & patients["test"] and not patients["val"] & patients["test"]

    assert "test (" in result.output and "transunet_acdc" in result.output  # `medseg train` evaluates after training
    summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    assert summary["protocol"] == "transunet_acdc" and summary["num_cases"] == 6
    assert list(summary["per_class"]) == ["RV", "Myo", "LV"]
    for stats in summary["per_class"].values():
        assert stats["dice"]["n_valid"] == 6 and 0 <= stats["dice"]["mean"] <= 1
    cases = json.loads((run / "evaluation" / "test" / "cases.json").read_text())
    assert {"slices", "height", "width"} <= set(cases[0])
    report = (run / "evaluation" / "test" / "report.md").read_text()
    assert "| RV |" in report and "| LV |" in report and "hd95" in report
