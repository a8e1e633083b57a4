"""The input contract: ``data.image_size`` a multiple of the model's output stride (a config error otherwise),
and ``SegmentationModel.forward`` checking its input with the same words."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import ConfigError, load_config
from medseg.models import create_model
from medseg.models.base import nearest_valid_sizes

runner = CliRunner()


def test_nearest_valid_sizes() -> None:
    assert nearest_valid_sizes(100, 16) == (96, 112)
    assert nearest_valid_sizes(8, 16) == (16,)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["model.name=utanet", "data.image_size=100"], "data.image_size 100 is not divisible by the output stride 16 "
         "(nearest valid sizes: 96 or 112)"),
        # swin_unet's stride follows its parameters (patch_size * 2 ** (stages - 1))
        (["model.name=swin_unet", "data.image_size=96", "model.params.patch_size=8", "model.params.img_size=128"],
         "data.image_size 96 is not divisible by the output stride 64 (nearest valid sizes: 64 or 128)"),
        (["model.name=resunetpp", "data.image_size=100"], "output stride 8 (nearest valid sizes: 96 or 104)"),
    ],
)  # fmt: skip
def test_a_training_size_the_model_cannot_take_is_a_config_error(overrides: list[str], says: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert says in str(error.value) and repr(overrides[0].split("=")[1]) in str(error.value)


def test_valid_sizes_and_unknown_models_pass() -> None:
    assert load_config(None, ["model.name=utanet", "data.image_size=96"]).data.image_size == 96
    assert load_config(None, ["model.name=resunetpp", "data.image_size=104"]).data.image_size == 104
    assert load_config(None, ["model.name=not_a_model", "data.image_size=100"]).model.name == "not_a_model"


def test_a_stage_that_changes_the_size_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "staged.yaml"
    config.write_text(
        "model: {name: unet, params: {base_channels: 4}}\ndata: {image_size: 64}\n"
        "stages:\n  - {name: first}\n  - {name: second, overrides: {data.image_size: 72}}\n"
    )
    with pytest.raises(ConfigError, match=r"stage 'second': model 'unet': data.image_size 72 is not divisible"):
        load_config(config)


def test_forward_checks_the_input_with_the_same_words() -> None:
    model = create_model("utanet", in_channels=3, num_classes=1).eval()
    with torch.no_grad(), pytest.raises(ValueError) as error:
        model(torch.zeros(1, 3, 100, 96))
    message = str(error.value)
    assert "Sizes of tensors" not in message
    assert "height 100 is not divisible by the output stride 16 (nearest valid sizes: 96 or 112)" in message
    assert "width" not in message.split(";")[0].split(":")[1]  # 96 fits
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 96, 96)).shape == (1, 1, 96, 96)


def test_train_refuses_the_size_before_making_a_run_folder(tmp_path: Path) -> None:
    config = tmp_path / "utanet.yaml"
    config.write_text(f"output_dir: {tmp_path / 'runs'}\nmodel: {{name: utanet}}\n")
    result = runner.invoke(app, ["train", str(config), "data.image_size=100"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "data.image_size 100" in lines[0] and "96 or 112" in lines[0]
    assert not (tmp_path / "runs").exists()
