"""``medseg evaluate`` with every protocol, evaluation folders per checkpoint, overlays of the worst cases and
``medseg predict`` on colliding and unreadable inputs (tiny models, synthetic data)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import config_from_dict
from medseg.engine import build_model
from medseg.engine.checkpoint import read_checkpoint
from medseg.protocols import ProtocolContext, get_protocol, list_protocols
from medseg.reports.markdown import rank_cases
from tests.data import layouts

runner = CliRunner()

TINY = [
    "model.params.base_channels=4",
    "data.batch_size=4",
    "train.epochs=1",
    "train.progress_bar=false",
    "data.num_workers=0",
]
BINARY = [
    "data.image_size=32",
    "data.synthetic.num_train=8",
    "data.synthetic.num_val=4",
    "data.synthetic.num_test=6",
    "data.synthetic.size=40",
    "eval.protocol=vmunet_global",
    "eval.overlays=2",
]
VOLUMES = ["data.image_size=16", "data.in_channels=1", "data.transforms.normalize=none", "eval.overlays=1"]
GLOBAL_LABELS = {"dsc": "DSC", "miou": "mIoU", "accuracy": "Acc", "specificity": "Spe", "sensitivity": "Sen"}


def train_run(out: Path, name: str, *overrides: str) -> tuple[Path, str]:
    """Train (and evaluate) a tiny run with ``medseg train``; return its folder and the command's output."""
    config = out / f"{name}.yaml"
    config.write_text(f"name: {name}\n")
    result = runner.invoke(app, ["train", str(config), f"output_dir={out}", *TINY, *overrides])
    assert result.exit_code == 0, result.output
    return out / name, result.output


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A binary 2D run on the synthetic data whose recipe evaluates with the global-confusion protocol."""
    return train_run(tmp_path_factory.mktemp("binary"), "binary", *BINARY)


@pytest.fixture(scope="module")
def volume_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Runs on tiny ACDC (4 classes) and Synapse (9 classes) volumes."""
    out = tmp_path_factory.mktemp("volumes")
    acdc = layouts.write_acdc(out / "acdc-data")
    synapse = layouts.write_synapse(out / "synapse-data")
    return [
        train_run(
            out,
            "acdc",
            *VOLUMES,
            "data.dataset=acdc",
            f"data.root={acdc}",
            "data.num_classes=4",
            "eval.protocol=transunet_acdc",
        )[0],
        train_run(
            out,
            "synapse",
            *VOLUMES,
            "data.dataset=synapse",
            f"data.root={synapse}",
            "data.num_classes=9",
            "data.val_fraction=0.2",
            "eval.protocol=transunet_synapse",
        )[0],
    ]


def run_config(run: Path) -> dict[str, Any]:
    return read_checkpoint(run / "checkpoints" / "best.ckpt")["hyper_parameters"]["config"]


def accepts(run: Path, protocol: str) -> bool:
    """Whether ``protocol`` fits the run's task (classes, 2D images or volumes)."""
    data = run_config(run)["data"]
    classes = data["num_classes"]
    context = ProtocolContext(classes, data["image_size"], tuple(f"c{i}" for i in range(1, classes)))
    try:
        evaluator = get_protocol(protocol, context)
    except Exception:
        return False
    return evaluator.volumetric == (data["dataset"] in {"acdc", "synapse"})


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def summary_line(output: str, split: str, protocol: str) -> str:
    lines = [line for line in output.splitlines() if re.match(rf"{split} \(\d+ cases, {protocol}\): ", line)]
    assert len(lines) == 1, output
    return lines[0]


def assert_headline(line: str, summary: dict[str, Any]) -> None:
    """The line shows the protocol's own metrics with the numbers of summary.json."""
    metrics = summary["metrics"]
    if summary["protocol"] == "vmunet_global":
        for key, label in GLOBAL_LABELS.items():
            assert f"{label} {number(metrics[key]['value'])}" in line, line
    else:
        for name, stats in metrics.items():
            assert f"{name} {number(stats['mean'])}" in line, line


def test_train_prints_the_global_confusion_headline(binary_run: tuple[Path, str]) -> None:
    run, output = binary_run
    summary = json.loads((run / "evaluation" / "test" / "summary.json").read_text())
    assert summary["protocol"] == "vmunet_global"
    assert_headline(summary_line(output, "test", "vmunet_global"), summary)


@pytest.mark.parametrize("protocol", sorted(list_protocols()))
def test_every_protocol_prints_its_headline(
    protocol: str, binary_run: tuple[Path, str], volume_runs: list[Path]
) -> None:
    run = next(run for run in (binary_run[0], *volume_runs) if accepts(run, protocol))
    result = runner.invoke(app, ["evaluate", str(run), "--protocol", protocol])
    assert result.exit_code == 0, result.output
    own = run_config(run)["eval"]["protocol"] == protocol
    folder = run / "evaluation" / ("test" if own else f"test-{protocol}")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["protocol"] == protocol
    line = summary_line(result.output, "test", protocol)
    assert f"({summary['num_cases']} cases, " in line
    assert_headline(line, summary)


def overlay_cases(folder: Path) -> list[str]:
    report = (folder / "report.md").read_text()
    return re.findall(r"!\[([^\]]+)\]\(overlays/", report)


def test_overlays_show_the_lowest_dice_cases(binary_run: tuple[Path, str], volume_runs: list[Path]) -> None:
    for folder, count in ((binary_run[0] / "evaluation" / "test", 2), (volume_runs[0] / "evaluation" / "test", 1)):
        cases = json.loads((folder / "cases.json").read_text())
        worst = [case["case_id"] for case in rank_cases(cases)[:count]]
        assert overlay_cases(folder) == worst
        assert sorted(path.stem for path in (folder / "overlays").glob("*.png")) == sorted(worst)


def test_rank_cases_puts_undefined_dice_last() -> None:
    cases = [{"case_id": "a", "dice": None}, {"case_id": "b", "dice": 0.9}, {"case_id": "c", "dice": 0.1}]
    assert [case["case_id"] for case in rank_cases(cases)] == ["c", "b", "a"]


def test_each_checkpoint_gets_its_own_folder(binary_run: tuple[Path, str], tmp_path: Path) -> None:
    run = binary_run[0]
    best_summary = (run / "evaluation" / "test" / "summary.json").read_text()
    other = tmp_path / "epoch1.ckpt"
    other.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
    expected = {
        "last": ("test-last", "checkpoints/last.ckpt", "final training epoch"),
        str(other): ("test-epoch1", str(other), "checkpoint given by path"),
        str(run / "checkpoints" / "best.ckpt"): ("test", "checkpoints/best.ckpt", "highest validation Dice"),
    }
    for checkpoint, (folder, recorded, rule) in expected.items():
        result = runner.invoke(app, ["evaluate", str(run), "--checkpoint", checkpoint])
        assert result.exit_code == 0, result.output
        summary = json.loads((run / "evaluation" / folder / "summary.json").read_text())
        assert summary["checkpoint"] == recorded and summary["checkpoint_rule"].startswith(rule)
        assert f"evaluation/{folder}/report.md" in result.output
    assert (run / "evaluation" / "test" / "summary.json").read_text() == best_summary
    result = runner.invoke(app, ["evaluate", str(run), "--checkpoint", "last", "--protocol", "perimage"])
    assert result.exit_code == 0, result.output
    assert (run / "evaluation" / "test-perimage-last" / "summary.json").is_file()
    stray = tmp_path / "last.ckpt"  # same folder name as the run's last.ckpt: refused, not overwritten
    stray.write_bytes(other.read_bytes())
    result = runner.invoke(app, ["evaluate", str(run), "--checkpoint", str(stray)])
    assert result.exit_code == 2 and "holds the evaluation of checkpoint checkpoints/last.ckpt" in result.output


def test_a_checkpoint_of_another_model_is_refused(binary_run: tuple[Path, str], tmp_path: Path) -> None:
    run = binary_run[0]
    before = {path: path.read_bytes() for path in (run / "evaluation").rglob("*") if path.is_file()}
    config = run_config(run)
    config["model"]["params"]["base_channels"] = 2
    model = build_model(config_from_dict(config))
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"config": config}}, foreign)
    result = runner.invoke(app, ["evaluate", str(run), "--checkpoint", str(foreign)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "foreign.ckpt" in lines[0] and "unet(base_channels=2" in lines[0] and "unet(base_channels=4" in lines[0]
    assert {path: path.read_bytes() for path in (run / "evaluation").rglob("*") if path.is_file()} == before
    assert not (run / "evaluation" / "test-foreign").exists()


def write_inputs(folder: Path, names: tuple[str, ...]) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, name in enumerate(names):
        Image.fromarray(rng.integers(0, 255, (20 + index, 24, 3), dtype=np.uint8)).save(folder / name)


def test_predict_gives_colliding_stems_distinct_names(binary_run: tuple[Path, str], tmp_path: Path) -> None:
    write_inputs(tmp_path / "in", ("x.png", "x.jpg", "y.png", "x_png.bmp"))
    checkpoint = binary_run[0] / "checkpoints" / "best.ckpt"
    result = runner.invoke(app, ["predict", str(checkpoint), str(tmp_path / "in"), str(tmp_path / "out"), "--overlay"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 mask(s)" in result.output
    masks = {path.name for path in (tmp_path / "out").glob("*.png") if not path.stem.endswith("_overlay")}
    assert masks == {"x_jpg.png", "x_png.png", "x_png_2.png", "y.png"}
    assert len(list((tmp_path / "out").glob("*_overlay.png"))) == 4
    sizes = {np.asarray(Image.open(tmp_path / "out" / name)).shape for name in masks}
    assert sizes == {(20, 24), (21, 24), (22, 24), (23, 24)}  # four different images, none overwritten


def test_predict_skips_an_unreadable_image_and_fails(binary_run: tuple[Path, str], tmp_path: Path) -> None:
    write_inputs(tmp_path / "in", ("a.png", "c.png"))
    (tmp_path / "in" / "b.png").write_bytes(b"not an image")
    checkpoint = binary_run[0] / "checkpoints" / "best.ckpt"
    result = runner.invoke(app, ["predict", str(checkpoint), str(tmp_path / "in"), str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    named = [line for line in result.output.splitlines() if "b.png" in line]
    assert len(named) == 1 and named[0].startswith("skipped:"), result.output
    assert "wrote 2 mask(s)" in result.output
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]


@pytest.mark.realdata
def test_ph2_recipe_trains_and_prints_its_global_headline(
    ph2_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reported command: a vmunet_global recipe ends with its summary line, not a KeyError."""
    monkeypatch.setenv("MEDSEG_DATA", str(ph2_root.parent))
    config = Path(__file__).resolve().parents[1] / "configs" / "unet-ph2.yaml"
    overrides = ["train.epochs=1", "data.image_size=64", "model.params.base_channels=8", "data.num_workers=0"]
    result = runner.invoke(
        app, ["train", str(config), f"output_dir={tmp_path}", "train.progress_bar=false", *overrides]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "unet-ph2" / "evaluation" / "test" / "summary.json").read_text())
    assert_headline(summary_line(result.output, "test", "vmunet_global"), summary)
