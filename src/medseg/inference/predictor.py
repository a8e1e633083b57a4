"""Prediction on raw images and volumes at their original size, with the training preprocessing.

A :class:`Predictor` holds a trained model, the configuration it was trained with and how to predict:

- **device and precision**: ``auto``/``cpu``/``cuda``/``cuda:N``; float32, or bfloat16/float16 autocast;
- **mode**: ``resize`` (each image resized to the training size, as in training and evaluation, and the
  probabilities resized back) or ``sliding_window`` (the image at its own size in overlapping windows of the
  training size, blended with Gaussian or constant weights: MONAI's ``sliding_window_inference``);
- **test-time augmentation**: the mean of the probabilities of the input and of its flips, quarter turns or
  transpose (:mod:`medseg.inference.tta`);
- **post-processing** of the label maps (:class:`~medseg.inference.postprocess.PostProcess`);
- **batches**: images of any sizes are predicted ``batch_size`` at a time; a volume slice by slice in batches.

Each setting left out takes the configuration's ``eval.*`` value. Building a predictor needs neither Lightning nor
the trainer (:func:`medseg.load` reads run folders, checkpoints and exported bundles through
:mod:`medseg.checkpoints`). The Python API on images, files and volumes comes from
:class:`~medseg.inference.base.SlicePredictor`, which the ONNX Runtime predictor shares.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from medseg.checkpoints import model_from_payload, read_checkpoint
from medseg.config import DataConfig, ExperimentConfig, eval_batch_size
from medseg.data.transforms import prepare_image
from medseg.errors import MedsegError
from medseg.inference import tta as tta_ops
from medseg.inference.base import PreparedImage, SlicePredictor, prepare_file
from medseg.inference.postprocess import PostProcess
from medseg.models import SegmentationModel

__all__ = [
    "AUTOCAST_DTYPES",
    "MODES",
    "Predictor",
    "describe_device",
    "model_input_array",
    "predictor_precision",
    "resolve_device",
    "resolve_precision",
]

AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
"""Mixed precisions a predictor runs under (``torch.autocast`` with this type); ``32`` runs in float32."""

MODES = ("resize", "sliding_window")
"""How an image is fed to the model (see the module docstring)."""

BLENDS = ("gaussian", "constant")


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


def resolve_precision(precision: str, accelerator: str) -> str:
    """Turn ``auto`` into ``bf16-mixed`` where the hardware runs bfloat16 natively, else ``32``.

    Args:
        precision: configured precision.
        accelerator: configured accelerator.

    Returns:
        A Lightning precision setting.
    """
    if precision != "auto":
        return precision
    on_gpu = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if torch.backends.mkldnn.is_available() and torch.cpu._is_avx512_bf16_supported() else "32"


def predictor_precision(setting: str, config: ExperimentConfig, device: torch.device) -> str:
    """The precision a model predicts in.

    Args:
        setting: ``32``, ``bf16-mixed``, ``16-mixed`` or ``auto``: the run's training precision on a GPU, float32
            on the CPU.
        config: the run's configuration (its ``train.precision``).
        device: where the model runs.

    Returns:
        ``32``, ``bf16-mixed`` or ``16-mixed``.
    """
    if setting != "auto":
        return setting
    return resolve_precision(config.train.precision, "gpu") if device.type == "cuda" else "32"


def model_input_array(image: np.ndarray, data: DataConfig, size: int | None) -> torch.Tensor:
    """An image prepared as in training (:func:`medseg.data.prepare_image`), resized (bilinear) to ``size``.

    Numpy and CPU torch only, so DataLoader workers run it.

    Args:
        image: raw ``(H, W)`` or ``(H, W, C)`` image.
        data: the data settings the model was trained with.
        size: the side to resize to; ``None`` keeps the image's size (sliding-window mode).

    Returns:
        ``(1, in_channels, size, size)`` (or ``(1, in_channels, H, W)``) float32 CPU tensor.

    Raises:
        DataError: an image of the wrong rank or channels.
    """
    tensor = torch.from_numpy(prepare_image(image if image.ndim == 3 else image[..., None], data)).unsqueeze(0)
    if size is None:
        return tensor
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)


def _choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    if value not in allowed:
        raise MedsegError(f"unknown {name} {value!r}; use {' or '.join(str(option) for option in allowed)}")
    return value


class _ImageFiles(Dataset[PreparedImage]):
    """Reads and prepares 2D image files for the model (numpy and CPU torch: runs in DataLoader workers).

    Args:
        paths: the image files.
        data: the data settings the model was trained with.
        size: the side images are resized to, ``None`` to keep their size.
        keep_images: also return the raw images (for overlays).
    """

    def __init__(self, paths: Sequence[Path], data: DataConfig, size: int | None, keep_images: bool) -> None:
        self.paths = list(paths)
        self.data = data
        self.size = size
        self.keep_images = keep_images

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> PreparedImage:
        return prepare_file(self.paths[index], index, self.prepare, self.keep_images)

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        return model_input_array(image, self.data, self.size)


class Predictor(SlicePredictor):
    """Predicts probabilities and label maps for raw images and volumes.

    An image is normalised exactly as in training (:func:`medseg.data.prepare_image`); in ``resize`` mode it is
    resized to the training size, padded to a multiple of the model's ``output_stride``, predicted, cropped, and
    its probabilities are resized back (bilinear) to the original size before thresholding or argmax.

    Args:
        model: trained model.
        config: the configuration it was trained with (preprocessing, image size, task, ``eval.*`` defaults).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a torch device (``eval.device`` when ``None``).
        precision: ``32`` (float32), ``bf16-mixed``/``16-mixed`` (``torch.autocast`` with bfloat16/float16;
            probabilities are float32 either way) or ``auto`` (see :func:`predictor_precision`); ``eval.precision``
            when ``None``.
        batch_size: model inputs per batch (images, slices or windows); ``eval.batch_size`` when ``None``.
        mode: ``resize`` or ``sliding_window`` (``eval.mode``).
        tta: ``True`` for ``eval.tta_transforms``, ``False`` for none, or the transform names
            (:data:`medseg.inference.tta.TTA_TRANSFORMS`); ``eval.tta`` when ``None``.
        overlap: window overlap in ``sliding_window`` mode (``eval.overlap``).
        blend: ``gaussian`` or ``constant`` window weights (``eval.blend``).
        sigma_scale: Gaussian standard deviation as a share of the window side (``eval.sigma_scale``).
        postprocess: label-map post-processing; from ``eval.min_size``, ``eval.largest_component`` and
            ``eval.fill_holes`` when ``None``.
        slice_axis: the voxel axis volumes are sliced along (``eval.slice_axis``).

    Raises:
        MedsegError: an unknown device, precision, mode, blend or transform, or an overlap outside [0, 1).
    """

    def __init__(
        self,
        model: SegmentationModel,
        config: ExperimentConfig,
        device: str | torch.device | None = None,
        precision: str | None = None,
        *,
        batch_size: int | None = None,
        mode: str | None = None,
        tta: bool | Sequence[str] | None = None,
        overlap: float | None = None,
        blend: str | None = None,
        sigma_scale: float | None = None,
        postprocess: PostProcess | None = None,
        slice_axis: int | None = None,
    ) -> None:
        settings = config.eval
        device = settings.device if device is None else device
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        precision = settings.precision if precision is None else precision
        if precision != "auto" and precision != "32" and precision not in AUTOCAST_DTYPES:
            raise MedsegError(f"unknown precision {precision!r}; use 32, {' or '.join(AUTOCAST_DTYPES)} or auto")
        self.precision = predictor_precision(precision, config, self.device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.binary = config.binary
        self.threshold = settings.threshold
        self.batch_size = eval_batch_size(settings.batch_size, self.device.type) if batch_size is None else batch_size
        if self.batch_size < 1:
            raise MedsegError(f"the batch size must be at least 1, got {self.batch_size}")
        self.mode = _choice("mode", settings.mode if mode is None else mode, MODES)
        if tta is None:
            tta = settings.tta
        chosen = (settings.tta_transforms if tta else ()) if isinstance(tta, bool) else tta
        self.tta = tta_ops.check_transforms(chosen)
        self.overlap = settings.overlap if overlap is None else overlap
        if not 0 <= self.overlap < 1:
            raise MedsegError(f"the window overlap must be at least 0 and below 1, got {self.overlap}")
        self.blend = _choice("blend", settings.blend if blend is None else blend, BLENDS)
        self.sigma_scale = settings.sigma_scale if sigma_scale is None else sigma_scale
        self.postprocess = postprocess or PostProcess(
            settings.min_size, settings.largest_component, settings.fill_holes
        )
        self.slice_axis = _choice("slice axis", settings.slice_axis if slice_axis is None else slice_axis, (0, 1, 2))

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        precision: str | None = None,
        **options: Any,
    ) -> Predictor:
        """Rebuild the model and its preprocessing from a ``.ckpt`` written by ``medseg train``.

        Args:
            path: checkpoint file.
            device: see the class.
            precision: see the class.
            **options: the other arguments of the class.

        Returns:
            The predictor.
        """
        return cls.from_payload(read_checkpoint(path), path, device, precision, **options)

    @classmethod
    def from_payload(
        cls,
        payload: dict[str, Any],
        path: str | Path,
        device: str | torch.device | None = None,
        precision: str | None = None,
        **options: Any,
    ) -> Predictor:
        """Rebuild the model and its preprocessing from a checkpoint already read
        (:func:`medseg.checkpoints.read_checkpoint`).

        Args:
            payload: the checkpoint's content.
            path: its file, for error messages.
            device: see the class.
            precision: see the class.
            **options: the other arguments of the class.

        Returns:
            The predictor.
        """
        trained = model_from_payload(payload, path)
        return cls(trained.model, trained.config, device, precision, **options)

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
        return model_input_array(image, self.config.data, None).to(self.device)

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

    @property
    def input_size(self) -> int | None:
        """The side images are resized to before the model (``None`` in ``sliding_window`` mode: their own)."""
        return self.config.data.image_size if self.mode == "resize" else None

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """One pass of the model on prepared images of any size, padded to ``output_stride`` and cropped back."""
        height, width = batch.shape[-2:]
        stride = self.model.output_stride
        pad_h, pad_w = (-height) % stride, (-width) % stride
        mode = "reflect" if pad_h < height and pad_w < width else "constant"
        with self._autocast():
            logits = self.model(F.pad(batch, (0, pad_w, 0, pad_h), mode=mode))
        logits = logits[..., :height, :width].float()
        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Run the model on prepared images of any size, padding to ``output_stride`` and cropping back; with
        test-time augmentation, the mean of the probabilities of the batch and of its transforms.

        Args:
            batch: ``(N, in_channels, H, W)`` prepared images.

        Returns:
            ``(N, K, H, W)`` float32 probabilities (sigmoid for one channel, softmax otherwise).
        """
        batch = batch.to(self.device)
        probs = self._forward(batch)
        for name in self.tta:
            probs += tta_ops.invert(self._forward(tta_ops.apply(batch, name)), name)
        return probs / (1 + len(self.tta)) if self.tta else probs

    @torch.inference_mode()
    def sliding_window(self, image: torch.Tensor) -> torch.Tensor:
        """Probabilities of one prepared image at its own size, from overlapping windows of the training size.

        Windows are predicted :attr:`batch_size` at a time (each with the test-time augmentation) and blended
        with :attr:`blend` weights (MONAI's ``sliding_window_inference``); an image smaller than a window is
        padded with zeros for the model.

        Args:
            image: ``(1, in_channels, H, W)`` prepared image.

        Returns:
            ``(1, K, H, W)`` probabilities.
        """
        from monai.inferers import sliding_window_inference  # imported here: MONAI takes a second to import

        size = self.config.data.image_size
        probs = sliding_window_inference(
            image.to(self.device),
            roi_size=(size, size),
            sw_batch_size=self.batch_size,
            predictor=self.probabilities,
            overlap=self.overlap,
            mode=self.blend,
            sigma_scale=self.sigma_scale,
        )
        assert isinstance(probs, torch.Tensor)
        return probs.as_subclass(torch.Tensor)

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
    def predict_inputs(
        self, inputs: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]]
    ) -> Iterator[torch.Tensor]:
        """Probabilities of model inputs (:func:`model_input_array`), in batches, each at its image's size.

        Args:
            inputs: ``(1, in_channels, h, w)`` tensors: at the training size in ``resize`` mode, at the image's
                size in ``sliding_window`` mode.
            sizes: ``(height, width)`` of each image.

        Yields:
            ``(K, height, width)`` probabilities on the predictor's device, in order.
        """
        if self.mode == "sliding_window":
            for tensor in inputs:
                yield self.sliding_window(tensor)[0]
            return
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start : start + self.batch_size]
            probs = self.probabilities(chunk[0] if len(chunk) == 1 else torch.cat(list(chunk)))
            for index, size in enumerate(sizes[start : start + len(chunk)]):
                yield self.restore(probs[index : index + 1], size)[0]

    def input_of(self, image: np.ndarray) -> torch.Tensor:
        """The model input of a raw image (:func:`model_input_array`): at the training size in ``resize`` mode,
        at the image's size in ``sliding_window`` mode.

        Args:
            image: raw ``(H, W)`` or ``(H, W, C)`` image.

        Returns:
            ``(1, in_channels, h, w)`` float32 CPU tensor.
        """
        return model_input_array(image, self.config.data, self.input_size)

    def labels(self, probs: torch.Tensor | np.ndarray) -> np.ndarray:
        """The label map of one image's (or volume's) probabilities, without post-processing.

        Args:
            probs: ``(K, ...)`` probabilities.

        Returns:
            int64 class indices (numpy), ``probs`` without its first axis.
        """
        if isinstance(probs, torch.Tensor):
            chosen = probs[0] > self.threshold if probs.shape[0] == 1 else probs.argmax(0)
            return chosen.long().cpu().numpy()
        return (probs[0] > self.threshold).astype(np.int64) if probs.shape[0] == 1 else probs.argmax(0)

    def as_numpy(self, probs: torch.Tensor) -> np.ndarray:
        """Probabilities on the predictor's device as a numpy array.

        Args:
            probs: probabilities.

        Returns:
            float32 numpy array.
        """
        return probs.cpu().numpy()

    def prepared_batches(self, paths: Sequence[Path], keep_images: bool, workers: int) -> Iterator[list[PreparedImage]]:
        """Read and prepare 2D image files in DataLoader worker processes, :attr:`batch_size` at a time.

        Args:
            paths: the files.
            keep_images: keep the raw images (for overlays).
            workers: DataLoader worker processes; 0 reads here.

        Yields:
            Lists of prepared images (or their problems), in order.
        """
        dataset = _ImageFiles(paths, self.config.data, self.input_size, keep_images)
        yield from DataLoader(
            dataset, batch_size=self.batch_size, num_workers=min(workers, len(paths)), collate_fn=list
        )
