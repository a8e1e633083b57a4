"""A small, deterministic CPU training that a test can kill at a chosen moment (used by ``test_faults.py``).

``python -m tests.engine.killable RUN_DIR PHASE EPOCH [--resume]`` trains (or resumes) the run in ``RUN_DIR``; when it
reaches ``PHASE`` in epoch ``EPOCH`` (from 1) it writes ``RUN_DIR/../paused.json`` (phase, epoch, step) and sleeps
until it is killed. Phases:

* ``step``: inside the second training step of the epoch (after the forward pass, before the backward pass);
* ``validation``: after the first validation batch of the epoch;
* ``checkpoint``: half-way through writing the epoch's ``last.ckpt`` (its temporary file holds half the bytes);
* ``none``: run to the end.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import lightning.pytorch as pl
import torch

from medseg.config import ExperimentConfig, load_config
from medseg.engine import train
from medseg.engine.checkpoint import AtomicCheckpointIO
from medseg.engine.outputs import atomic_write
from tests.test_cli import TINY

SETTINGS = [
    *TINY,
    "train.epochs=3",
    "train.deterministic=true",
    "train.threads=1",
    "train.precision=32",
    "data.num_workers=0",
    "data.transforms.hflip=0.5",
    "data.transforms.rotate_degrees=20",
    "data.transforms.rotate_prob=0.5",
]
"""The run's settings (besides ``output_dir`` and ``name``): augmented, so resuming must restore its draws too."""


def config(run_dir: Path) -> ExperimentConfig:
    """The configuration of a killable run in ``run_dir``."""
    return load_config(None, [*SETTINGS, f"output_dir={run_dir.parent}", f"name={run_dir.name}"])


def pause(marker: Path, phase: str, trainer: pl.Trainer) -> None:
    """Say where the run is, then wait to be killed."""
    where = {"phase": phase, "epoch": trainer.current_epoch + 1, "step": trainer.global_step}
    marker.write_text(json.dumps(where))
    while True:
        time.sleep(1)


class PauseAt(pl.Callback):
    """Pause in a training step or in the validation of one epoch."""

    def __init__(self, marker: Path, phase: str, epoch: int) -> None:
        self.marker, self.phase, self.epoch = marker, phase, epoch

    def _here(self, trainer: pl.Trainer, phase: str) -> bool:
        return self.phase == phase and trainer.current_epoch + 1 == self.epoch and not trainer.sanity_checking

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if self._here(trainer, "step") and trainer.fit_loop.epoch_loop.batch_idx == 1:
            pause(self.marker, "step", trainer)

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self._here(trainer, "validation"):
            pause(self.marker, "validation", trainer)

    def patch_checkpoint_writes(self) -> None:
        """Make the write of this epoch's ``last.ckpt`` stop half-way (through the real atomic write) and pause."""
        original = AtomicCheckpointIO.save_checkpoint

        def save_checkpoint(io_self: AtomicCheckpointIO, checkpoint: dict[str, Any], path: Any, **kwargs: Any) -> None:
            if Path(path).name == "last.ckpt" and checkpoint["epoch"] == self.epoch - 1:

                def half_then_pause(stream: BinaryIO) -> None:
                    buffer = io.BytesIO()
                    torch.save(checkpoint, buffer)
                    stream.write(buffer.getvalue()[: buffer.tell() // 2])
                    stream.flush()
                    os.fsync(stream.fileno())
                    pause(self.marker, "checkpoint", self.trainer)

                atomic_write(path, half_then_pause)
            original(io_self, checkpoint, path, **kwargs)

        AtomicCheckpointIO.save_checkpoint = save_checkpoint

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.trainer = trainer
        if self.phase == "checkpoint":
            self.patch_checkpoint_writes()


def main(argv: list[str]) -> None:
    run_dir, phase, epoch = Path(argv[0]), argv[1], int(argv[2])
    callbacks = [PauseAt(run_dir.parent / "paused.json", phase, epoch)] if phase != "none" else []
    train(config(run_dir), run_dir, extra_callbacks=callbacks, resume="--resume" in argv)


if __name__ == "__main__":
    main(sys.argv[1:])
