"""Export a trained model to ONNX or TorchScript with a JSON sidecar (``medseg export``).

An export writes three files next to each other, named after ``OUT``:

- the model: ``<stem>.onnx`` (ONNX, read by ONNX Runtime, :mod:`medseg.inference.onnx_predictor`) or ``<stem>.pt``
  (TorchScript, ``torch.jit.load``). Its input ``image`` is a float32 ``(N, C, S, S)`` batch prepared as in
  training, its output ``logits`` the raw ``(N, K, S, S)`` logits (sigmoid for K = 1, softmax otherwise). The batch
  size is free; with ``dynamic_shape`` so are height and width (multiples of the output stride);
- the sidecar ``<stem>.json``: everything needed to use the model without medseg's configuration (input channels,
  normalisation, training size, output stride, threshold, class names, the ``eval.*`` prediction defaults, the
  medseg and torch versions, the SHA-256 of the model and weights files and how closely the export reproduced the
  eager outputs). ``medseg.load`` reads it as a bundle (its ``"weights"``);
- the weights ``<stem>.ckpt`` in medseg's format (:func:`medseg.checkpoints.save_weights`), so that the bundle also
  loads into PyTorch.

Both formats are made by tracing the model (``torch.jit.trace``; ONNX by the TorchScript-based exporter,
``torch.onnx.export(dynamo=False)``, which traces too). The ``torch.export``-based ONNX exporter was measured as
unusable here with torch 2.13: it fails on ``swin_unet`` and ``transunet`` and needs about five minutes for
``vmunet`` and ``asc_seg``, whose selective-scan loops it unrolls. Models trace with their export paths (the
out-of-place selective scan with its chunk loop in TorchScript, the dense TA-MoSC dispatch). What an architecture
cannot export is declared by :attr:`~medseg.models.SegmentationModel.export_limits`; asking for it is a one-line
:class:`ExportError`.

Every export is verified: the exported model is run (ONNX Runtime on the CPU, or the TorchScript interpreter) on
seeded random inputs (a batch of two at the export size and, with ``dynamic_shape``, a second size) and compared
with the eager model; a difference above ``atol + rtol * |eager|`` (:data:`TOLERANCE`) is an :class:`ExportError`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.checkpoints import load_trained, save_weights
from medseg.config import ExperimentConfig
from medseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD, LUMA_WEIGHTS
from medseg.errors import MedsegError
from medseg.models import SegmentationModel

__all__ = [
    "DEFAULT_OPSET",
    "EXPORT_FORMATS",
    "SIDECAR_VERSION",
    "TOLERANCE",
    "ExportError",
    "ExportResult",
    "export_limit",
    "export_model",
    "export_run",
    "file_sha256",
    "preprocessing_spec",
]

EXPORT_FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
"""Export formats and the ending of their model file."""

DEFAULT_OPSET = 17
"""ONNX opset of ``medseg export`` (17: LayerNormalization is one operator)."""

SIDECAR_VERSION = 1
"""Version of the sidecar's layout (``"medseg_export"``)."""

TOLERANCE = {"atol": 1e-4, "rtol": 1e-3}
"""How far an exported model's logits may be from the eager ones: ``|Δ| <= atol + rtol * |eager|``."""

INPUT_NAME, OUTPUT_NAME = "image", "logits"


class ExportError(MedsegError):
    """A model that cannot be exported as asked, or an export that does not reproduce the eager outputs."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes:
        model: the exported model file.
        sidecar: its JSON sidecar.
        weights: the weights in medseg's format.
        max_abs_diff: the largest difference between the exported and the eager logits in the verification
            (``None`` when not verified).
    """

    model: Path
    sidecar: Path
    weights: Path
    max_abs_diff: float | None


def export_limit(model: SegmentationModel, feature: str) -> str | None:
    """Why ``model`` cannot be exported with ``feature``, or ``None`` when it can.

    Args:
        model: the model.
        feature: a format (``onnx``, ``torchscript``) or ``dynamic_shape``.

    Returns:
        The reason its class declares in :attr:`~medseg.models.SegmentationModel.export_limits`.
    """
    return type(model).export_limits.get(feature)


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file.

    Args:
        path: the file.

    Returns:
        64 hex digits.
    """
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def preprocessing_spec(config: ExperimentConfig) -> dict[str, Any]:
    """How a raw image becomes the model's input, as :func:`medseg.data.prepare_image` and the predictor do it.

    Args:
        config: the configuration the model was trained with.

    Returns:
        The sidecar's ``preprocessing`` section: channel conversion, normalisation ``(x / divide - mean) / std``
        per channel (``minmax``: each image to [0, 1]; ``none``: unchanged) and the resize to the training size.
    """
    data = config.data
    cfg = data.transforms
    channels = data.in_channels
    affine: dict[str, Any] = {}
    if cfg.normalize == "unit":
        affine = {"divide": 255.0, "mean": [0.0] * channels, "std": [1.0] * channels}
    elif cfg.normalize == "imagenet":
        affine = {"divide": 255.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    elif cfg.normalize == "zscore":
        affine = {"divide": 1.0, "mean": list(cfg.mean or []), "std": list(cfg.std or [])}
    return {
        "channels": channels,
        "grey_to_rgb": "repeat" if channels == 3 else None,
        "rgb_to_grey": LUMA_WEIGHTS.tolist() if channels == 1 else None,
        "normalize": cfg.normalize,
        **affine,
        "size": data.image_size,
        "resize": {"mode": "bilinear", "align_corners": False, "antialias": False},
        "restore": "probabilities resized back to the image size the same way, then thresholded or argmax",
    }


def _sidecar(
    config: ExperimentConfig,
    model: SegmentationModel,
    fmt: str,
    files: dict[str, Path],
    dynamic_shape: bool,
    opset: int | None,
    source: Path | None,
    max_abs_diff: float | None,
    checked: list[list[int]],
) -> dict[str, Any]:
    """The sidecar's content (see the module docstring)."""
    from medseg import __version__

    settings = config.eval
    size = config.data.image_size
    return {
        "medseg_export": SIDECAR_VERSION,
        "format": fmt,
        "model_file": files["model"].name,
        "model_sha256": file_sha256(files["model"]),
        "weights": files["weights"].name,
        "weights_sha256": file_sha256(files["weights"]),
        "source": str(source) if source is not None else None,
        "source_sha256": file_sha256(source) if source is not None and source.is_file() else None,
        "medseg_version": __version__,
        "torch_version": torch.__version__,
        "opset": opset,
        "architecture": {"name": config.model.name, "params": dict(config.model.params)},
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "layout": "NCHW",
            "channels": model.in_channels,
            "height": None if dynamic_shape else size,
            "width": None if dynamic_shape else size,
            "dynamic_batch": True,
            "dynamic_shape": dynamic_shape,
            "output_stride": model.output_stride,
        },
        "output": {
            "name": OUTPUT_NAME,
            "channels": model.num_classes,
            "kind": "logits",
            "activation": "sigmoid" if model.num_classes == 1 else "softmax",
        },
        "preprocessing": preprocessing_spec(config),
        "task": {
            "binary": config.binary,
            "num_classes": config.data.num_classes,
            "class_names": ["background", *config.foreground_names],
            "threshold": settings.threshold,
        },
        "eval": {
            "batch_size": settings.batch_size,
            "tta": settings.tta,
            "tta_transforms": list(settings.tta_transforms),
            "largest_component": settings.largest_component,
            "fill_holes": settings.fill_holes,
            "min_size": settings.min_size,
            "slice_axis": settings.slice_axis,
        },
        "verification": {"max_abs_diff": max_abs_diff, **TOLERANCE, "inputs": checked} if checked else None,
        "config": config.model_dump(mode="json"),
    }


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Silence what tracing says about every model: the trace warnings (the sizes a trace fixes are declared by
    ``export_limits`` and checked by the verification) and the exporter's deprecation notice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        yield


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _write_torchscript(model: SegmentationModel, example: torch.Tensor, path: Path) -> None:
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
    torch.jit.save(traced, str(path))


def _write_onnx(model: SegmentationModel, example: torch.Tensor, path: Path, dynamic_shape: bool, opset: int) -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'medseg[export]'") from None
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_shape else {0: "batch"}
    with _quiet_tracing(), torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
        )


def _exported_runner(fmt: str, path: Path) -> Any:
    """A function running the exported model on a numpy batch (ONNX Runtime on the CPU, or TorchScript)."""
    if fmt == "torchscript":
        loaded = torch.jit.load(str(path))

        def run_torchscript(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return loaded(torch.from_numpy(batch)).numpy()

        return run_torchscript
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("checking an ONNX export needs onnxruntime: pip install 'medseg[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run_onnx(batch: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

    return run_onnx


def _verify(
    model: SegmentationModel, fmt: str, path: Path, sizes: list[tuple[int, int]]
) -> tuple[float, list[list[int]]]:
    """Compare the exported model with the eager one on seeded random batches of two; see the module docstring."""
    run = _exported_runner(fmt, path)
    generator = torch.Generator().manual_seed(0)
    worst, checked = 0.0, []
    for height, width in sizes:
        batch = torch.randn(2, model.in_channels, height, width, generator=generator)
        with torch.no_grad():
            expected = model(batch).numpy()
        try:
            got = run(batch.numpy())
        except Exception as error:  # ONNX Runtime and the TorchScript interpreter raise many types
            raise ExportError(
                f"the exported {path} does not run on a {height}x{width} batch: {_first_line(error)}"
            ) from None
        if got.shape != expected.shape:
            raise ExportError(f"the exported {path} gives logits of shape {got.shape}, the model {expected.shape}")
        diff = np.abs(got - expected)
        worst = max(worst, float(diff.max()))
        if not np.all(diff <= TOLERANCE["atol"] + TOLERANCE["rtol"] * np.abs(expected)):
            raise ExportError(
                f"the exported {path} differs from the model by up to {float(diff.max()):.3g} on a {height}x{width} "
                f"batch (tolerance {TOLERANCE['atol']:g} + {TOLERANCE['rtol']:g} x |logit|)"
            )
        checked.append([2, model.in_channels, height, width])
    return worst, checked


def _paths(out: Path, fmt: str | None) -> tuple[str, dict[str, Path]]:
    """The format and the files of an export to ``out`` (a model file, or a folder for ``model.<ending>``)."""
    endings = {ending: name for name, ending in EXPORT_FORMATS.items()}
    suffix = out.suffix.lower()
    if fmt is None:
        fmt = endings.get(suffix, "onnx")
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use {' or '.join(EXPORT_FORMATS)}")
    if endings.get(suffix, fmt) != fmt:
        raise ExportError(f"{out} ends in {suffix}, the ending of {endings[suffix]} files, not of {fmt} files")
    if out.is_dir() or not suffix:
        out = out / f"model{EXPORT_FORMATS[fmt]}"
    elif suffix in (".json", ".ckpt"):
        raise ExportError(f"{out}: the model file cannot end in {suffix} (the sidecar and the weights do)")
    return fmt, {"model": out, "sidecar": out.with_suffix(".json"), "weights": out.with_suffix(".ckpt")}


def export_model(
    model: SegmentationModel,
    config: ExperimentConfig,
    out: str | Path,
    fmt: str | None = None,
    *,
    dynamic_shape: bool = False,
    opset: int = DEFAULT_OPSET,
    source: Path | None = None,
    verify: bool = True,
) -> ExportResult:
    """Export a model with its sidecar and weights, and verify it (see the module docstring).

    Args:
        model: the trained model (it is put in eval mode on the CPU).
        config: the configuration it was trained with.
        out: the model file (``.onnx``, ``.pt``), or a folder to write ``model.onnx``/``model.pt`` into.
        fmt: ``onnx`` or ``torchscript``; from the ending of ``out`` when ``None`` (ONNX for a folder).
        dynamic_shape: free height and width (multiples of the output stride), not only the batch size.
        opset: ONNX opset version.
        source: the checkpoint the model was read from (its path and SHA-256 go into the sidecar).
        verify: compare the exported model with the eager one (the sidecar's ``verification`` is ``null``
            without).

    Returns:
        The files written and the verification's largest difference.

    Raises:
        ExportError: a format or dynamic shape the architecture declares it cannot give, an export that fails or
            does not reproduce the eager logits, a missing ONNX package.
    """
    fmt, files = _paths(Path(out), fmt)
    model = model.cpu().eval()
    name = config.model.name
    for feature, asked in ((fmt, True), ("dynamic_shape", dynamic_shape)):
        reason = export_limit(model, feature) if asked else None
        if reason is not None:
            flag = "--dynamic-shape" if feature == "dynamic_shape" else f"--format {feature}"
            raise ExportError(f"{name} cannot be exported with {flag}: {reason}")
    size = config.data.image_size
    stride = model.output_stride
    example = torch.randn(1, model.in_channels, size, size, generator=torch.Generator().manual_seed(0))
    files["model"].parent.mkdir(parents=True, exist_ok=True)
    try:
        if fmt == "onnx":
            _write_onnx(model, example, files["model"], dynamic_shape, opset)
        else:
            _write_torchscript(model, example, files["model"])
    except ExportError:
        raise
    except Exception as error:  # tracing and the exporter raise many types
        raise ExportError(f"{name} could not be exported to {fmt}: {_first_line(error)}") from None
    sizes = [(size, size)]
    if dynamic_shape:
        sizes.append((size + 2 * stride, size + stride))
    max_abs_diff, checked = _verify(model, fmt, files["model"], sizes) if verify else (None, [])
    save_weights(files["weights"], model, config)
    opset_used = opset if fmt == "onnx" else None
    meta = _sidecar(config, model, fmt, files, dynamic_shape, opset_used, source, max_abs_diff, checked)
    files["sidecar"].write_text(json.dumps(meta, indent=2) + "\n")
    return ExportResult(files["model"], files["sidecar"], files["weights"], max_abs_diff)


def export_run(
    source: str | Path,
    out: str | Path,
    fmt: str | None = None,
    *,
    dynamic_shape: bool = False,
    opset: int = DEFAULT_OPSET,
    checkpoint: str = "best",
) -> ExportResult:
    """Export the model of a run folder, a checkpoint or a bundle (:func:`medseg.checkpoints.load_trained`).

    Args:
        source: run folder, ``.ckpt`` or exported bundle.
        out: see :func:`export_model`.
        fmt: see :func:`export_model`.
        dynamic_shape: see :func:`export_model`.
        opset: see :func:`export_model`.
        checkpoint: for a run folder, ``best`` or ``last``.

    Returns:
        See :func:`export_model`.
    """
    trained = load_trained(source, checkpoint)
    return export_model(
        trained.model, trained.config, out, fmt, dynamic_shape=dynamic_shape, opset=opset, source=trained.source
    )
