"""Batched, pooled evaluation gives the numbers of the serial CPU evaluation it replaced, case by case.

The references under ``tests/fixtures/evaluation/`` are the ``cases.json`` and ``summary.json`` that the serial
evaluation (one image per model call, metrics in the main process) wrote for three tiny runs: binary 2D images of
varied sizes, multi-class 2D images and ACDC-like volumes (see ``tests/fixtures/make_evaluation_fixtures.py``).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import ndimage
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import load_config
from medseg.evaluation import evaluate_run, training_device
from medseg.metrics import symmetric_surface_distances
from medseg.reports.markdown import rank_cases

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "evaluation"
CASES = [
    (run.name, expected.stem)
    for run in sorted(FIXTURES.iterdir())
    if run.is_dir()
    for expected in sorted((run / "expected").glob("*.json"))
]
TOLERANCE = 1e-6
runner = CliRunner()


def copy_run(name: str, into: Path) -> Path:
    """A writable copy of a stored run (folder ``run``, as when the references were written) whose ``data.root``
    points at the stored data."""
    run = into / name / "run"
    shutil.copytree(FIXTURES / name / "run", run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["root"] = str(FIXTURES / name / "data")
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run


def assert_same(actual: Any, expected: Any, where: str) -> None:
    """Equal structure and text; numbers within :data:`TOLERANCE`; ``None`` (undefined) only where expected."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(expected) <= set(actual), f"{where}: {actual} vs {expected}"
        for key, value in expected.items():
            assert_same(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual} vs {expected}"
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert_same(got, want, f"{where}[{index}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert isinstance(actual, int | float) and math.isclose(actual, expected, rel_tol=0, abs_tol=TOLERANCE), (
            f"{where}: {actual} vs {expected}"
        )
    else:
        assert actual == expected, f"{where}: {actual!r} vs {expected!r}"


@pytest.mark.parametrize(("fixture", "protocol"), CASES, ids=[f"{name}-{protocol}" for name, protocol in CASES])
def test_batched_pooled_evaluation_matches_the_serial_reference(fixture: str, protocol: str, tmp_path: Path) -> None:
    expected = json.loads((FIXTURES / fixture / "expected" / f"{protocol}.json").read_text())
    run = copy_run(fixture, tmp_path)
    output = evaluate_run(run, protocol=protocol, progress=False, device="cpu", batch_size=4, workers=2)
    cases = json.loads((output.directory / "cases.json").read_text())
    assert [case["case_id"] for case in cases] == [case["case_id"] for case in expected["cases"]]
    for case, reference in zip(cases, expected["cases"], strict=True):
        assert set(case) == set(reference), case["case_id"]
        assert_same(case, reference, case["case_id"])
    assert_same(output.summary, expected["summary"], "summary")
    assert (output.summary["device"], output.summary["precision"]) == ("cpu", "32")
    overlays = re.findall(r"!\[([^\]]+)\]\(overlays/", output.report.read_text())
    count = yaml.safe_load((run / "config.yaml").read_text())["eval"]["overlays"]
    assert overlays == [case["case_id"] for case in rank_cases(expected["cases"])[:count]]
    assert sorted(path.stem for path in (output.directory / "overlays").glob("*.png")) == sorted(overlays)


@pytest.mark.parametrize(("fixture", "protocol"), [("binary2d", "perimage_binary"), ("acdc", "transunet_acdc_clean")])
def test_one_input_per_batch_in_process_matches_too(fixture: str, protocol: str, tmp_path: Path) -> None:
    expected = json.loads((FIXTURES / fixture / "expected" / f"{protocol}.json").read_text())
    output = evaluate_run(
        copy_run(fixture, tmp_path), protocol=protocol, progress=False, device="cpu", batch_size=1, workers=0
    )
    assert_same(json.loads((output.directory / "cases.json").read_text()), expected["cases"], "cases")
    assert min(output.timings[part] for part in ("load", "model", "metrics")) > 0


def test_surface_distances_on_the_masks_box_equal_those_on_the_whole_array() -> None:
    """The distance transforms run on the bounding box of both masks; the distances are those of the full array."""
    rng = np.random.default_rng(0)
    for trial in range(60):
        ndim = 2 + trial % 2
        shape = tuple(int(n) for n in rng.integers(5, 30, ndim))
        a, b = (ndimage.binary_dilation(rng.random(shape) < 0.03, iterations=int(rng.integers(0, 3))) for _ in "ab")
        if trial % 4 == 0:
            a[(0,) * (ndim - 1)] = True  # a mask touching the edges
        if not (a.any() and b.any()):
            continue
        spacing = None if trial % 3 == 0 else tuple(float(v) for v in rng.uniform(0.3, 3, ndim))
        sampling = np.ones(ndim) if spacing is None else np.array(spacing)
        structure = ndimage.generate_binary_structure(ndim, 1)
        border_a, border_b = (m & ~ndimage.binary_erosion(m, structure=structure) for m in (a, b))
        expected = (
            ndimage.distance_transform_edt(~border_b, sampling=sampling)[border_a],
            ndimage.distance_transform_edt(~border_a, sampling=sampling)[border_b],
        )
        for got, want in zip(symmetric_surface_distances(a, b, spacing), expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_the_cli_passes_device_batch_size_and_workers(tmp_path: Path) -> None:
    run = copy_run("binary2d", tmp_path)
    args = ["evaluate", str(run), "--device", "cpu", "--batch-size", "3", "--workers", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = json.loads((FIXTURES / "binary2d" / "expected" / "perimage_binary.json").read_text())
    cases = json.loads((run / "evaluation" / "test" / "cases.json").read_text())
    assert_same(cases, expected["cases"], "cases")
    assert json.loads((run / "evaluation" / "test" / "summary.json").read_text())["batch_size"] == 3


def test_the_default_batch_on_the_cpu_is_one_input(tmp_path: Path) -> None:
    output = evaluate_run(copy_run("binary2d", tmp_path), progress=False, device="cpu", workers=0)
    assert output.summary["batch_size"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "tpu"], "unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
        (["--device", "cuda:7"], "device cuda:7 is not available on this machine"),
        (["--protocol", "transunet_volume", "--workers", "1"], "evaluates volumes, but this split holds 2D images"),
    ],
)
def test_evaluation_errors_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    run = copy_run("binary2d", tmp_path)
    result = runner.invoke(app, ["evaluate", str(run), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


def test_train_evaluates_on_the_device_it_trained_on() -> None:
    assert training_device(load_config(None, ["train.accelerator=cpu", "eval.device=cuda"])) == "cpu"
    assert training_device(load_config(None, ["train.accelerator=gpu"])) == "cuda"
    assert training_device(load_config(None, ["eval.device=cuda:1"])) == "cuda:1"
