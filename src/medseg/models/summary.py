"""Parameter counts of the registered models in their reference configurations: true and thop-style."""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from medseg.models.params import count_parameters, thop_style_count
from medseg.models.registry import create_model, list_models, model_info

__all__ = ["model_rows"]


class _MetaBuild(TorchFunctionMode):
    """Builds a model with its floating-point tensors on the meta device and without initialising them.

    In-place functions on meta tensors (``normal_``, ``nn.init.kaiming_normal_``...) are skipped, and integer
    tensors (index buffers such as Swin's relative positions) are made on the CPU: on the meta device both would run
    through ``torch._refs``, whose first use imports ``torch._dynamo`` (about 1 s of a 3 s ``medseg models``).
    Parameter shapes, and so the counts, are those of a normal build.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")
        if name.endswith("_") and not name.endswith("__") and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        if func in _device_constructors() and kwargs.get("device") is None and func is not torch.arange:
            dtype = kwargs.get("dtype")
            if dtype is None or dtype.is_floating_point or dtype.is_complex:
                kwargs["device"] = "meta"
        return func(*args, **kwargs)


def model_rows() -> list[dict[str, Any]]:
    """Describe every registered model, built with meta parameters (no memory, no initialisation cost).

    Returns:
        One mapping per model: ``name``, ``params`` (true count, ``sum(p.numel())``), ``thop_params`` (what
        ``thop.profile`` reports, assuming every module runs; see :mod:`medseg.models.params`),
        ``reference_params``, ``kwargs`` and ``paper``.
    """
    rows = []
    for name in list_models():
        info = model_info(name)
        kwargs = dict(info.default_kwargs or {})
        with _MetaBuild():
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
