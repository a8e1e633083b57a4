"""Tiny untrained models saved as medseg checkpoints, for the predictor, API and ``medseg predict`` tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from medseg.checkpoints import build_model, save_weights
from medseg.config import ExperimentConfig, load_config
from medseg.inference import Predictor

TINY = ["model.params.base_channels=4", "data.image_size=32", "eval.metric_workers=0"]


def tiny_config(*overrides: str) -> ExperimentConfig:
    """A U-Net with 4 base channels trained (notionally) at 32 px, with ``overrides``."""
    return load_config(None, [*TINY, *overrides])


def tiny_predictor(*overrides: str, **options: object) -> Predictor:
    """A seeded untrained tiny U-Net on the CPU."""
    config = tiny_config(*overrides)
    torch.manual_seed(0)
    return Predictor(build_model(config), config, "cpu", **options)  # type: ignore[arg-type]


def tiny_checkpoint(
    path: Path, *overrides: str, median_threshold_of: np.ndarray | None = None, volume: bool = False
) -> Path:
    """Save a seeded untrained tiny U-Net as a medseg checkpoint.

    Args:
        path: the file.
        *overrides: configuration overrides.
        median_threshold_of: an image, or a volume ``(z, y, x)`` with ``volume``: ``eval.threshold`` becomes the
            median of its foreground probability, so that its masks hold both classes.
        volume: ``median_threshold_of`` is a volume.

    Returns:
        ``path``.
    """
    config = tiny_config(*overrides)
    torch.manual_seed(0)
    model = build_model(config)
    if median_threshold_of is not None:
        predictor = Predictor(model, config, "cpu")
        if volume:
            probs = predictor.predict_volume_proba(median_threshold_of)
        else:
            probs = predictor.predict_proba(median_threshold_of)
        threshold = float(np.median(probs))
        config = config.model_copy(update={"eval": config.eval.model_copy(update={"threshold": threshold})})
    return save_weights(path, model, config)


def tiny_run(folder: Path, *overrides: str) -> Path:
    """A run folder as ``medseg train`` leaves it (config.yaml, checkpoints/best.ckpt and last.ckpt) with two
    different seeded untrained models."""
    config = tiny_config(*overrides)
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    for seed, name in ((0, "best"), (1, "last")):
        torch.manual_seed(seed)
        save_weights(folder / "checkpoints" / f"{name}.ckpt", build_model(config), config)
    return folder
