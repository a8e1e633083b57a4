"""Parameter counts of the registered models in their reference configurations."""

from __future__ import annotations

from typing import Any

import torch

from medseg.models.registry import create_model, list_models, model_info

__all__ = ["count_parameters", "model_rows"]


def count_parameters(model: torch.nn.Module) -> int:
    """Return the number of parameters (``sum(p.numel())``, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def model_rows() -> list[dict[str, Any]]:
    """Describe every registered model, built on the meta device (no memory, no initialisation cost).

    Returns:
        One mapping per model: ``name``, ``params``, ``reference_params``, ``kwargs`` and ``paper``.
    """
    rows = []
    for name in list_models():
        info = model_info(name)
        kwargs = dict(info.default_kwargs or {})
        with torch.device("meta"):
            model = create_model(name, **kwargs)
        rows.append(
            {
                "name": name,
                "params": count_parameters(model),
                "reference_params": info.reference_params,
                "kwargs": kwargs,
                "paper": info.paper,
            }
        )
    return rows
