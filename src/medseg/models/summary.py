"""Parameter counts of the registered models in their reference configurations: true and thop-style."""

from __future__ import annotations

from typing import Any

import torch

from medseg.models.params import count_parameters, thop_style_count
from medseg.models.registry import create_model, list_models, model_info

__all__ = ["model_rows"]


def model_rows() -> list[dict[str, Any]]:
    """Describe every registered model, built on the meta device (no memory, no initialisation cost).

    Returns:
        One mapping per model: ``name``, ``params`` (true count, ``sum(p.numel())``), ``thop_params`` (what
        ``thop.profile`` reports, assuming every module runs; see :mod:`medseg.models.params`),
        ``reference_params``, ``kwargs`` and ``paper``.
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
                "thop_params": thop_style_count(model),
                "reference_params": info.reference_params,
                "kwargs": kwargs,
                "paper": info.paper,
            }
        )
    return rows
