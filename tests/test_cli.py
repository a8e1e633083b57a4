"""End-to-end command-line tests on the built-in synthetic data (tiny models and images)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import load_config
from medseg.demo import demo_config_path

runner = CliRunner()

TINY = [
    "model.params.base_channels=4",
    "data.image_size=32",
    "data.batch_size=4",
    "data.synthetic.num_train=8",
    "data.synthetic.num_val=4",
    "data.synthetic.num_test=4",
    "data.synthetic.size=40",
    "train.epochs=2",
    "train.progress_bar=false",
    "eval.overlays=2",
]


def test_help_lists_every_verb() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in ("train", "evaluate", "predict", "models", "demo"):
        assert verb in result.output


def test_models_json_lists_unet_with_its_parameter_count() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["unet"]["params"] == 31_038_153
    assert rows["unet"]["reference_params"] == 31_040_000


def test_demo_config_is_valid() -> None:
    config = load_config(demo_config_path())
    assert config.data.dataset == "synthetic" and config.model.name == "unet"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    config = out / "tiny.yaml"
    config.write_text("name: tiny\n")
    result = runner.invoke(app, ["train", str(config), f"output_dir={out}", *TINY])
    assert result.exit_code == 0, result.output
    assert "test (4 cases, perimage): dice" in result.output  # evaluated after training by default
    return out / "tiny"


def test_train_writes_a_self_explaining_run_folder(trained_run: Path) -> None:
    for name in (
        "config.yaml",
        "splits.json",
        "metrics.csv",
        "progress.png",
        "train_summary.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "evaluation/test/summary.json",
        "evaluation/test/report.md",
    ):
        assert (trained_run / name).is_file(), name
    splits = json.loads((trained_run / "splits.json").read_text())
    assert {k: len(v) for k, v in splits["splits"].items()} == {"train": 8, "val": 4, "test": 4}
    with (trained_run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    for row in rows:
        assert np.isfinite(float(row["train/loss"])) and 0 <= float(row["val/dice"]) <= 1
    summary = json.loads((trained_run / "train_summary.json").read_text())
    assert summary["epochs"] == 2 and summary["split_sizes"]["train"] == 8


def test_a_second_train_gets_its_own_folder(trained_run: Path) -> None:
    args = ["train", str(trained_run / "config.yaml"), "train.epochs=1", "data.synthetic.num_train=4", "--no-evaluate"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (trained_run.parent / "tiny-2" / "checkpoints" / "last.ckpt").is_file()
    assert not (trained_run.parent / "tiny-2" / "evaluation").exists()
    assert "next: medseg evaluate" in result.output


def test_a_reconstruction_run_is_not_evaluated(tmp_path: Path) -> None:
    config = tmp_path / "recon.yaml"
    config.write_text("name: recon\n")
    args = ["train", str(config), f"output_dir={tmp_path}", *TINY, "train.task=reconstruction", "train.epochs=1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "not evaluated" in result.output and not (tmp_path / "recon" / "evaluation").exists()


def test_evaluate_writes_cases_summary_and_report(trained_run: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(trained_run), "--split", "test"])
    assert result.exit_code == 0, result.output
    out = trained_run / "evaluation" / "test"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "perimage" and summary["split"] == "test" and summary["num_cases"] == 4
    assert summary["checkpoint"] == "checkpoints/best.ckpt"
    assert set(summary["metrics"]) == {"dice", "iou", "precision", "recall", "hd95"}
    dice = summary["metrics"]["dice"]
    assert dice["n_valid"] + dice["n_undefined"] == 4 and 0 <= dice["mean"] <= 1
    cases = json.loads((out / "cases.json").read_text())
    assert [c["case_id"] for c in cases] == json.loads((trained_run / "splits.json").read_text())["splits"]["test"]
    report = (out / "report.md").read_text()
    assert "perimage" in report and "overlays/" in report
    assert len(list((out / "overlays").glob("*.png"))) == 2


def test_predict_writes_masks_at_the_original_size(trained_run: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (50, 70)), ("b.jpg", (33, 33))):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(inputs / name)
    Image.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8)).save(inputs / "c.bmp")
    result = runner.invoke(
        app,
        [
            "predict",
            str(trained_run / "checkpoints" / "best.ckpt"),
            str(inputs),
            str(tmp_path / "out"),
            "--overlay",
        ],
    )
    assert result.exit_code == 0, result.output
    for stem, size in (("a", (50, 70)), ("b", (33, 33)), ("c", (20, 30))):
        mask = np.asarray(Image.open(tmp_path / "out" / f"{stem}.png"))
        assert mask.shape == size and set(np.unique(mask)) <= {0, 255}
        assert (tmp_path / "out" / f"{stem}_overlay.png").is_file()


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_unknown_config_key_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "x.yaml"
    config.write_text("name: x\n")
    line = _error_line(runner.invoke(app, ["train", str(config), "train.epoch=1"]))
    assert "unknown config key 'train.epoch'" in line and "epochs" in line


def test_missing_data_folder_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "x.yaml"
    config.write_text(f"name: x\noutput_dir: {tmp_path}\ndata: {{dataset: image_folder, root: {tmp_path}/nope}}\n")
    line = _error_line(runner.invoke(app, ["train", str(config)]))
    assert "nope" in line and "does not exist" in line


def test_unexpected_mask_values_are_one_clear_line(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(6):  # distinct images: identical ones would be kept in one split
        Image.fromarray(np.full((16, 16, 3), index, np.uint8)).save(root / "images" / f"im{index}.png")
        mask = np.zeros((16, 16), np.uint8)
        mask[:4] = 255
        if index == 3:
            mask[8:] = 128
        Image.fromarray(mask).save(root / "masks" / f"im{index}.png")
    config = tmp_path / "x.yaml"
    config.write_text(
        f"name: x\noutput_dir: {tmp_path}\ndata: {{dataset: image_folder, root: {root}, image_size: 16, "
        "val_fraction: 0.2, test_fraction: 0.2}\ntrain: {epochs: 1, progress_bar: false}\n"
    )
    line = _error_line(runner.invoke(app, ["train", str(config), "model.params.base_channels=2"]))
    assert "im3.png" in line and "128" in line


def test_multiclass_run_reports_per_class_metrics(tmp_path: Path) -> None:
    config = tmp_path / "multi.yaml"
    config.write_text("name: multi\n")
    args = ["train", str(config), f"output_dir={tmp_path}", "data.num_classes=3", *TINY]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["evaluate", str(tmp_path / "multi"), "--checkpoint", "last"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "multi" / "evaluation" / "test-last" / "summary.json").read_text())
    assert set(summary["per_class"]) == {"class_1", "class_2"}
    assert summary["checkpoint_rule"] == "final training epoch"
    assert "| class_2 |" in (tmp_path / "multi" / "evaluation" / "test-last" / "report.md").read_text()


def test_same_seed_same_history(tmp_path: Path) -> None:
    config = tmp_path / "seeded.yaml"
    config.write_text("name: seeded\n")
    histories = []
    for name in ("a", "b"):
        args = ["train", str(config), f"output_dir={tmp_path}", f"name={name}", "train.deterministic=true", *TINY]
        assert runner.invoke(app, args).exit_code == 0
        with (tmp_path / name / "metrics.csv").open() as handle:
            histories.append([{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)])
    assert histories[0] == histories[1]


def test_early_stopping(tmp_path: Path) -> None:
    config = tmp_path / "stop.yaml"
    config.write_text("name: stop\n")
    args = [
        "train",
        str(config),
        f"output_dir={tmp_path}",
        *TINY,
        "train.epochs=5",
        "train.patience=1",
        "optim.name=nadam",
        "optim.lr=1e-12",
        "scheduler.name=plateau",
        "scheduler.patience=0",
        "scheduler.min_lr=1e-14",
    ]
    assert runner.invoke(app, args).exit_code == 0
    with (tmp_path / "stop" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2  # validation Dice cannot move at this learning rate: stop after patience + 1 epochs


def test_data_check_lists_every_problem_and_fails(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / f"{name}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / "a.png")
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(root / "masks" / "b.png")
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 1, result.output
    assert "image_folder" in result.output and "c.png" in result.output and "b.png" in result.output
    good = runner.invoke(app, ["data", "check", str(root), "--format", "image_folder", "--json"])
    assert json.loads(good.output)["ok"] is False
    (root / "images" / "c.png").unlink()
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(root / "masks" / "b.png")
    assert runner.invoke(app, ["data", "check", str(root)]).exit_code == 0


def test_another_protocol_writes_its_own_folder(trained_run: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(trained_run), "--protocol", "perimage_binary_clean"])
    assert result.exit_code == 0, result.output
    summary = json.loads((trained_run / "evaluation" / "test-perimage_binary_clean" / "summary.json").read_text())
    assert summary["protocol"] == "perimage_binary_clean" and "empty_policy" not in summary
