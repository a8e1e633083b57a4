"""The Lightning side of checkpoints: atomic checkpoint writes, the checkpoint callback of a run and the checkpoint
a run resumes from. Reading checkpoints and rebuilding models lives in :mod:`medseg.checkpoints` (no Lightning);
its functions are re-exported here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins import TorchCheckpointIO

from medseg.checkpoints import (
    CheckpointError,
    LoadedWeights,
    load_checkpoint_config,
    load_model_weights,
    read_checkpoint,
)
from medseg.engine.outputs import atomic_write

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "LoadedWeights",
    "ResumePoint",
    "RunCheckpoint",
    "find_resume_point",
    "load_checkpoint_config",
    "load_model_weights",
    "read_checkpoint",
]

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes each checkpoint to a temporary file next to it and renames it into place.

    A write that fails (disk full, interrupted run) keeps the previous ``best.ckpt``/``last.ckpt`` intact and raises
    :class:`~medseg.engine.outputs.OutputWriteError` naming the checkpoint. (Lightning's own IO writes through a
    temporary file in the system temp folder and then copies it when that is another file system, which can leave a
    truncated checkpoint.)
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to the local file ``path``.

        Args:
            checkpoint: the state Lightning collected.
            path: destination file.
            storage_options: not supported (must be ``None``).

        Raises:
            OutputWriteError: the file could not be written.
        """
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        atomic_write(path, lambda stream: torch.save(checkpoint, stream))


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose restored state follows a run folder that was moved or copied.

    Lightning restores which checkpoint is best (``best_model_score`` ...) only when the checkpoint folder is where
    it was when the state was saved; this one maps the saved paths into the current folder first, so a resumed run
    keeps comparing against its best epoch wherever its folder now is.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved in a checkpoint, its paths moved into :attr:`dirpath`.

        Args:
            state_dict: the state saved by :meth:`state_dict`.
        """
        old = state_dict.get("dirpath")
        if isinstance(old, str) and self.dirpath is not None and old != self.dirpath:
            new = str(self.dirpath)

            def moved(path: Any) -> Any:
                return new + path[len(old) :] if isinstance(path, str) and path.startswith(old) else path

            state_dict = {key: moved(value) for key, value in state_dict.items()}
            state_dict["best_k_models"] = {moved(key): v for key, v in state_dict.get("best_k_models", {}).items()}
        super().load_state_dict(state_dict)


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues from.

    Attributes:
        path: the checkpoint file.
        epochs_done: epochs finished when it was written.
        step: optimiser steps done.
        mid_epoch: written during an epoch (``train.checkpoint_every_n_steps``), not at its end.
    """

    path: Path
    epochs_done: int
    step: int
    mid_epoch: bool


def _resume_point(path: Path) -> ResumePoint:
    """Read ``path`` and describe it as a point to resume from; :class:`CheckpointError` when it cannot be one."""
    payload = read_checkpoint(path)
    loops = payload.get("loops", {}).get("fit_loop")
    if not isinstance(loops, dict) or "optimizer_states" not in payload:
        raise CheckpointError(f"checkpoint {path} holds no training state (loops, optimiser) to resume from")
    # Lightning counts an epoch as processed once its batches and validation ran, before its end-of-epoch hooks
    processed = int(loops["epoch_progress"]["current"]["processed"])
    epoch = int(payload.get("epoch", 0))
    return ResumePoint(path, processed, int(payload.get("global_step", 0)), mid_epoch=processed == epoch)


def find_resume_point(checkpoints: Path) -> ResumePoint | None:
    """Choose the checkpoint an interrupted run continues from: ``last.ckpt``, else ``best.ckpt``.

    Temporary files left by a write that was cut off (``.<name>-<random>.tmp.ckpt``) are removed. When
    ``last.ckpt`` cannot be read (truncated, damaged) but ``best.ckpt`` can, the run falls back to ``best.ckpt``
    and says so in a warning.

    Args:
        checkpoints: the run's ``checkpoints`` folder.

    Returns:
        The checkpoint to resume from; ``None`` when the run has none yet (it was stopped in its first epoch).

    Raises:
        CheckpointError: there are checkpoints but none can be resumed from; the message names each file, its
            problem and how to go on.
    """
    for temporary in checkpoints.glob(".*.tmp*"):
        log.info("removed %s, left by a checkpoint write that was cut off", temporary)
        temporary.unlink(missing_ok=True)
    candidates = [checkpoints / name for name in ("last.ckpt", "best.ckpt") if (checkpoints / name).exists()]
    problems = []
    for path in candidates:
        try:
            point = _resume_point(path)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if problems:
            log.warning(
                "%s; resuming from %s instead (%d epochs done): the epochs after it are trained again",
                "; ".join(problems),
                path,
                point.epochs_done,
            )
        return point
    if not problems:
        return None
    raise CheckpointError(
        f"{'; '.join(problems)}; no checkpoint of {checkpoints.parent} can be resumed from: start the run again "
        f"(medseg train {checkpoints.parent / 'config.yaml'})"
    )
