"""UCTransNet's 8-bit resizing: OpenCV's uint8 bilinear resize reproduced bit for bit, then ``mask > 0``.

The reference is ``cv2.resize`` itself (a test-only dependency); the hand-computed fixtures run without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.config import DataConfig, load_config
from medseg.data import LoadedCase, build_reader
from medseg.metrics import uctransnet_case_metrics
from medseg.protocols import get_protocol
from medseg.protocols.eightbit import resize_linear_u8, stored_mask_u8
from tests.protocols.test_protocols import context, oracle_predictor
from tests.realdata import real_dataset

try:
    import cv2
except ImportError:  # pragma: no cover - the dev extras install it
    cv2 = None

needs_cv2 = pytest.mark.skipif(cv2 is None, reason="opencv-python-headless (dev extra) is not installed")


def cv2_resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(array, (width, height))`` keeping a trailing channel axis of length 1."""
    out = cv2.resize(array, (size[1], size[0]))
    return out.reshape(size + array.shape[2:])


def test_hand_computed_row() -> None:
    # width 2 -> 4: source coordinates -0.25 (clamped), 0.25, 0.75, 1.25 (clamped); 255 * 0.25 = 63.75 -> 64
    row = np.array([[0, 255]], np.uint8)
    np.testing.assert_array_equal(resize_linear_u8(row, (1, 4)), [[0, 64, 191, 255]])
    # a 0/1 mask keeps a pixel only at about half coverage; a 0/255 one at about 1/510
    np.testing.assert_array_equal(resize_linear_u8(np.array([[0, 1]], np.uint8), (1, 4)) > 0, [[0, 0, 1, 1]])
    np.testing.assert_array_equal(resize_linear_u8(row, (1, 4)) > 0, [[0, 1, 1, 1]])


def test_same_size_is_a_copy_and_other_dtypes_are_rejected() -> None:
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = resize_linear_u8(image, (3, 4))
    np.testing.assert_array_equal(out, image)
    assert out is not image
    with pytest.raises(ValueError, match="uint8"):
        resize_linear_u8(image.astype(np.float32), (2, 2))
    np.testing.assert_array_equal(stored_mask_u8(np.array([[0, 1], [2, 0]])), [[0, 255], [255, 0]])


SIZES = [
    ((17, 23), (32, 32)),  # odd, up
    ((45, 61), (32, 32)),  # odd, down
    ((64, 64), (32, 32)),  # exactly 2x down (OpenCV's area kernel)
    ((16, 16), (32, 32)),  # exactly 2x up
    ((33, 33), (32, 32)),  # barely down
    ((7, 50), (29, 13)),  # up one axis, down the other
    ((1, 9), (5, 4)),  # a single row
    ((96, 40), (31, 31)),  # 3x-ish
]


@needs_cv2
@pytest.mark.parametrize(("source", "target"), SIZES)
@pytest.mark.parametrize("kind", ["grey", "rgb", "mask_255", "mask_01", "instances"])
def test_bit_exact_against_opencv(source: tuple[int, int], target: tuple[int, int], kind: str) -> None:
    rng = np.random.default_rng(sum(source) * 7 + sum(target))
    if kind == "grey":
        array = rng.integers(0, 256, source, dtype=np.uint8)
    elif kind == "rgb":
        array = rng.integers(0, 256, (*source, 3), dtype=np.uint8)
    else:
        blobs = rng.random(source) > 0.6
        scale = {"mask_255": 255, "mask_01": 1}.get(kind)
        array = (blobs * (scale or rng.integers(1, 30, source))).astype(np.uint8)
    np.testing.assert_array_equal(resize_linear_u8(array, target), cv2_resize(array, target))


def corner_case(size: int = 33) -> LoadedCase:
    """A 33 x 33 square mask from (1, 1): at 32 px, output pixel (0, 0) covers it by 1/64 of 1/64 only."""
    mask = np.zeros((size, size), np.int64)
    mask[1:12, 1:12] = 1
    image = (mask * 255).astype(np.uint8)[..., None]  # the oracle predicts where the image is > 0.5 (of 255)
    return LoadedCase(case_id="corner", image=image, mask=mask)


def test_protocol_truth_is_the_8bit_resize() -> None:
    case = corner_case()
    protocol = get_protocol("uctransnet_2d", context(2, 32))
    result = protocol.evaluate_case(oracle_predictor(2, 32), case)
    truth = resize_linear_u8(stored_mask_u8(case.mask), (32, 32)) > 0
    assert not truth[0, 0]  # 255 / 4096 rounds to 0: not "touched at all"
    np.testing.assert_array_equal(result.prediction.astype(bool), truth)  # image resized the same 8-bit way
    assert result.metrics == pytest.approx(uctransnet_case_metrics(truth, truth))
    clean = get_protocol("uctransnet_2d_clean", context(2, 32)).evaluate_case(oracle_predictor(2, 32), case)
    assert clean.metrics == {"dice": 1.0, "iou": 1.0}


@needs_cv2
def test_protocol_matches_the_official_loader() -> None:
    case = corner_case()
    mask = cv2.resize((case.mask * 255).astype(np.uint8), (32, 32))  # Load_Dataset.py: resize, then mask > 0
    mask[mask > 0] = 1
    image = cv2.resize(case.image, (32, 32))  # the stored 8-bit image, resized before /255
    protocol = get_protocol("uctransnet_2d", context(2, 32))
    result = protocol.evaluate_case(oracle_predictor(2, 32), case)
    np.testing.assert_array_equal(result.prediction, (image > 0).astype(np.int64))
    assert result.metrics == pytest.approx(uctransnet_case_metrics(image > 0, mask))


@needs_cv2
@pytest.mark.realdata
@pytest.mark.parametrize(("folder", "dataset", "size"), [("glas", "glas", 224), ("kvasir-seg", "kvasir", 256)])
def test_bit_exact_on_real_images(data_root: Path, folder: str, dataset: str, size: int) -> None:
    reader = build_reader(DataConfig(dataset=dataset, root=str(real_dataset(data_root, folder))))
    for record in reader.list_cases()[:3]:
        case = reader.load(record.case_id)
        for array in (case.image, stored_mask_u8(case.mask)):
            np.testing.assert_array_equal(resize_linear_u8(array, (size, size)), cv2_resize(array, (size, size)))


@needs_cv2
@pytest.mark.parametrize("stored", ["0/1", "instances", "0/255"])
def test_protocol_reads_the_stored_mask_values(tmp_path: Path, stored: str) -> None:
    """0/1 and instance-label masks are resized as stored, so `> 0` keeps a pixel only at about half coverage."""
    rng = np.random.default_rng(3)
    labels = np.zeros((37, 41), np.uint8)
    labels[5:20, 7:19] = 1
    labels[22:33, 20:37] = 2
    values = {"0/1": labels > 0, "instances": labels, "0/255": (labels > 0) * 255}[stored].astype(np.uint8)
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    Image.fromarray(rng.integers(0, 256, (37, 41, 3), dtype=np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(values).save(tmp_path / "masks" / "a.png")
    label_map = {"0/1": "{0: 0, 1: 1}", "instances": "{0: 0, 1: 1, 2: 1}", "0/255": "{0: 0, 255: 1}"}[stored]
    settings = ["data.dataset=image_folder", f"data.root={tmp_path}", f"data.label_map={label_map}"]
    config = load_config(None, [*settings, "data.in_channels=1"])
    case = build_reader(config.data).load("a")
    assert case.mask_path == tmp_path / "masks" / "a.png"
    official = cv2.resize(cv2.imread(str(case.mask_path), cv2.IMREAD_GRAYSCALE), (16, 16)) > 0  # Load_Dataset.py
    result = get_protocol("uctransnet_2d", context(2, 16)).evaluate_case(oracle_predictor(2, 16), case)
    assert result.metrics == pytest.approx(uctransnet_case_metrics(result.prediction > 0, official), abs=1e-12)
    if stored != "0/255":  # a stored 0/1 mask keeps fewer border pixels than its 0/255 image would
        assert official.sum() < (resize_linear_u8(stored_mask_u8(case.mask), (16, 16)) > 0).sum()
