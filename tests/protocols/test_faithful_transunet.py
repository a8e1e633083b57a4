"""TransUNet-family summaries: ASSD definition, distance units, both aggregation orders; spacing for HDF5 volumes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from medpy.metric import binary as medpy

from medseg.config import DataConfig
from medseg.data import DataError, DatasetReader, build_reader
from medseg.data.acdc import spacing_from_nifti
from medseg.data.volumes import read_spacing_table, write_spacing_table
from medseg.errors import MedsegError
from medseg.protocols import CaseResult, Protocol, get_protocol
from tests.data import layouts
from tests.protocols.test_protocols import acdc_like_volume, context, oracle_predictor

NAMES = ("RV", "Myo", "LV")


def acdc_protocol(name: str) -> Protocol:
    return get_protocol(name, context(4, 32, NAMES))


def nested_volume() -> SimpleNamespace:
    """RV predicted as a 6 x 6 square inside the true 10 x 10 one: borders of different sizes."""
    truth = np.zeros((3, 32, 32), np.int64)
    truth[:, 4:14, 4:14] = 1
    predicted = np.zeros_like(truth)
    predicted[:, 6:12, 6:12] = 1
    return SimpleNamespace(
        case_id="n", image=predicted.astype(np.float32) / 3, mask=truth, spacing=(5.0, 2.0, 2.0), predicted=predicted
    )


def test_faithful_summary_states_voxels_and_medpy_040_assd() -> None:
    volume = nested_volume()
    protocol = acdc_protocol("transunet_acdc")
    result = protocol.evaluate_volume(oracle_predictor(4, 32), volume)
    rv_pred, rv_truth = volume.predicted == 1, volume.mask == 1
    expected = (medpy.asd(rv_pred, rv_truth) + medpy.asd(rv_truth, rv_pred)) / 2  # medpy 0.4.0's assd, in voxels
    assert result.per_class["RV"]["assd"] == pytest.approx(expected, abs=1e-12)
    assert abs(expected - medpy.assd(rv_pred, rv_truth)) > 0.1  # medpy >= 0.5.2 (pooled) differs here
    summary = protocol.summarize([result])
    assert summary["distance_unit"] == "voxels"  # the volume has a spacing, the reference script ignores it
    assert "0.4.0" in summary["assd_definition"] and "(asd(pred, gt) + asd(gt, pred)) / 2" in summary["assd_definition"]
    assert "equal to the mean over classes" in summary["aggregation"]
    clean = acdc_protocol("transunet_acdc_clean").evaluate_volume(oracle_predictor(4, 32), volume)
    pooled = medpy.assd(rv_pred, rv_truth, voxelspacing=volume.spacing)
    assert clean.per_class["RV"]["assd"] == pytest.approx(pooled, abs=1e-12)


def test_clean_distances_in_mm_with_spacing_and_voxels_without() -> None:
    protocol = acdc_protocol("transunet_acdc_clean")
    with_spacing = protocol.evaluate_volume(oracle_predictor(4, 32), acdc_like_volume())
    plain = acdc_like_volume()
    plain.spacing = None
    without = protocol.evaluate_volume(oracle_predictor(4, 32), plain)
    assert with_spacing.info["distance_unit"] == "mm" and without.info["distance_unit"] == "voxels"
    assert with_spacing.per_class["RV"]["hd95"] == pytest.approx(1.5 * without.per_class["RV"]["hd95"])
    mm, voxels = protocol.summarize([with_spacing]), protocol.summarize([without])
    assert mm["distance_unit"] == "mm" and voxels["distance_unit"] == "voxels"
    assert "0.5.2" in mm["assd_definition"] and "pooled" in mm["assd_definition"]
    with pytest.raises(MedsegError, match=r"1 volume\(s\) have no voxel spacing \(v1\)"):
        protocol.summarize([with_spacing, without])


def test_clean_summary_reports_both_aggregation_orders() -> None:
    nan = float("nan")

    def volume(case_id: str, hd95: tuple[float, float, float]) -> CaseResult:
        per_class = {
            name: {"dice": 0.5, "hd95": value, "jaccard": 0.4, "assd": value}
            for name, value in zip(NAMES, hd95, strict=True)
        }
        mean = float(np.nanmean(hd95))
        return CaseResult(
            case_id,
            {"dice": 0.5, "hd95": mean, "jaccard": 0.4, "assd": mean},
            per_class=per_class,
            info={"distance_unit": "voxels"},
        )

    results = [volume("a", (2.0, nan, nan)), volume("b", (4.0, 10.0, nan))]
    summary = acdc_protocol("transunet_acdc_clean").summarize(results)
    assert summary["metrics"]["hd95"]["mean"] == pytest.approx((2 + 7) / 2)  # mean over volumes of class means
    assert summary["mean_over_classes"]["hd95"] == pytest.approx((3 + 10) / 2)  # mean over classes of class means
    assert summary["per_class"]["LV"]["hd95"]["n_undefined"] == 2
    assert summary["mean_over_classes"]["dice"] == pytest.approx(0.5)
    assert "mean_over_classes" in summary["aggregation"] and "defined" in summary["aggregation"]


def test_perimage_summary_names_pixels_and_both_orders() -> None:
    summary = get_protocol("perimage", context(2, 32)).summarize([])
    assert summary["distance_unit"] == "pixels" and "mean over images" in summary["aggregation"]
    nan = float("nan")
    results = [
        CaseResult(
            "a",
            {k: 1.0 for k in ("dice", "iou", "precision", "recall", "hd95")},
            per_class={
                "c1": {k: 1.0 for k in ("dice", "iou", "precision", "recall", "hd95")},
                "c2": {k: nan for k in ("dice", "iou", "precision", "recall", "hd95")},
            },
        ),
        CaseResult(
            "b",
            {k: 2.0 for k in ("dice", "iou", "precision", "recall", "hd95")},
            per_class={
                "c1": {k: 1.0 for k in ("dice", "iou", "precision", "recall", "hd95")},
                "c2": {k: 3.0 for k in ("dice", "iou", "precision", "recall", "hd95")},
            },
        ),
    ]
    summary = get_protocol("perimage", context(3, 32)).summarize(results)
    assert summary["metrics"]["hd95"]["mean"] == pytest.approx(1.5)
    assert summary["mean_over_classes"]["hd95"] == pytest.approx(2.0)


def acdc_reader(root: Path) -> DatasetReader:
    return build_reader(DataConfig.model_validate({"dataset": "acdc", "root": str(root), "num_classes": 4}))


def test_spacing_table_gives_hdf5_volumes_their_spacing(tmp_path: Path) -> None:
    root = layouts.write_acdc(tmp_path / "acdc", train=(1,), val=(4,), test=(5,))
    assert acdc_reader(root).load_volume("patient005_frame01").spacing is None
    table = {f"patient00{p}_frame{f:02d}": (10.0, 1.5625, 1.25) for p in (4, 5) for f in (1, 12)}
    write_spacing_table(root / "spacing.csv", table)
    assert read_spacing_table(root / "spacing.csv") == table
    assert acdc_reader(root).load_volume("patient005_frame01").spacing == (10.0, 1.5625, 1.25)
    write_spacing_table(root / "spacing.csv", {"patient005_frame01": (10.0, 1.5, 1.5)})
    with pytest.raises(DataError, match=r"spacing.csv has no line for volume patient005_frame12"):
        acdc_reader(root).load_volume("patient005_frame12")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("case,x,y,z\n", "must start with the header line case,z,y,x"),
        ("case,z,y,x\npatient001_frame01,10,1.5\n", "line 2: expected 'case,z,y,x'"),
        ("case,z,y,x\npatient001_frame01,10,0,1.5\n", "line 2: expected 'case,z,y,x' with positive sizes"),
        ("case,z,y,x\na,1,1,1\n\na,2,2,2\n", "line 4: volume a is listed twice"),
    ],
)
def test_bad_spacing_tables_are_errors_naming_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spacing.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_spacing_table(path)


def test_spacing_from_the_original_nifti_release(tmp_path: Path) -> None:
    folder = tmp_path / "database" / "training" / "patient001"
    folder.mkdir(parents=True)
    affine = np.diag([1.5, 1.25, 10.0, 1.0])  # (x, y, z) voxel sizes
    for name in ("patient001_frame01", "patient001_frame01_gt", "patient001_4d"):
        nib.save(nib.Nifti1Image(np.zeros((4, 5, 2), np.uint8), affine), folder / f"{name}.nii.gz")
    assert spacing_from_nifti(tmp_path / "database") == {"patient001_frame01": (10.0, 1.25, 1.5)}
    with pytest.raises(DataError, match="no ACDC frames"):
        spacing_from_nifti(tmp_path / "database" / "testing")
