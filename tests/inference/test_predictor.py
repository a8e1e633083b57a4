from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.config import load_config
from medseg.data import prepare_image
from medseg.engine import build_model
from medseg.errors import MedsegError
from medseg.inference import Predictor
from medseg.inference.postprocess import PostProcess
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


def test_a_batch_gives_each_image_its_own_probabilities() -> None:
    predictor = make_predictor("data.image_size=32", "data.num_classes=3", "eval.batch_size=2")
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 255, size, dtype=np.uint8) for size in ((37, 53, 3), (32, 32, 3), (20, 24, 3))]
    batch = predictor.predict_proba(images)
    assert [probs.shape for probs in batch] == [(3, 37, 53), (3, 32, 32), (3, 20, 24)]
    for image, probs in zip(images, batch, strict=True):
        np.testing.assert_allclose(probs, predictor.predict_proba(image), atol=1e-5)
    labels = predictor.predict(images)
    for probs, label_map in zip(batch, labels, strict=True):
        np.testing.assert_array_equal(label_map, probs.argmax(0))
    stacked = predictor.predict_proba(np.stack([images[1], images[1]]))
    assert stacked.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(stacked[0], batch[1], atol=1e-5)


def test_tta_averages_the_probabilities_of_the_transformed_inputs() -> None:
    plain = make_predictor("data.image_size=32", "data.num_classes=3")
    augmented = Predictor(plain.model, plain.config, "cpu", tta=["hflip", "rot90", "transpose"])
    image = np.random.default_rng(5).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    inputs = plain.model_input(image)
    expected = (
        plain.probabilities(inputs)
        + plain.probabilities(inputs.flip(-1)).flip(-1)
        + plain.probabilities(inputs.rot90(1, (-2, -1))).rot90(-1, (-2, -1))
        + plain.probabilities(inputs.transpose(-1, -2)).transpose(-1, -2)
    )
    expected = plain.restore(expected / 4, (37, 53))[0].numpy()
    probs = augmented.predict_proba(image)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert np.abs(probs - plain.predict_proba(image)).max() > 1e-4  # the transforms change the prediction
    # a quarter turn of a non-square input is predicted at the turned shape and turned back
    assert augmented.probabilities(torch.rand(2, 3, 32, 48)).shape == (2, 3, 32, 48)


def test_sliding_window_without_overlap_predicts_each_window_alone() -> None:
    predictor = make_predictor(
        "data.image_size=32", "eval.mode=sliding_window", "eval.overlap=0", "eval.blend=constant"
    )
    assert predictor.mode == "sliding_window" and predictor.input_size is None
    image = np.random.default_rng(6).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    prepared = predictor.prepare(image)
    expected = torch.zeros(1, 64, 96)
    for top in (0, 32):
        for left in (0, 32, 64):
            window = prepared[..., top : top + 32, left : left + 32]
            expected[:, top : top + 32, left : left + 32] = predictor.probabilities(window)[0]
    np.testing.assert_allclose(predictor.predict_proba(image), expected.numpy(), atol=1e-6)
    small = np.random.default_rng(7).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    assert predictor.predict(small).shape == (20, 24)
    gaussian = Predictor(predictor.model, predictor.config, "cpu", overlap=0.5, blend="gaussian")
    probs = gaussian.predict_proba(image)
    assert probs.shape == (1, 64, 96) and probs.min() >= 0 and probs.max() <= 1
    assert not np.allclose(probs, expected.numpy(), atol=1e-4)  # overlapping windows are blended


def test_settings_default_to_the_eval_section_and_are_checked() -> None:
    predictor = make_predictor(
        "data.image_size=32",
        "eval.tta=true",
        "eval.tta_transforms=[vflip, rot180]",
        "eval.batch_size=3",
        "eval.min_size=5",
        "eval.fill_holes=true",
        "eval.slice_axis=0",
    )
    assert predictor.tta == ("vflip", "rot180") and predictor.batch_size == 3 and predictor.slice_axis == 0
    assert predictor.postprocess.min_size == 5 and predictor.postprocess.fill_holes
    assert predictor.mode == "resize" and predictor.precision == "32" and predictor.device == torch.device("cpu")
    assert Predictor(predictor.model, predictor.config, tta=False).tta == ()
    assert Predictor(predictor.model, predictor.config, tta=True).tta == ("vflip", "rot180")
    for options, message in (
        ({"mode": "tiles"}, "unknown mode 'tiles'; use resize or sliding_window"),
        ({"tta": ["spin"]}, "unknown test-time augmentation spin"),
        ({"overlap": 1.0}, "overlap must be at least 0 and below 1"),
        ({"blend": "max"}, "unknown blend 'max'"),
        ({"batch_size": 0}, "batch size must be at least 1"),
    ):
        with pytest.raises(MedsegError, match=message):
            Predictor(predictor.model, predictor.config, **options)  # type: ignore[arg-type]


def test_predict_post_processes_the_label_map() -> None:
    predictor = make_predictor("data.image_size=32")
    image = np.random.default_rng(8).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    probs = predictor.predict_proba(image)
    predictor.threshold = float(np.median(probs))  # a mask of many scattered components
    raw = predictor.predict(image)
    cleaned = Predictor(predictor.model, predictor.config, postprocess=PostProcess(largest_component=True))
    cleaned.threshold = predictor.threshold
    kept = cleaned.predict(image)
    _, before = ndimage.label(raw, np.ones((3, 3)))
    _, after = ndimage.label(kept, np.ones((3, 3)))
    assert before > 1 and after == 1
    assert np.all(kept <= raw)
