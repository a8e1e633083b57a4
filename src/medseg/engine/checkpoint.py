"""Reading checkpoints: medseg ``.ckpt`` files (Lightning) and plain state dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.config import ExperimentConfig, config_from_dict
from medseg.errors import MedsegError

__all__ = ["CheckpointError", "load_checkpoint_config", "load_model_weights", "read_checkpoint"]


class CheckpointError(MedsegError):
    """A checkpoint that is missing, unreadable or not a medseg checkpoint."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU.

    Args:
        path: ``.ckpt`` written by ``medseg train`` or a ``.pt``/``.pth`` state dict.

    Returns:
        The loaded mapping.

    Raises:
        CheckpointError: the file is missing or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} could not be read: {error}") from None
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


def load_model_weights(model: nn.Module, path: str | Path, strict: bool = True) -> tuple[list[str], list[str]]:
    """Load weights into ``model`` from a medseg ``.ckpt`` or a plain (possibly ``model.``-prefixed) state dict.

    Args:
        model: the model to fill.
        path: checkpoint file.
        strict: require every key to match; with ``False`` new modules keep their initialisation.

    Returns:
        The missing and unexpected keys.

    Raises:
        CheckpointError: unreadable file or, when ``strict``, mismatching keys or shapes.
    """
    payload = read_checkpoint(path)
    state = payload.get("state_dict", payload)
    if any(key.startswith("model.") for key in state):
        state = {key.removeprefix("model."): value for key, value in state.items() if key.startswith("model.")}
    own = model.state_dict()
    wrong_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong_shape:
        if strict:
            raise CheckpointError(f"checkpoint {path}: shape mismatch for {', '.join(wrong_shape[:5])}")
        state = {k: v for k, v in state.items() if k not in wrong_shape}
    try:
        result = model.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not fit the model: {error}") from None
    return list(result.missing_keys), list(result.unexpected_keys)
