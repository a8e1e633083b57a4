"""Prediction on raw images and volumes (:class:`Predictor`, :func:`load`): options, test-time augmentation,
sliding windows, post-processing and the files ``medseg predict`` writes.

:class:`Predictor` and :func:`load` are imported on first use, so that the numpy-only modules of this package
(:mod:`~medseg.inference.tta`, :mod:`~medseg.inference.postprocess`, :mod:`~medseg.inference.writers`,
:mod:`~medseg.inference.volumes`) load without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medseg.inference.predictor import Predictor, load

__all__ = ["Predictor", "load"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from medseg.inference import predictor

    value = getattr(predictor, name)
    globals()[name] = value
    return value
