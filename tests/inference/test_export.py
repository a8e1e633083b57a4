"""``medseg export``: every registered model to ONNX and TorchScript against its eager outputs, the capability flags,
the sidecar, and ``medseg predict model.onnx`` through ONNX Runtime without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

import medseg
from medseg.checkpoints import build_model, save_weights
from medseg.cli import app
from medseg.config import ExperimentConfig, load_config
from medseg.errors import MedsegError
from medseg.inference.export import ExportError, export_limit, export_model, export_run, file_sha256
from medseg.inference.onnx_predictor import OnnxPredictor, resize_bilinear
from medseg.models import SegmentationModel, list_models
from tests.inference.tiny import tiny_checkpoint

runner = CliRunner()

TINY_MODELS: dict[str, tuple[dict[str, Any], int]] = {
    "asc_seg": ({"channels": [4, 8, 12, 16]}, 32),
    "attention_unet": ({"base_channels": 4}, 64),
    "resnet34_unet": ({}, 64),
    "resunetpp": ({"filters": [8, 16, 32, 64, 128]}, 64),
    "swin_unet": ({"img_size": 64, "embed_dim": 24, "depths": [2, 1, 1, 1], "num_heads": [1, 2, 2, 4]}, 64),
    "transunet": (
        {
            "img_size": 64,
            "resnet_units": [1, 2, 1],
            "resnet_width": 32,
            "hidden_size": 48,
            "num_layers": 2,
            "num_heads": 4,
            "mlp_dim": 96,
            "head_channels": 64,
        },
        64,
    ),
    "unet": ({"base_channels": 8}, 64),
    "unet_uct": ({"base_channels": 4}, 64),
    "unetpp": ({"filters": [8, 16, 32, 64, 128]}, 64),
    "utanet": ({}, 64),
    "vmunet": ({"dims": [8, 16, 32, 64], "depths": [1, 1, 1, 1], "depths_decoder": [1, 1, 1, 1], "d_state": 4}, 64),
}
"""A small configuration (model parameters, image size) of every registered model."""

EXPECTED_LIMITS = {"transunet"}
"""The models whose exports have a fixed input size (``export_limits["dynamic_shape"]``)."""

TOLERANCE = 1e-4


def tiny(name: str, num_classes: int = 2) -> tuple[SegmentationModel, ExperimentConfig]:
    """A seeded model in its small configuration, with the configuration it would be trained with."""
    params, size = TINY_MODELS[name]
    config = load_config(
        None,
        [
            f"model.name={name}",
            f"model.params={json.dumps(params)}",
            f"data.image_size={size}",
            f"data.num_classes={num_classes}",
        ],
    )
    torch.manual_seed(0)
    return build_model(config).eval(), config


def run_exported(path: Path, batch: torch.Tensor) -> np.ndarray:
    if path.suffix == ".onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"image": batch.numpy()})[0]
    with torch.no_grad():
        return torch.jit.load(str(path))(batch).numpy()


def test_every_registered_model_has_a_small_configuration() -> None:
    assert sorted(TINY_MODELS) == list_models()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_every_model_exports_to_the_eager_outputs(name: str, fmt: str, tmp_path: Path) -> None:
    model, config = tiny(name, num_classes=3)
    reason = export_limit(model, fmt)
    if reason is not None:
        with pytest.raises(ExportError, match=f"{name} cannot be exported with --format {fmt}: {reason}"):
            export_model(model, config, tmp_path / "model", fmt)
        return
    result = export_model(model, config, tmp_path / "model", fmt)
    size = config.data.image_size
    batch = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))  # exported at batch 1
    with torch.no_grad():
        expected = model(batch).numpy()
    got = run_exported(result.model, batch)
    assert got.shape == expected.shape == (3, 3, size, size)
    assert float(np.abs(got - expected).max()) <= TOLERANCE
    assert result.max_abs_diff <= TOLERANCE


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_dynamic_shapes_export_or_are_declared_impossible(name: str, tmp_path: Path) -> None:
    model, config = tiny(name)
    reason = export_limit(model, "dynamic_shape")
    assert (reason is not None) == (name in EXPECTED_LIMITS)
    if reason is not None:
        with pytest.raises(ExportError, match=f"^{name} cannot be exported with --dynamic-shape: {reason}$"):
            export_model(model, config, tmp_path / "model.onnx", dynamic_shape=True)
        assert not (tmp_path / "model.onnx").exists()
        return
    result = export_model(model, config, tmp_path / "model.onnx", dynamic_shape=True)
    stride, size = model.output_stride, config.data.image_size
    batch = torch.randn(2, 3, size + stride, size + 3 * stride, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(batch).numpy()
    assert float(np.abs(run_exported(result.model, batch) - expected).max()) <= TOLERANCE


def test_export_cli_says_in_one_line_what_a_model_cannot_export(tmp_path: Path) -> None:
    model, config = tiny("transunet")
    checkpoint = tmp_path / "transunet.ckpt"
    save_weights(checkpoint, model, config)
    result = runner.invoke(app, ["export", str(checkpoint), str(tmp_path / "m.onnx"), "--dynamic-shape"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: transunet cannot be exported with --dynamic-shape: the position embeddings are resized to the "
        "token grid with Python sizes, which a trace fixes"
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny U-Net checkpoint (3 classes, ImageNet normalisation) and its ONNX export by the command line."""
    folder = tmp_path_factory.mktemp("export")
    checkpoint = tiny_checkpoint(
        folder / "tiny.ckpt",
        "data.num_classes=3",
        "data.class_names=[polyp,tool]",
        "data.transforms.normalize=imagenet",
    )
    result = runner.invoke(app, ["export", str(checkpoint), str(folder / "out" / "tiny.onnx")])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "tiny.json" in result.output
    return checkpoint, folder / "out" / "tiny.onnx"


def test_the_sidecar_holds_what_a_user_needs(exported: tuple[Path, Path]) -> None:
    checkpoint, model = exported
    meta = json.loads(model.with_suffix(".json").read_text())
    assert meta["format"] == "onnx" and meta["opset"] == 17 and meta["medseg_version"] == medseg.__version__
    assert meta["model_sha256"] == file_sha256(model)
    assert meta["weights"] == "tiny.ckpt" and meta["weights_sha256"] == file_sha256(model.with_suffix(".ckpt"))
    assert meta["source_sha256"] == file_sha256(checkpoint)
    assert meta["input"] | {"height": 32} == {
        "name": "image",
        "dtype": "float32",
        "layout": "NCHW",
        "channels": 3,
        "height": 32,
        "width": 32,
        "dynamic_batch": True,
        "dynamic_shape": False,
        "output_stride": 16,
    }
    assert meta["output"] == {"name": "logits", "channels": 3, "kind": "logits", "activation": "softmax"}
    assert meta["task"] == {
        "binary": False,
        "num_classes": 3,
        "class_names": ["background", "polyp", "tool"],
        "threshold": 0.5,
    }
    prep = meta["preprocessing"]
    assert (prep["normalize"], prep["divide"], prep["size"]) == ("imagenet", 255.0, 32)
    assert prep["mean"] == [0.485, 0.456, 0.406] and prep["std"] == [0.229, 0.224, 0.225]
    assert prep["resize"] == {"mode": "bilinear", "align_corners": False, "antialias": False}


def test_the_bundle_loads_into_pytorch_as_the_checkpoint(exported: tuple[Path, Path]) -> None:
    checkpoint, model = exported
    image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    from_bundle = medseg.load(model.with_suffix(".json"), device="cpu").predict_proba(image)
    np.testing.assert_array_equal(from_bundle, medseg.load(checkpoint, device="cpu").predict_proba(image))


@pytest.mark.parametrize(("height", "width", "size"), [(50, 70, (32, 32)), (17, 9, (40, 23)), (64, 64, (64, 64))])
def test_numpy_bilinear_resize_is_torch_interpolate(height: int, width: int, size: tuple[int, int]) -> None:
    array = np.random.default_rng(0).normal(size=(2, height, width)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(array)[None], size=size, mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(resize_bilinear(array, size), expected.numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [
        (),
        ("data.transforms.normalize=imagenet", "data.num_classes=3"),
        ("data.in_channels=1", "data.transforms.normalize=minmax"),
        ("data.transforms.normalize=zscore", "data.transforms.mean=[10,20,30]", "data.transforms.std=[50,60,70]"),
        ("data.transforms.normalize=none",),
    ],
    ids=["unit", "imagenet-3-classes", "grey-minmax", "zscore", "none"],
)
def test_onnx_predictor_probabilities_are_the_torch_predictors(overrides: tuple[str, ...], tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "tiny.ckpt", *overrides)
    model = export_run(checkpoint, tmp_path / "tiny.onnx").model
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(50, 70, 3), (20, 17), (33, 31, 1)]]
    for tta in (False, True):
        onnx_probs = OnnxPredictor(model, tta=tta, batch_size=2).predict_proba(images)
        torch_probs = medseg.load(checkpoint, device="cpu", tta=tta).predict_proba(images)
        for got, expected in zip(onnx_probs, torch_probs, strict=True):
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


BLOCK_TORCH = """
import sys


class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")


sys.meta_path.insert(0, BlockTorch())
"""


def test_medseg_predict_runs_an_onnx_model_without_torch(exported: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, model = exported
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for name, shape in {"a.png": (50, 70, 3), "b.jpg": (33, 33, 3), "c.bmp": (20, 30)}.items():
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(images / name)
    args = ["predict", str(model), str(images), str(tmp_path / "onnx"), "--tta", "--probabilities", "npz"]
    args += ["--workers", "2"]  # threads read the images
    code = BLOCK_TORCH + "from medseg.cli import app\n\napp(sys.argv[1:])\n"
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "wrote 3 mask(s)" in done.stdout
    result = runner.invoke(app, ["predict", str(checkpoint), str(images), str(tmp_path / "torch"), "--tta",
                                 "--probabilities", "npz"])  # fmt: skip
    assert result.exit_code == 0, result.output
    for name, shape in {"a": (50, 70), "b": (33, 33), "c": (20, 30)}.items():
        mask = np.asarray(Image.open(tmp_path / "onnx" / f"{name}.png"))
        assert mask.shape == shape and set(np.unique(mask)) <= {0, 1, 2}
        onnx_probs = np.load(tmp_path / "onnx" / f"{name}.npz")["probabilities"]
        torch_probs = np.load(tmp_path / "torch" / f"{name}.npz")["probabilities"]
        np.testing.assert_allclose(onnx_probs, torch_probs, rtol=0, atol=1e-5)


def test_medseg_predict_refuses_torch_options_for_an_onnx_model(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, model = exported
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    result = runner.invoke(app, ["predict", str(model), str(image), str(tmp_path / "out"), "--mode", "sliding_window"])
    assert result.exit_code == 2
    assert result.output.startswith("error: --mode: not for ONNX models") and result.output.count("\n") == 1
    alone = tmp_path / "alone.onnx"
    alone.write_bytes(model.read_bytes())
    result = runner.invoke(app, ["predict", str(alone), str(image), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{alone} has no sidecar alone.json next to it" in result.output


def test_medseg_load_of_an_onnx_model_is_the_onnx_predictor(exported: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, model = exported
    batch = np.random.default_rng(2).integers(0, 256, (3, 40, 30, 3), dtype=np.uint8)
    onnx = medseg.load(model, device="cpu", tta=True, batch_size=2)
    assert isinstance(onnx, OnnxPredictor) and onnx.tta and onnx.batch_size == 2
    probs = onnx.predict_proba(batch)
    assert probs.shape == (3, 3, 40, 30) and probs.dtype == np.float32
    expected = medseg.load(checkpoint, device="cpu", tta=True).predict_proba(batch)
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5)
    labels = onnx.predict(batch)
    np.testing.assert_array_equal(labels, probs.argmax(1))
    Image.fromarray(batch[1]).save(tmp_path / "b.png")
    np.testing.assert_array_equal(onnx.predict([tmp_path / "b.png"])[0], labels[1])
    with pytest.raises(MedsegError, match=r"^device, mode: not for ONNX models"):
        medseg.load(model, device="cuda", mode="sliding_window")


def test_medseg_load_of_an_onnx_model_needs_no_torch(exported: tuple[Path, Path]) -> None:
    _, model = exported
    code = (
        BLOCK_TORCH
        + f"""
import numpy as np
import medseg

labels = medseg.load({str(model)!r}).predict([np.zeros((20, 24, 3), np.uint8), np.ones((9, 7, 3), np.uint8)])
print([a.shape for a in labels])
"""
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[(20, 24), (9, 7)]"
