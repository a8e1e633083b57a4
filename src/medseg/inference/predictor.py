"""Whole-image prediction at each image's original size, with the training preprocessing."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medseg.config import ExperimentConfig
from medseg.data import prepare_image
from medseg.engine.checkpoint import load_checkpoint_config, read_checkpoint
from medseg.engine.module import build_model
from medseg.errors import MedsegError
from medseg.models import SegmentationModel

__all__ = ["AUTOCAST_DTYPES", "Predictor", "describe_device", "resolve_device"]

AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
"""Mixed precisions a predictor runs under (``torch.autocast`` with this type); ``32`` runs in float32."""


def resolve_device(device: str) -> torch.device:
    """The torch device that ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` names.

    Args:
        device: ``auto`` (the first CUDA device when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        The device.

    Raises:
        MedsegError: another name, or a CUDA device this machine does not have.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if match is None:
        raise MedsegError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(match.group(1) or 0)
    if index >= count:
        found = f"it has {count} CUDA device(s)" if count else "it has no CUDA device"
        raise MedsegError(f"device {device} is not available on this machine: {found}; use --device cpu")
    return torch.device(device)


def describe_device(device: torch.device) -> str:
    """The device as a summary states it: ``cpu``, or ``cuda:0 (<GPU name>)``.

    Args:
        device: a resolved device.

    Returns:
        The text.
    """
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


class Predictor:
    """Predicts probabilities and label maps for raw images.

    An image is normalised exactly as in training (:func:`medseg.data.prepare_image`), resized to the training
    size, padded to a multiple of the model's ``output_stride``, predicted, cropped, and its probabilities are
    resized back (bilinear) to the original size before thresholding or argmax.

    Args:
        model: trained model.
        config: the configuration it was trained with (preprocessing, image size, task).
        device: where to run the model.
        precision: ``32`` (float32), or ``bf16-mixed``/``16-mixed`` to run the model under ``torch.autocast``
            with bfloat16/float16 (probabilities are float32 either way).
    """

    def __init__(
        self,
        model: SegmentationModel,
        config: ExperimentConfig,
        device: str | torch.device = "cpu",
        precision: str = "32",
    ) -> None:
        if precision != "32" and precision not in AUTOCAST_DTYPES:
            raise MedsegError(f"unknown precision {precision!r}; use 32, {' or '.join(AUTOCAST_DTYPES)}")
        self.model = model.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self.precision = precision
        self.threshold = config.eval.threshold

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", precision: str = "32") -> Predictor:
        """Rebuild the model and its preprocessing from a ``.ckpt`` written by ``medseg train``.

        Args:
            path: checkpoint file.
            device: where to run the model.
            precision: ``32``, ``bf16-mixed`` or ``16-mixed`` (see the class).

        Returns:
            The predictor.
        """
        return cls.from_payload(read_checkpoint(path), path, device, precision)

    @classmethod
    def from_payload(
        cls, payload: dict[str, Any], path: str | Path, device: str | torch.device = "cpu", precision: str = "32"
    ) -> Predictor:
        """Rebuild the model and its preprocessing from a checkpoint already read (:func:`read_checkpoint`).

        Args:
            payload: the checkpoint's content.
            path: its file, for error messages.
            device: where to run the model.
            precision: ``32``, ``bf16-mixed`` or ``16-mixed`` (see the class).

        Returns:
            The predictor.
        """
        config = load_checkpoint_config(payload, path)
        model = build_model(config)
        state = {k.removeprefix("model."): v for k, v in payload["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
        return cls(model, config, device, precision)

    def _autocast(self) -> AbstractContextManager[object]:
        """``torch.autocast`` for a mixed precision, nothing for float32."""
        if self.precision == "32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.precision])

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """Normalise a raw image exactly as in training, at its own size.

        Args:
            image: raw ``(H, W)`` or ``(H, W, C)`` image as read from disk.

        Returns:
            ``(1, in_channels, H, W)`` float32 tensor on the predictor's device.
        """
        array = image if image.ndim == 3 else image[..., None]
        return torch.from_numpy(prepare_image(array, self.config.data)).unsqueeze(0).to(self.device)

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Run the model on prepared images of any size, padding to ``output_stride`` and cropping back.

        Args:
            batch: ``(N, in_channels, H, W)`` prepared images.

        Returns:
            ``(N, K, H, W)`` float32 probabilities (sigmoid for one channel, softmax otherwise).
        """
        height, width = batch.shape[-2:]
        stride = self.model.output_stride
        pad_h, pad_w = (-height) % stride, (-width) % stride
        mode = "reflect" if pad_h < height and pad_w < width else "constant"
        with self._autocast():
            logits = self.model(F.pad(batch.to(self.device), (0, pad_w, 0, pad_h), mode=mode))
        logits = logits[..., :height, :width].float()
        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)

    @torch.inference_mode()
    def model_input(self, image: np.ndarray) -> torch.Tensor:
        """An image prepared as in training and resized (bilinear) to the training size.

        Args:
            image: raw ``(H, W)`` or ``(H, W, C)`` image as read from disk.

        Returns:
            ``(1, in_channels, S, S)`` float32 tensor on the predictor's device, ``S = data.image_size``.
        """
        size = self.config.data.image_size
        return F.interpolate(self.prepare(image), size=(size, size), mode="bilinear", align_corners=False)

    @torch.inference_mode()
    def restore(self, probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Resize probabilities predicted at the training size back to an image's own size (bilinear).

        Args:
            probs: ``(N, K, S, S)`` probabilities.
            size: ``(height, width)`` of the image.

        Returns:
            ``(N, K, height, width)`` probabilities.
        """
        return F.interpolate(probs, size=size, mode="bilinear", align_corners=False)

    @torch.inference_mode()
    def label_map(self, probs: torch.Tensor) -> torch.Tensor:
        """Class indices from probabilities: ``> eval.threshold`` for one channel, argmax otherwise.

        Args:
            probs: ``(N, K, H, W)`` probabilities.

        Returns:
            ``(N, H, W)`` int64 class indices, on the probabilities' device.
        """
        return (probs[:, 0] > self.threshold).long() if probs.shape[1] == 1 else probs.argmax(1)

    @torch.inference_mode()
    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities at the image's own size.

        Args:
            image: raw ``(H, W)`` or ``(H, W, C)`` image as read from disk.

        Returns:
            ``(K, H, W)`` float32 probabilities; K = 1 (foreground) for a binary task.
        """
        probs = self.restore(self.probabilities(self.model_input(image)), image.shape[:2])
        return probs[0].cpu().numpy()

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Label map at the image's own size.

        Args:
            image: raw ``(H, W)`` or ``(H, W, C)`` image.

        Returns:
            ``(H, W)`` int64 class indices (0/1 for a binary task, thresholded at ``eval.threshold``).
        """
        probs = self.predict_proba(image)
        if probs.shape[0] == 1:
            return (probs[0] > self.threshold).astype(np.int64)
        return probs.argmax(0).astype(np.int64)
