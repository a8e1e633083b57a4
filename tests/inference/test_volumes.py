"""Volumes: ``medseg predict`` on NIfTI and HDF5 volumes, slice by slice, into NIfTI with the input's geometry."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app
from medseg.inference import Predictor
from medseg.inference.volumes import stack_slices, volume_slices, volume_stem
from medseg.reports.overlays import overlay
from tests.inference.tiny import tiny_checkpoint

runner = CliRunner()

VOLUME = ["data.in_channels=1", "data.transforms.normalize=minmax"]
AFFINE = np.array(
    [
        [0.0, -0.8, 0.0, 12.5],
        [0.7, 0.0, 0.0, -30.0],
        [0.0, 0.0, 3.5, 41.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def smooth_volume(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A float volume with structure (a blob) and noise, in NIfTI order ``(x, y, z)``."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    blob = np.exp(-3 * sum(axis**2 for axis in grids))
    return (800 * blob + 50 * rng.random(shape)).astype(np.float32)


@pytest.fixture(scope="module")
def volume_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("volumes")
    image = nib.Nifti1Image(smooth_volume((40, 36, 5), 0), AFFINE)
    image.header.set_qform(AFFINE, code=1)
    image.header.set_sform(AFFINE, code=2)
    image.header["descrip"] = b"test volume"
    nib.save(image, folder / "case_01.nii.gz")
    return folder / "case_01.nii.gz"


@pytest.fixture(scope="module")
def checkpoint(volume_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = np.asanyarray(nib.load(volume_file).dataobj)
    path = tmp_path_factory.mktemp("ckpt") / "volume.ckpt"
    return tiny_checkpoint(path, *VOLUME, median_threshold_of=data.T, volume=True)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slices_go_back_where_they_came_from(axis: int) -> None:
    volume = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    slices = volume_slices(volume, axis)
    assert slices.shape[0] == volume.shape[2 - axis]
    np.testing.assert_array_equal(stack_slices(slices, axis), volume)
    assert volume_stem(Path("a.nii.gz")) == "a" and volume_stem(Path("c.npy.h5")) == "c"
    assert volume_stem(Path("a.png")) is None


def test_a_nifti_volume_keeps_its_geometry_and_is_predicted_slice_by_slice(
    volume_file: Path, checkpoint: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["predict", str(checkpoint), str(volume_file), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "wrote 1 mask(s)" in result.output
    written = nib.load(tmp_path / "out" / "case_01.nii.gz")
    source = nib.load(volume_file)
    np.testing.assert_allclose(written.affine, source.affine)
    assert written.shape == source.shape == (40, 36, 5)
    assert written.header.get_zooms() == pytest.approx(source.header.get_zooms())
    assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 2
    assert written.header["descrip"] == source.header["descrip"]
    labels = np.asanyarray(written.dataobj)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    data = np.asanyarray(source.dataobj)
    for k in range(5):  # the z slices, as 2D images (y, x): how the volume readers feed training
        np.testing.assert_array_equal(labels[:, :, k], predictor.predict(data[:, :, k].T).T)


def test_another_slice_axis(volume_file: Path, checkpoint: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["predict", str(checkpoint), str(volume_file), str(tmp_path / "out"), "--slice-axis", "0"]
    )
    assert result.exit_code == 0, result.output
    labels = np.asanyarray(nib.load(tmp_path / "out" / "case_01.nii.gz").dataobj)
    data = np.asanyarray(nib.load(volume_file).dataobj)
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    for i in (0, 17, 39):
        np.testing.assert_array_equal(labels[i], predictor.predict(data[i].T).T)


def test_hdf5_volumes_and_slices_and_a_damaged_volume_in_one_folder(checkpoint: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    volume = smooth_volume((24, 20, 3), 1).T  # (D, H, W) as the HDF5 layouts store it
    with h5py.File(inputs / "case0001.npy.h5", "w") as file:
        file["image"] = volume
        file["label"] = np.zeros(volume.shape, np.uint8)
    with h5py.File(inputs / "slice_7.h5", "w") as file:
        file["image"] = volume[1]
    (inputs / "broken.nii.gz").write_bytes(b"not a volume")
    result = runner.invoke(app, ["predict", str(checkpoint), str(inputs), str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert next(line for line in result.output.splitlines() if "broken.nii.gz" in line).startswith("skipped:")
    assert "wrote 2 mask(s)" in result.output
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["case0001.nii.gz", "slice_7.png"]
    written = nib.load(tmp_path / "out" / "case0001.nii.gz")
    np.testing.assert_array_equal(written.affine, np.eye(4))
    assert written.shape == (24, 20, 3)
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    np.testing.assert_array_equal(np.asanyarray(written.dataobj).T, predictor.predict_volume(volume))
    mask = np.asarray(Image.open(tmp_path / "out" / "slice_7.png"))
    np.testing.assert_array_equal(mask, predictor.predict(volume[1]) * 255)


def test_volume_probabilities(volume_file: Path, checkpoint: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["predict", str(checkpoint), str(volume_file), str(tmp_path / "out"), "--probabilities", "npz"]
    )
    assert result.exit_code == 0, result.output
    probs = np.load(tmp_path / "out" / "case_01.npz")["probabilities"]
    assert probs.shape == (1, 5, 36, 40) and probs.dtype == np.float32
    labels = np.asanyarray(nib.load(tmp_path / "out" / "case_01.nii.gz").dataobj)
    threshold = Predictor.from_checkpoint(checkpoint, "cpu").threshold
    np.testing.assert_array_equal(labels, (probs[0] > threshold).T)


def test_volume_probabilities_as_tiff_and_an_overlay_of_the_fullest_slice(
    volume_file: Path, checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["predict", str(checkpoint), str(volume_file), str(out), "--probabilities", "tiff", "--overlay"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == ["case_01.nii.gz", "case_01.tif", "case_01_overlay.png"]
    data = np.asanyarray(nib.load(volume_file).dataobj).T  # (z, y, x)
    expected = Predictor.from_checkpoint(checkpoint, "cpu").predict_volume_proba(data)
    with Image.open(out / "case_01.tif") as tiff:
        assert tiff.mode == "F" and tiff.n_frames == 5
        pages = []
        for index in range(tiff.n_frames):
            tiff.seek(index)
            pages.append(np.asarray(tiff))
    np.testing.assert_allclose(np.stack(pages)[None], expected, rtol=0, atol=1e-6)
    labels = np.asanyarray(nib.load(out / "case_01.nii.gz").dataobj).T
    counts = (labels > 0).reshape(5, -1).sum(1)
    fullest = int(counts.argmax())
    assert counts[fullest] > counts.min()  # the slices differ: the choice matters
    drawn = np.asarray(Image.open(out / "case_01_overlay.png"))
    np.testing.assert_array_equal(drawn, overlay(data[fullest], labels[fullest]))
