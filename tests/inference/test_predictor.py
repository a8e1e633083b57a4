from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.config import load_config
from medseg.data import prepare_image
from medseg.engine import build_model
from medseg.errors import MedsegError
from medseg.inference import Predictor
from medseg.inference.predictor import describe_device, resolve_device


def make_predictor(*overrides: str) -> Predictor:
    config = load_config(None, ["model.params.base_channels=4", *overrides])
    torch.manual_seed(0)
    return Predictor(build_model(config), config)


def test_output_has_the_input_size() -> None:
    predictor = make_predictor("data.image_size=32")
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    probs = predictor.predict_proba(image)
    assert probs.shape == (1, 37, 53)
    assert probs.min() >= 0 and probs.max() <= 1
    labels = predictor.predict(image)
    assert labels.shape == (37, 53) and set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, probs[0] > 0.5)


def test_matches_the_model_on_training_preprocessing() -> None:
    predictor = make_predictor("data.image_size=32", "data.transforms.normalize=imagenet")
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    tensor = torch.from_numpy(prepare_image(image, predictor.config.data))[None]
    with torch.no_grad():
        expected = torch.sigmoid(predictor.model(tensor))[0].numpy()
    np.testing.assert_allclose(predictor.predict_proba(image), expected, atol=1e-6)


def test_multiclass_argmax_and_grey_input() -> None:
    predictor = make_predictor("data.image_size=32", "data.num_classes=4")
    image = np.random.default_rng(2).integers(0, 255, (20, 24), dtype=np.uint8)
    probs = predictor.predict_proba(image)
    assert probs.shape == (4, 20, 24)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(predictor.predict(image), probs.argmax(0))


def test_mixed_precision_runs_under_autocast_and_returns_float32() -> None:
    predictor = make_predictor("data.image_size=32", "data.num_classes=4")
    image = np.random.default_rng(3).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    full = predictor.predict_proba(image)
    mixed = Predictor(predictor.model, predictor.config, precision="bf16-mixed")
    batch = mixed.model_input(image)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = torch.softmax(mixed.model(batch).float(), dim=1)
    probs = mixed.probabilities(batch)
    assert probs.dtype == torch.float32
    np.testing.assert_array_equal(probs.numpy(), expected.numpy())
    assert not np.array_equal(probs[0].numpy(), full)  # bfloat16 arithmetic, not float32
    with pytest.raises(MedsegError, match="unknown precision 'fp8'"):
        Predictor(predictor.model, predictor.config, precision="fp8")


def test_devices_by_name() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(MedsegError, match=r"unknown device 'gpu0'; use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(MedsegError, match=rf"device cuda:{count} is not available on this machine"):
        resolve_device(f"cuda:{count}")
    assert describe_device(torch.device("cpu")) == "cpu"
