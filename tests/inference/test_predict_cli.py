"""``medseg predict`` options on 2D images: probabilities, TTA, sliding windows, post-processing, batches and
workers, and one-line errors for bad settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from medseg.cli import app
from medseg.inference import Predictor
from tests.inference.tiny import tiny_checkpoint, tiny_run

runner = CliRunner()

SIZES = {"a.png": (50, 70), "b.jpg": (33, 33), "c.bmp": (20, 30)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, size in SIZES.items():
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / name)
    return folder


@pytest.fixture(scope="module")
def checkpoint(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    image = np.asarray(Image.open(inputs / "a.png"))
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", median_threshold_of=image)


def predict(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["predict", *args])
    return result.exit_code, result.output


def test_probabilities_tta_post_processing_batches_and_workers(inputs: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = predict(
        str(checkpoint), str(inputs), str(out), "--probabilities", "npz", "--tta", "--tta-transforms",
        "hflip,rot90", "--largest-component", "--batch-size", "2", "--workers", "1", "--overlay",
    )  # fmt: skip
    assert code == 0, output
    assert "wrote 3 mask(s)" in output
    predictor = Predictor.from_checkpoint(checkpoint, "cpu", tta=["hflip", "rot90"])
    for name, size in SIZES.items():
        stem = Path(name).stem
        probs = np.load(out / f"{stem}.npz")["probabilities"]
        assert probs.shape == (1, *size) and probs.dtype == np.float32
        np.testing.assert_allclose(probs, predictor.predict_proba(np.asarray(Image.open(inputs / name))), atol=1e-5)
        mask = np.asarray(Image.open(out / f"{stem}.png"))
        assert mask.shape == size and set(np.unique(mask)) <= {0, 255}
        _, count = ndimage.label(mask, np.ones((3, 3)))
        assert count <= 1
        assert np.all(mask[probs[0] <= predictor.threshold] == 0)  # a subset of the thresholded probabilities
        assert (out / f"{stem}_overlay.png").is_file()


def test_float_tiff_probabilities_and_sliding_windows(inputs: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = predict(
        str(checkpoint), str(inputs / "a.png"), str(out), "--probabilities", "tiff", "--mode", "sliding_window",
        "--overlap", "0.25",
    )  # fmt: skip
    assert code == 0, output
    image = np.asarray(Image.open(inputs / "a.png"))
    predictor = Predictor.from_checkpoint(checkpoint, "cpu", mode="sliding_window", overlap=0.25)
    with Image.open(out / "a.tif") as tiff:
        assert tiff.mode == "F" and tiff.n_frames == 1
        np.testing.assert_allclose(np.asarray(tiff), predictor.predict_proba(image)[0], atol=1e-5)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), predictor.predict(image) * 255)


def test_a_run_folder_predicts_with_its_best_or_last_checkpoint(inputs: Path, tmp_path: Path) -> None:
    run = tiny_run(tmp_path / "run")
    image = np.asarray(Image.open(inputs / "b.jpg"))
    for rule in ("best", "last"):
        code, output = predict(str(run), str(inputs / "b.jpg"), str(tmp_path / rule), "--checkpoint", rule)
        assert code == 0, output
        expected = Predictor.from_checkpoint(run / "checkpoints" / f"{rule}.ckpt", "cpu").predict_proba(image)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / rule / "b.png")), (expected[0] > 0.5) * 255)


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (["--mode", "tiles"], "unknown mode 'tiles'"),
        (["--probabilities", "csv"], "unknown probabilities format 'csv'"),
        (["--tta-transforms", "hflip,spin"], "unknown test-time augmentation spin"),
        (["--overlap", "1"], "overlap must be at least 0 and below 1"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--min-size", "-1"], "--min-size must be 0 or more"),
        (["--checkpoint", "first"], "unknown checkpoint 'first'"),
    ],
)
def test_bad_settings_are_one_line(option: list[str], says: str, inputs: Path, tmp_path: Path) -> None:
    run = tiny_run(tmp_path / "run")
    code, output = predict(str(run), str(inputs), str(tmp_path / "out"), *option)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], output
    assert not (tmp_path / "out").exists()
