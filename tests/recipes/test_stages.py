"""Multi-stage recipes: a plain U-Net, then the same network with TA-MoSC skips initialised from it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import ConfigError, load_config, stage_config
from tests.test_cli import TINY

RECIPE = """
name: staged
model: {name: unet, params: {base_channels: 4}}
stages:
  - name: plain
  - name: tamosc
    init_from: plain
    freeze_loaded: true
    overrides:
      model.params.skip: tamosc
      model.params.skip_params: {fuse_channels: 4, num_experts: 2, top_k: 1}
      train.epochs: 1
"""


def state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def staged_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("staged")
    config = out / "staged.yaml"
    config.write_text(RECIPE)
    result = CliRunner().invoke(app, ["train", str(config), f"output_dir={out}", *TINY])
    assert result.exit_code == 0, result.output
    return out / "staged"


def test_each_stage_gets_a_run_folder_and_the_last_one_is_published(staged_run: Path) -> None:
    records = json.loads((staged_run / "stages.json").read_text())
    assert [r["stage"] for r in records] == ["plain", "tamosc"]
    for record in records:
        assert (staged_run / record["folder"] / "checkpoints" / "best.ckpt").is_file()
    published = (staged_run / "checkpoints" / "best.ckpt").resolve()
    assert published == (staged_run / "stages" / "2-tamosc" / "checkpoints" / "best.ckpt").resolve()
    stage_config = load_config(staged_run / "stages" / "2-tamosc" / "config.yaml")
    assert stage_config.model.params["skip"] == "tamosc"
    assert stage_config.train.epochs == 2  # the command line (TINY: train.epochs=2) wins over the stage value 1
    assert stage_config.model.checkpoint.endswith("1-plain/checkpoints/best.ckpt")


def test_stage_two_starts_from_stage_one_and_keeps_loaded_weights_frozen(staged_run: Path) -> None:
    first = state(staged_run / "stages" / "1-plain" / "checkpoints" / "best.ckpt")
    second = state(staged_run / "stages" / "2-tamosc" / "checkpoints" / "last.ckpt")
    shared = [k for k in first if k.endswith("weight") and "running" not in k]
    assert shared and all(torch.equal(first[k], second[k]) for k in shared)
    new = [k for k in second if k not in first]
    assert any(k.startswith("model.skips.module.experts") for k in new)
    summary = json.loads((staged_run / "stages" / "2-tamosc" / "train_summary.json").read_text())
    assert 0 < summary["trainable_parameters"] < summary["parameters"]
    with (staged_run / "stages" / "2-tamosc" / "metrics.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert float(row["train/tamosc_balance"]) >= 0


def test_evaluate_uses_the_last_stage(staged_run: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", str(staged_run)])
    assert result.exit_code == 0, result.output
    summary = json.loads((staged_run / "evaluation" / "test" / "summary.json").read_text())
    assert summary["num_cases"] == 4


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ("[{name: a}, {name: a}]", "used twice"),
        ("[{name: b, init_from: a}]", "not an earlier stage"),
        ("[{name: a, overrides: {name: x}}]", "cannot override"),
    ],
)
def test_bad_stages_are_rejected(tmp_path: Path, stages: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"stages: {stages}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_stage_override_errors_name_the_stage(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("stages: [{name: second, overrides: {train.epoch: 3}}]\n")
    with pytest.raises(ConfigError, match=r"stage 'second': unknown config key 'train\.epoch'"):
        load_config(path)


def test_command_line_overrides_win_over_stage_overrides(tmp_path: Path) -> None:
    path = tmp_path / "staged.yaml"
    path.write_text(RECIPE)
    config = load_config(path, ["train.epochs=3", "data.image_size=48"])
    second = stage_config(config, config.stages[1])
    assert second.train.epochs == 3 and second.data.image_size == 48
    assert second.model.params["skip"] == "tamosc"  # the stage's own other overrides stay
    assert load_config(path).stages[1].overrides["train.epochs"] == 1
