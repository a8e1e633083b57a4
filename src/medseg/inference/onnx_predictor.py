"""Prediction with an exported ONNX model through ONNX Runtime: numpy, Pillow and the sidecar, no torch.

:class:`OnnxPredictor` reads the model ``<stem>.onnx`` and its sidecar ``<stem>.json`` written by ``medseg export``
(:mod:`medseg.inference.export`) and predicts as :class:`medseg.inference.Predictor` does in ``resize`` mode:

1. the image's channels and values are prepared as in training (the sidecar's ``preprocessing``, the rules of
   :func:`medseg.data.prepare_image` written out in numpy);
2. it is resized to the training size by :func:`resize_bilinear`, the bilinear resize of
   ``torch.nn.functional.interpolate`` (``align_corners=False``, no anti-aliasing) in numpy;
3. ONNX Runtime gives the logits of a batch; sigmoid (one channel) or softmax turns them into probabilities; with
   test-time augmentation, the mean of the probabilities of the input and of its transforms
   (:mod:`medseg.inference.tta`);
4. the probabilities are resized back to the image's size the same way, thresholded (``eval.threshold``) or
   arg-maxed, and post-processed (:class:`~medseg.inference.postprocess.PostProcess`).

The numpy steps match the PyTorch ones to float rounding (the resize sums its terms in another order), so the
probabilities agree with the PyTorch predictor's to about 1e-6 and label maps differ only where a probability is
within that of the threshold. Volumes are predicted slice by slice along ``eval.slice_axis``
(:mod:`medseg.inference.volumes`). The Python API on images, files and volumes is the PyTorch predictor's
(:class:`~medseg.inference.base.SlicePredictor`); :func:`medseg.load` gives an :class:`OnnxPredictor` for a
``.onnx`` file. Importing this module imports neither torch nor Lightning.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.inference import tta as tta_ops
from medseg.inference.base import SlicePredictor
from medseg.inference.postprocess import PostProcess

__all__ = ["TORCH_ONLY_OPTIONS", "OnnxPredictor", "read_sidecar", "refuse_torch_options", "resize_bilinear"]

SIDECAR_VERSION = 1
"""The sidecar layout this module reads (``"medseg_export"``; :data:`medseg.inference.export.SIDECAR_VERSION`)."""


def read_sidecar(model: Path) -> dict[str, Any]:
    """The sidecar ``<stem>.json`` of an exported ONNX model.

    Args:
        model: the ``.onnx`` file.

    Returns:
        The sidecar's content.

    Raises:
        MedsegError: no model or sidecar, an unreadable sidecar, or one of another layout or format.
    """
    if not model.is_file():
        raise MedsegError(f"model {model} does not exist")
    sidecar = model.with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise MedsegError(f"{model} has no sidecar {sidecar.name} next to it; export it with `medseg export`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MedsegError(f"sidecar {sidecar} could not be read: {error}") from None
    if not isinstance(meta, dict) or meta.get("medseg_export") != SIDECAR_VERSION:
        raise MedsegError(f"{sidecar} is not a medseg export sidecar (version {SIDECAR_VERSION}); export it again")
    if meta.get("format") != "onnx":
        raise MedsegError(f"{sidecar} describes a {meta.get('format')} export, not an ONNX model")
    return meta


TORCH_ONLY_OPTIONS: dict[str, tuple[Any, ...]] = {
    "checkpoint": ("best",),
    "device": (None, "auto", "cpu"),
    "precision": (None, "auto", "32"),
    "mode": (None, "resize"),
    "overlap": (None,),
    "blend": (None,),
    "sigma_scale": (None,),
}
"""Options of the PyTorch predictor and the values an ONNX model accepts for them (ONNX Runtime runs it on the
CPU in float32, resizing each image to the training size)."""


def refuse_torch_options(options: Mapping[str, Any], flags: bool = False) -> None:
    """Refuse, in one line, the options given that do not apply to ONNX models (:data:`TORCH_ONLY_OPTIONS`).

    Args:
        options: option name -> value given (``None`` when not given).
        flags: name the options as command-line flags (``--sigma-scale``) rather than arguments.

    Raises:
        MedsegError: an option of :data:`TORCH_ONLY_OPTIONS` with a value ONNX models do not take.
    """
    refused = [
        f"--{name.replace('_', '-')}" if flags else name
        for name, value in options.items()
        if name in TORCH_ONLY_OPTIONS and value not in TORCH_ONLY_OPTIONS[name]
    ]
    if refused:
        raise MedsegError(
            f"{', '.join(refused)}: not for ONNX models, which ONNX Runtime runs on the CPU in float32, resizing "
            "each image to the training size"
        )


def _linear_weights(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of a bilinear resize along one axis, as PyTorch's CPU kernel computes them
    (``align_corners=False``): source = (i + 0.5) * scale - 0.5 clamped at 0, with the float32 scale in / out, in
    one rounding to float32 (the kernel's fused multiply-add), then the weights in float32."""
    scale = float(np.float32(size_in / size_out))
    source = np.maximum((np.arange(size_out) + 0.5) * scale - 0.5, 0).astype(np.float32)
    low = np.minimum(source.astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    weight_high = np.clip(source - low.astype(np.float32), 0, 1).astype(np.float32)
    return low, high, np.float32(1) - weight_high, weight_high


def resize_bilinear(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes bilinearly, as ``F.interpolate(mode="bilinear", align_corners=False)`` (no
    anti-aliasing, also when shrinking).

    Args:
        array: float32 ``(..., H, W)``.
        size: ``(height, width)`` wanted.

    Returns:
        float32 ``(..., height, width)``; equal to PyTorch's result up to float rounding.
    """
    height, width = array.shape[-2:]
    if (height, width) == tuple(size):
        return array
    top, bottom, w_top, w_bottom = _linear_weights(height, size[0])
    left, right, w_left, w_right = _linear_weights(width, size[1])
    columns = array[..., left] * w_left + array[..., right] * w_right
    return columns[..., top, :] * w_top[:, None] + columns[..., bottom, :] * w_bottom[:, None]


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-logits))).astype(np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _session(model: Path, threads: int | None) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (when ``None``: ``OMP_NUM_THREADS`` if set,
    else the usable CPUs, as :func:`medseg.runtime.set_threads` sizes PyTorch's) that do not spin while they wait,
    as medseg asks of OpenMP (:mod:`medseg.runtime`)."""
    try:
        import onnxruntime
    except ImportError:
        raise MedsegError("predicting with an ONNX model needs onnxruntime: pip install 'medseg[export]'") from None
    from medseg.runtime import available_cpus

    configured = os.environ.get("OMP_NUM_THREADS", "")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or (int(configured) if configured.isdigit() else 0) or available_cpus()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime raises its own exception types for a damaged or foreign file
        text = str(error).strip().splitlines()
        raise MedsegError(f"cannot load ONNX model {model}: {text[0] if text else type(error).__name__}") from None


class OnnxPredictor(SlicePredictor):
    """Predicts probabilities and label maps with an exported ONNX model (see the module docstring).

    Args:
        model: the ``.onnx`` file; its sidecar ``<stem>.json`` must be next to it.
        batch_size: images (or slices) per ONNX Runtime call (the sidecar's ``eval.batch_size`` when ``None``).
        tta: ``True`` for the sidecar's ``eval.tta_transforms``, ``False`` for none, or the transform names
            (:data:`medseg.inference.tta.TTA_TRANSFORMS`); the sidecar's ``eval.tta`` when ``None``.
        postprocess: label-map post-processing (from the sidecar's ``eval.*`` when ``None``).
        slice_axis: NIfTI voxel axis volumes are sliced along (the sidecar's ``eval.slice_axis`` when ``None``).
        threads: ONNX Runtime intra-op threads (``OMP_NUM_THREADS``, else the CPUs this process may use, when
            ``None``).

    Raises:
        MedsegError: a missing or foreign model or sidecar, a bad option, or no onnxruntime.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        batch_size: int | None = None,
        tta: bool | Sequence[str] | None = None,
        postprocess: PostProcess | None = None,
        slice_axis: int | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = Path(model)
        self.meta = read_sidecar(self.path)
        settings = self.meta["eval"]
        auto = settings["batch_size"] == "auto"  # eval.batch_size: auto is one input at a time on the CPU
        self.batch_size = (1 if auto else settings["batch_size"]) if batch_size is None else batch_size
        if self.batch_size < 1:
            raise MedsegError(f"the batch size must be at least 1, got {self.batch_size}")
        if tta is None:
            tta = settings["tta"]
        chosen = (settings["tta_transforms"] if tta else ()) if isinstance(tta, bool) else tta
        self.tta = tta_ops.check_transforms(chosen)
        self.postprocess = postprocess or PostProcess(
            settings["min_size"], settings["largest_component"], settings["fill_holes"]
        )
        self.slice_axis = settings["slice_axis"] if slice_axis is None else slice_axis
        if self.slice_axis not in (0, 1, 2):
            raise MedsegError(f"unknown slice axis {self.slice_axis!r}; use 0, 1 or 2")
        self.threshold = float(self.meta["task"]["threshold"])
        self.binary = bool(self.meta["task"]["binary"])
        self.size = int(self.meta["preprocessing"]["size"])
        self.session = _session(self.path, threads)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """An image's channels and values as in training, at its own size (:func:`medseg.data.prepare_image`).

        Args:
            image: raw ``(H, W)`` or ``(H, W, C)`` image as read from disk.

        Returns:
            float32 ``(in_channels, H, W)``.

        Raises:
            MedsegError: an image of another rank, or channels that cannot be converted.
        """
        spec = self.meta["preprocessing"]
        pixels = (image[..., None] if image.ndim == 2 else image).astype(np.float32)
        if pixels.ndim != 3:
            raise MedsegError(f"image must be (H, W, C) or (H, W), got shape {image.shape}")
        channels, wanted = pixels.shape[-1], spec["channels"]
        if channels != wanted:
            if channels == 1 and spec["grey_to_rgb"]:
                pixels = np.repeat(pixels, wanted, axis=-1)
            elif channels == 3 and spec["rgb_to_grey"]:
                pixels = (pixels @ np.array(spec["rgb_to_grey"], dtype=np.float32))[..., None]
            else:
                raise MedsegError(f"image has {channels} channels; the model takes {wanted}")
        if spec["normalize"] == "minmax":
            low, high = float(pixels.min()), float(pixels.max())
            pixels = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
        elif spec["normalize"] != "none":
            mean, std = (np.array(spec[key], dtype=np.float32) for key in ("mean", "std"))
            pixels = (pixels / np.float32(spec["divide"]) - mean) / std
        return np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)

    def model_input(self, image: np.ndarray) -> np.ndarray:
        """An image prepared (:meth:`prepare`) and resized to the training size.

        Args:
            image: raw ``(H, W)`` or ``(H, W, C)`` image.

        Returns:
            float32 ``(in_channels, S, S)``.
        """
        return resize_bilinear(self.prepare(image), (self.size, self.size))

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.session.get_inputs()[0].name: np.ascontiguousarray(batch)})[0]
        return _sigmoid(logits) if logits.shape[1] == 1 else _softmax(logits)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities of prepared inputs; with test-time augmentation the mean over the transforms.

        Args:
            batch: float32 ``(N, in_channels, S, S)``.

        Returns:
            float32 ``(N, K, S, S)``.
        """
        probs = self._forward(batch)
        for name in self.tta:
            probs += tta_ops.invert(self._forward(tta_ops.apply(batch, name)), name)
        return probs / np.float32(1 + len(self.tta)) if self.tta else probs

    def input_of(self, image: np.ndarray) -> np.ndarray:
        """The model input of a raw image (:meth:`model_input`).

        Args:
            image: raw ``(H, W)`` or ``(H, W, C)`` image.

        Returns:
            float32 ``(in_channels, S, S)``.
        """
        return self.model_input(image)

    def predict_inputs(self, inputs: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]]) -> Iterator[np.ndarray]:
        """Probabilities of model inputs (:meth:`model_input`), :attr:`batch_size` at a time, each resized back to
        its image's size.

        Args:
            inputs: float32 ``(in_channels, S, S)`` arrays.
            sizes: ``(height, width)`` of each image.

        Yields:
            float32 ``(K, height, width)`` probabilities, in order.
        """
        for start in range(0, len(inputs), self.batch_size):
            probs = self.probabilities(np.stack(inputs[start : start + self.batch_size]))
            for image_probs, size in zip(probs, sizes[start : start + self.batch_size], strict=True):
                yield resize_bilinear(image_probs, size)

    def labels(self, probs: np.ndarray) -> np.ndarray:
        """Class indices of ``(K, ...)`` probabilities: above the threshold for one channel, argmax otherwise.

        Args:
            probs: ``(K, ...)`` probabilities.

        Returns:
            int64 class indices, ``probs`` without its first axis.
        """
        return (probs[0] > self.threshold).astype(np.int64) if probs.shape[0] == 1 else probs.argmax(0)

    def as_numpy(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities as they are (numpy already).

        Args:
            probs: probabilities.

        Returns:
            ``probs``.
        """
        return probs
