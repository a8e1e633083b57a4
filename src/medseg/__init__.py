"""medseg: 2D medical image segmentation with U-shaped networks.

The public API is imported on first use, so ``import medseg`` costs nothing and :func:`load` never imports
Lightning or the trainer::

    import medseg

    model = medseg.load("runs/unet-kvasir")  # a run folder, a .ckpt, an exported bundle or model.onnx
    labels = model.predict(image)  # (H, W) class indices at the image's size
    probs = model.predict_proba([image1, image2])  # a list of (K, H, W) probabilities

Names: :func:`load` and :class:`Predictor` (:mod:`medseg.inference`); :func:`create_model`, :func:`list_models`,
:func:`model_info` and :func:`register_model` (:mod:`medseg.models`); :func:`load_config`
(:mod:`medseg.config`); :func:`evaluate_run` (:mod:`medseg.evaluation`); :func:`train` (:mod:`medseg.engine`,
which imports Lightning); :class:`MedsegError` (:mod:`medseg.errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from medseg.config import load_config
    from medseg.engine.trainer import train
    from medseg.errors import MedsegError
    from medseg.evaluation import evaluate_run
    from medseg.inference import load
    from medseg.inference.predictor import Predictor
    from medseg.models import create_model, list_models, model_info, register_model

_EXPORTS = {
    "load": "medseg.inference",
    "Predictor": "medseg.inference.predictor",
    "create_model": "medseg.models",
    "list_models": "medseg.models",
    "model_info": "medseg.models",
    "register_model": "medseg.models",
    "load_config": "medseg.config",
    "evaluate_run": "medseg.evaluation",
    "train": "medseg.engine.trainer",
    "MedsegError": "medseg.errors",
}

__all__ = [
    "MedsegError",
    "Predictor",
    "__version__",
    "create_model",
    "evaluate_run",
    "list_models",
    "load",
    "load_config",
    "model_info",
    "register_model",
    "train",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
