"""Whole-image prediction at each image's original size, with the training preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medseg.config import ExperimentConfig
from medseg.data import prepare_image
from medseg.engine.checkpoint import load_checkpoint_config, read_checkpoint
from medseg.engine.module import build_model
from medseg.models import SegmentationModel

__all__ = ["Predictor"]


class Predictor:
    """Predicts probabilities and label maps for raw images.

    An image is normalised exactly as in training (:func:`medseg.data.prepare_image`), resized to the training
    size, padded to a multiple of the model's ``output_stride``, predicted, cropped, and its probabilities are
    resized back (bilinear) to the original size before thresholding or argmax.

    Args:
        model: trained model.
        config: the configuration it was trained with (preprocessing, image size, task).
        device: where to run the model.
    """

    def __init__(self, model: SegmentationModel, config: ExperimentConfig, device: str | torch.device = "cpu") -> None:
        self.model = model.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self.threshold = config.eval.threshold

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Predictor:
        """Rebuild the model and its preprocessing from a ``.ckpt`` written by ``medseg train``.

        Args:
            path: checkpoint file.
            device: where to run the model.

        Returns:
            The predictor.
        """
        payload = read_checkpoint(path)
        config = load_checkpoint_config(payload, path)
        model = build_model(config)
        state = {k.removeprefix("model."): v for k, v in payload["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
        return cls(model, config, device)

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
        logits = self.model(F.pad(batch.to(self.device), (0, pad_w, 0, pad_h), mode=mode))
        logits = logits[..., :height, :width].float()
        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)

    @torch.inference_mode()
    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities at the image's own size.

        Args:
            image: raw ``(H, W)`` or ``(H, W, C)`` image as read from disk.

        Returns:
            ``(K, H, W)`` float32 probabilities; K = 1 (foreground) for a binary task.
        """
        tensor = self.prepare(image)
        height, width = tensor.shape[-2:]
        size = self.config.data.image_size
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
        probs = F.interpolate(self.probabilities(tensor), size=(height, width), mode="bilinear", align_corners=False)
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
