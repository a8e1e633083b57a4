"""Prediction on raw images and volumes (:func:`load`, :class:`Predictor`): options, test-time augmentation,
sliding windows, post-processing and the files ``medseg predict`` writes.

:class:`Predictor` is imported on first use, so that the numpy-only modules of this package
(:mod:`~medseg.inference.base`, :mod:`~medseg.inference.run`, :mod:`~medseg.inference.onnx_predictor`,
:mod:`~medseg.inference.tta`, :mod:`~medseg.inference.postprocess`, :mod:`~medseg.inference.writers`,
:mod:`~medseg.inference.volumes`) and :func:`load` of an ONNX model load without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from medseg.inference.onnx_predictor import OnnxPredictor
    from medseg.inference.predictor import Predictor

__all__ = ["Predictor", "load"]


def load(
    source: str | Path,
    device: str | torch.device | None = None,
    precision: str | None = None,
    checkpoint: str = "best",
    **options: Any,
) -> Predictor | OnnxPredictor:
    """Load a trained or exported model for prediction, without Lightning.

    Example::

        import medseg

        model = medseg.load("runs/unet-kvasir")  # or "model.onnx", exported by `medseg export`
        labels = model.predict(image)  # (H, W) class indices
        probs = model.predict_proba([image1, image2])  # a list of (K, H, W) arrays

    Args:
        source: a run folder, a ``.ckpt`` written by ``medseg train`` or an exported bundle
            (:func:`medseg.checkpoints.resolve_source`), read into PyTorch; or an exported ``.onnx`` model with its
            sidecar, run by ONNX Runtime on the CPU without torch.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``eval.device`` when ``None``); ONNX models: the CPU.
        precision: ``32``, ``bf16-mixed``, ``16-mixed`` or ``auto`` (``eval.precision`` when ``None``); ONNX
            models: ``32``.
        checkpoint: for a run folder, ``best`` or ``last``.
        **options: the other arguments of :class:`Predictor` (``mode``, ``tta``, ``batch_size`` ...), or of
            :class:`~medseg.inference.onnx_predictor.OnnxPredictor` for an ONNX model.

    Returns:
        A :class:`Predictor`, or an :class:`~medseg.inference.onnx_predictor.OnnxPredictor` for a ``.onnx`` file;
        both predict with :meth:`~medseg.inference.base.SlicePredictor.predict` and
        :meth:`~medseg.inference.base.SlicePredictor.predict_proba`.

    Raises:
        CheckpointError: no model there, or one that cannot be read.
        MedsegError: an ONNX model without its sidecar, or an option ONNX models do not take.
    """
    if Path(source).suffix.lower() == ".onnx":
        from medseg.inference.onnx_predictor import TORCH_ONLY_OPTIONS, OnnxPredictor, refuse_torch_options

        refuse_torch_options({"device": device, "precision": precision, "checkpoint": checkpoint, **options})
        return OnnxPredictor(
            source, **{name: value for name, value in options.items() if name not in TORCH_ONLY_OPTIONS}
        )
    from medseg.checkpoints import load_trained
    from medseg.inference.predictor import Predictor

    trained = load_trained(source, checkpoint)
    return Predictor(trained.model, trained.config, device, precision, **options)


def __getattr__(name: str) -> Any:
    if name != "Predictor":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from medseg.inference.predictor import Predictor

    globals()[name] = Predictor
    return Predictor
