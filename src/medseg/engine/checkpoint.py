"""Reading and writing checkpoints: medseg ``.ckpt`` files (Lightning) and plain state dicts; the checkpoint a run
resumes from."""

from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins import TorchCheckpointIO
from torch import nn

from medseg.config import ExperimentConfig, config_from_dict
from medseg.engine.outputs import atomic_write
from medseg.errors import MedsegError

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


class CheckpointError(MedsegError):
    """A checkpoint that is missing, unreadable or not a medseg checkpoint."""


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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU (tensors and plain values only, never arbitrary Python objects).

    Args:
        path: ``.ckpt`` written by ``medseg train`` or a ``.pt``/``.pth`` state dict.

    Returns:
        The loaded mapping.

    Raises:
        CheckpointError: the file is missing, is not a PyTorch checkpoint, holds other Python objects or cannot be
            read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        with path.open("rb") as handle:
            pickled = handle.read(1) == b"\x80"
        if zipfile.is_zipfile(path) or pickled:
            raise CheckpointError(
                f"checkpoint {path} holds Python objects other than tensors and plain values; "
                "save the model's state_dict() instead"
            ) from None
        raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint (.ckpt, .pt or .pth file)") from None
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} could not be read: {_first_line(error)}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not a state dict")
    return payload


def load_checkpoint_config(payload: dict[str, Any], path: str | Path) -> ExperimentConfig:
    """Return the experiment configuration stored in a medseg checkpoint.

    Args:
        payload: the loaded checkpoint.
        path: its file name, for the error message.

    Returns:
        The configuration the run was trained with.

    Raises:
        CheckpointError: the checkpoint was not written by ``medseg train``.
    """
    config = payload.get("hyper_parameters", {}).get("config")
    if config is None:
        raise CheckpointError(f"checkpoint {path} has no medseg configuration; pass a .ckpt written by `medseg train`")
    return config_from_dict(config)


@dataclass(frozen=True)
class LoadedWeights:
    """What loading a checkpoint into a model filled.

    Attributes:
        loaded: model keys (parameters and buffers) that took the checkpoint's tensor.
        missing: model keys the checkpoint does not have; they keep their initialisation.
        unexpected: checkpoint keys the model does not have; ignored.
        mismatched: keys both have with different shapes; the model keeps its initialisation.
        filled_share: share of the model's parameter elements (not buffers) that the checkpoint filled, 0..1.
    """

    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]
    filled_share: float

    def describe(self) -> str:
        """One line of counts: loaded, missing, unexpected and shape-mismatched tensors and the filled share."""
        return (
            f"{len(self.loaded)} tensors loaded, {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.mismatched)} with another shape; fills {self.filled_share:.1%} of the model's parameters"
        )


def load_model_weights(model: nn.Module, path: str | Path, strict: bool = True) -> LoadedWeights:
    """Load weights into ``model`` from a medseg ``.ckpt`` or a plain (possibly ``model.``-prefixed) state dict.

    Args:
        model: the model to fill.
        path: checkpoint file.
        strict: require every key to match; with ``False`` the keys that fit are loaded and the others keep their
            initialisation (check :attr:`LoadedWeights.filled_share` to refuse a checkpoint of another model).

    Returns:
        What was loaded, missing, unexpected or of another shape.

    Raises:
        CheckpointError: unreadable file or, when ``strict``, mismatching keys or shapes.
    """
    payload = read_checkpoint(path)
    state = payload.get("state_dict", payload)
    if any(key.startswith("model.") for key in state):
        state = {key.removeprefix("model."): value for key, value in state.items() if key.startswith("model.")}
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and (not torch.is_tensor(v) or own[k].shape != v.shape)]
    if mismatched:
        if strict:
            raise CheckpointError(f"checkpoint {path}: shape mismatch for {', '.join(mismatched[:5])}")
        state = {k: v for k, v in state.items() if k not in mismatched}
    try:
        result = model.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not fit the model: {' '.join(str(error).split())}") from None
    loaded = [key for key in own if key in state]
    parameters = dict(model.named_parameters())
    total = sum(p.numel() for p in parameters.values())
    filled = sum(parameters[key].numel() for key in loaded if key in parameters)
    return LoadedWeights(
        loaded=loaded,
        missing=[key for key in result.missing_keys if key not in mismatched],
        unexpected=list(result.unexpected_keys),
        mismatched=mismatched,
        filled_share=filled / total if total else 1.0,
    )


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
