"""Checkpoints of a run: last.ckpt is the final epoch, a wrong model.checkpoint is refused, writes are atomic."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

import lightning.pytorch as pl
import pytest
import torch
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import ExperimentConfig, load_config, stage_config
from medseg.engine import CheckpointError, build_model, read_checkpoint, train
from medseg.engine.outputs import OutputWriteError, atomic_write
from medseg.engine.trainer import load_initial_weights
from medseg.errors import MedsegError
from tests.test_cli import TINY


def tiny_config(tmp_path: Path, *overrides: str) -> ExperimentConfig:
    return load_config(None, [*TINY, f"output_dir={tmp_path}", *overrides])


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


class WorseDiceAfterFirstEpoch(pl.Callback):
    """Report a validation Dice of -1 after the first epoch, so the monitored value never improves again.

    It runs before the checkpoint callbacks (Lightning orders those last), while training itself goes on normally:
    the weights keep changing, deterministically, but ``best.ckpt`` must stay at epoch 1.
    """

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.current_epoch > 0:
            trainer.callback_metrics["val/dice"] = torch.tensor(-1.0)


class FinalWeights(pl.Callback):
    """Keep a copy of the module's state when training ends."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.state = {key: value.detach().clone() for key, value in pl_module.state_dict().items()}


def test_last_checkpoint_is_the_final_epoch_when_validation_stops_improving(tmp_path: Path) -> None:
    final = FinalWeights()
    config = tiny_config(tmp_path, "train.epochs=3")
    result = train(config, tmp_path / "run", extra_callbacks=[WorseDiceAfterFirstEpoch(), final])
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert result.last_checkpoint == folder / "last.ckpt" and result.best_checkpoint == folder / "best.ckpt"
    best, last = load(folder / "best.ckpt"), load(folder / "last.ckpt")
    assert best["epoch"] == 0  # Lightning counts epochs from 0: the first epoch
    assert last["epoch"] == 2 and last["global_step"] == 6  # the third and final epoch
    assert last["state_dict"].keys() == final.state.keys()
    assert all(torch.equal(last["state_dict"][key], value) for key, value in final.state.items())
    weights = [key for key in final.state if key.endswith("weight")]
    assert not all(torch.equal(best["state_dict"][key], final.state[key]) for key in weights)
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["epochs"] == 3 and "last: final epoch" in summary["checkpoint_rule"]


def test_failed_checkpoint_write_keeps_the_previous_one_and_is_one_medseg_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save = torch.save

    def disk_full_in_second_epoch(obj: Any, target: BinaryIO, *args: Any, **kwargs: Any) -> None:
        if isinstance(obj, dict) and obj.get("epoch") == 1:
            target.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        save(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_in_second_epoch)
    config = tiny_config(tmp_path, "train.epochs=2")
    with pytest.raises(MedsegError) as raised:
        train(config, tmp_path / "run", extra_callbacks=[WorseDiceAfterFirstEpoch()])
    folder = tmp_path / "run" / "checkpoints"
    assert isinstance(raised.value, OutputWriteError)
    assert str(raised.value) == f"could not write {folder / 'last.ckpt'}: [Errno 28] No space left on device"
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]  # no temporary file left
    assert load(folder / "last.ckpt")["epoch"] == 0  # the first epoch's checkpoint, intact
    assert read_checkpoint(folder / "best.ckpt")["epoch"] == 0


def test_atomic_write_keeps_the_old_file_when_a_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "out" / "metrics.csv"
    atomic_write(target, lambda stream: stream.write(b"epoch\n1\n"))
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # the permissions of a plainly written file

    def fails(stream: BinaryIO) -> None:
        stream.write(b"epo")
        raise OSError(errno.ENOSPC, "No space left on device", str(stream.name))

    with pytest.raises(OutputWriteError, match=r"^could not write .*metrics\.csv: \[Errno 28\] No space left") as error:
        atomic_write(target, fails)
    assert ".tmp" not in str(error.value)
    assert target.read_bytes() == b"epoch\n1\n"
    assert [p.name for p in target.parent.iterdir()] == ["metrics.csv"]


@pytest.fixture
def foreign_checkpoint(tmp_path: Path) -> Path:
    """A state dict of another architecture (attention U-Net) than the default U-Net."""
    path = tmp_path / "attention_unet.pt"
    torch.save(build_model(tiny_config(tmp_path, "model.name=attention_unet")).state_dict(), path)
    return path


def test_checkpoint_of_another_architecture_is_refused_with_its_counts(
    tmp_path: Path, foreign_checkpoint: Path
) -> None:
    config = tiny_config(tmp_path, f"model.checkpoint={foreign_checkpoint}")
    with pytest.raises(CheckpointError) as raised:
        load_initial_weights(build_model(config), config)
    message = str(raised.value)
    assert "\n" not in message and str(foreign_checkpoint) in message
    assert "tensors loaded" in message and "missing" in message and "unexpected" in message
    assert "with another shape" in message and "fills 0.0% of the model's parameters" in message
    assert "model.checkpoint_min_fill=0.5" in message and "model.checkpoint_strict=false" in message

    relaxed = tiny_config(tmp_path, f"model.checkpoint={foreign_checkpoint}", "model.checkpoint_strict=false")
    load_initial_weights(build_model(relaxed), relaxed)  # loads what fits, no error


def test_cli_refuses_a_foreign_checkpoint_in_one_line(tmp_path: Path, foreign_checkpoint: Path) -> None:
    config = tmp_path / "x.yaml"
    config.write_text("name: x\n")
    args = ["train", str(config), f"output_dir={tmp_path}", *TINY, f"model.checkpoint={foreign_checkpoint}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "does not fit model unet" in lines[0], result.output
    assert not (tmp_path / "x" / "checkpoints").exists()  # refused before training


def test_a_plain_stage_still_initialises_the_tamosc_stage(tmp_path: Path) -> None:
    recipe = tmp_path / "utanet.yaml"
    recipe.write_text(
        "stages: [{name: plain}, {name: tamosc, init_from: plain, freeze_loaded: true, "
        "overrides: {model.params.skip: tamosc, model.params.skip_params: {fuse_channels: 4, num_experts: 2}}}]\n"
    )
    config = load_config(recipe, TINY)
    path = tmp_path / "plain.pt"
    torch.save(build_model(stage_config(config, config.stages[0])).state_dict(), path)
    second = stage_config(config, config.stages[1], init_checkpoint=path)
    model = build_model(second)
    load_initial_weights(model, second)  # the new TA-MoSC modules are missing, the rest fills > 95%
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith("skips.") for name in trainable)
    assert any(not p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("content", [b"name: x\nmodel: {name: unet}\n", b"\x89PNG\r\n\x1a\n not an image either"])
def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as raised:
        read_checkpoint(path)
    assert str(raised.value) == f"checkpoint {path} is not a PyTorch checkpoint (.ckpt, .pt or .pth file)"


def test_a_pickled_module_is_refused_without_torch_advice(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError) as raised:
        read_checkpoint(path)
    message = str(raised.value)
    assert "\n" not in message and "weights_only" not in message and "state_dict()" in message
