"""Trained models without Lightning: read medseg checkpoints, run folders and exported bundles, rebuild the model.

This is the one place that turns stored weights into a model with its preprocessing (the configuration it was
trained with). It imports neither Lightning nor the trainer, so :func:`medseg.load` and ``medseg predict`` start
quickly; :mod:`medseg.engine.checkpoint` adds the Lightning side (checkpoint IO, resume points).

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain values only, never arbitrary Python
objects. A trained model comes from:

- a ``.ckpt`` written by ``medseg train`` (or any file holding ``state_dict`` and ``hyper_parameters.config``);
- a run folder: its ``checkpoints/best.ckpt`` (or ``last.ckpt``);
- an exported bundle: a JSON sidecar (or its folder) with ``"weights"``, the file name of a weights file next to
  it in the format :func:`save_weights` writes.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.config import ExperimentConfig, config_from_dict, stage_config
from medseg.errors import MedsegError
from medseg.models import SegmentationModel, create_model

__all__ = [
    "CHECKPOINT_NAMES",
    "CheckpointError",
    "LoadedWeights",
    "TrainedModel",
    "build_model",
    "final_stage_config",
    "load_checkpoint_config",
    "load_model_weights",
    "load_trained",
    "model_from_payload",
    "read_checkpoint",
    "resolve_source",
    "save_weights",
]

CHECKPOINT_NAMES = ("best", "last")
"""The checkpoints a run folder publishes: ``checkpoints/best.ckpt`` and ``checkpoints/last.ckpt``."""


class CheckpointError(MedsegError):
    """A checkpoint that is missing, unreadable or not a medseg checkpoint."""


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


def final_stage_config(config: ExperimentConfig) -> ExperimentConfig:
    """The configuration that produced a run's published checkpoints (the last stage's, or the run's own).

    Args:
        config: the experiment as written to the run folder.

    Returns:
        A single-run configuration.
    """
    return stage_config(config, config.stages[-1]) if config.stages else config


def build_model(config: ExperimentConfig) -> SegmentationModel:
    """Build the configured model with the data's channel counts.

    Args:
        config: experiment configuration.

    Returns:
        The randomly initialised model.
    """
    return create_model(
        config.model.name,
        in_channels=config.data.in_channels,
        num_classes=config.out_channels,
        **config.model.params,
    )


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


@dataclass(frozen=True)
class TrainedModel:
    """A model with the configuration it was trained with.

    Attributes:
        model: the network with its trained weights, in eval mode, on the CPU.
        config: its configuration (preprocessing, training size, classes, ``eval.*`` predictor defaults).
        source: the weights file it was read from.
    """

    model: SegmentationModel
    config: ExperimentConfig
    source: Path


def model_from_payload(payload: dict[str, Any], path: str | Path) -> TrainedModel:
    """Rebuild the model a medseg checkpoint holds, with its configuration.

    The random initialisation the weights overwrite does not draw from the caller's random number generators.

    Args:
        payload: the checkpoint's content (:func:`read_checkpoint`).
        path: its file, for error messages.

    Returns:
        The model in eval mode, its configuration and ``path``.

    Raises:
        CheckpointError: no medseg configuration, or weights that do not fit the model it describes.
    """
    config = load_checkpoint_config(payload, path)
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} has no state_dict")
    with torch.random.fork_rng(devices=[]):
        model = build_model(config)
    weights = {key.removeprefix("model."): value for key, value in state.items() if key.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        problem = " ".join(str(error).split())
        raise CheckpointError(
            f"checkpoint {path}: its weights do not fit the model its configuration describes "
            f"({config.model.name}): {problem[:300]}"
        ) from None
    return TrainedModel(model.eval(), config, Path(path))


def save_weights(path: str | Path, model: nn.Module, config: ExperimentConfig) -> Path:
    """Write a model's weights with its configuration, readable by :func:`load_trained` (no training state).

    Args:
        path: the file to write (``.ckpt`` by convention).
        model: the trained model.
        config: the configuration it was trained with.

    Returns:
        ``path``.
    """
    from medseg import __version__

    path = Path(path)
    state = {f"model.{key}": value.detach().cpu() for key, value in model.state_dict().items()}
    payload = {
        "state_dict": state,
        "hyper_parameters": {"config": config.model_dump(mode="json")},
        "medseg_version": __version__,
    }
    torch.save(payload, path)
    return path


def _bundle_weights(sidecar: Path) -> Path:
    """The weights file an exported bundle's JSON sidecar names."""
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"bundle {sidecar} could not be read: {_first_line(error)}") from None
    weights = meta.get("weights") if isinstance(meta, dict) else None
    if not isinstance(weights, str):
        raise CheckpointError(f'bundle {sidecar} names no weights file ("weights"); export the model again')
    return sidecar.parent / weights


def resolve_source(source: str | Path, checkpoint: str = "best") -> Path:
    """The weights file a model source stands for.

    Args:
        source: a checkpoint file, a run folder (``config.yaml`` and ``checkpoints/``), an exported bundle's JSON
            sidecar, or a folder holding exactly one such sidecar.
        checkpoint: for a run folder, ``best`` or ``last``.

    Returns:
        The checkpoint file to read.

    Raises:
        CheckpointError: nothing there, a run folder without that checkpoint, or a folder that is neither a run
            nor a bundle.
    """
    path = Path(source)
    if path.is_file():
        return _bundle_weights(path) if path.suffix.lower() == ".json" else path
    if not path.is_dir():
        raise CheckpointError(f"model {path} does not exist; give a run folder, a .ckpt or an exported bundle")
    if (path / "config.yaml").is_file() or (path / "checkpoints").is_dir():
        if checkpoint not in CHECKPOINT_NAMES:
            raise CheckpointError(f"unknown checkpoint {checkpoint!r}; use {' or '.join(CHECKPOINT_NAMES)}")
        found = path / "checkpoints" / f"{checkpoint}.ckpt"
        if not found.is_file():
            raise CheckpointError(f"run {path} has no checkpoints/{checkpoint}.ckpt; was the run trained to the end?")
        return found
    sidecars = sorted(path.glob("*.json"))
    if len(sidecars) == 1:
        return _bundle_weights(sidecars[0])
    raise CheckpointError(
        f"{path} is neither a run folder (config.yaml, checkpoints/) nor an exported bundle (one .json sidecar)"
    )


def load_trained(source: str | Path, checkpoint: str = "best") -> TrainedModel:
    """Rebuild a trained model and its configuration from a checkpoint, a run folder or an exported bundle.

    Args:
        source: see :func:`resolve_source`.
        checkpoint: for a run folder, ``best`` or ``last``.

    Returns:
        The model (eval mode, CPU), its configuration and the weights file.

    Raises:
        CheckpointError: see :func:`resolve_source`, :func:`read_checkpoint` and :func:`model_from_payload`.
    """
    path = resolve_source(source, checkpoint)
    return model_from_payload(read_checkpoint(path), path)
