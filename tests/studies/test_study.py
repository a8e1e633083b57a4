"""``medseg study``: a tiny 2-arm x 2-seed study on synthetic data, its statistics checked against SciPy, skipping
finished runs, evaluating and resuming unfinished ones, and the ``--dry-run`` listing."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon
from typer.testing import CliRunner

from medseg.cli import app
from medseg.studies import StudyError, expand_study, load_study, prepare_study, run_state, run_study
from medseg.studies.stats import bootstrap_ci, paired_comparison

runner = CliRunner()

BASE = """\
name: tiny
model: {name: unet, params: {base_channels: 4}}
data:
  dataset: synthetic
  image_size: 32
  batch_size: 4
  synthetic: {num_train: 8, num_val: 4, num_test: 6, size: 40}
train: {epochs: 1, progress_bar: false, threads: 1}
eval: {overlays: 0, metric_workers: 0}
"""

STUDY = """\
name: tiny-study
base: base.yaml
output_dir: out
seeds: [0, 1]
reference: plain
arms:
  plain: {}
  wide:
    label: wider U-Net
    overrides:
      model.params.base_channels: 6
      stages: [{name: warm}, {name: tune, init_from: warm}]
"""


def write_study(folder: Path, text: str = STUDY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(BASE)
    (folder / "study.yaml").write_text(text)
    return folder / "study.yaml"


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study, run to the end in this process; returns its study file."""
    path = write_study(tmp_path_factory.mktemp("study"))
    outcomes = run_study(load_study(path), path, jobs=0)
    assert [outcome.ok for outcome in outcomes] == [True] * 4, outcomes
    return path


def study_dir(path: Path) -> Path:
    return path.parent / "out" / "tiny-study"


def seed_mean_cases(folder: Path, arm: str) -> dict[str, float]:
    """Each test case's Dice averaged over the arm's two seeds, read straight from cases.json."""
    per_seed = [
        {case["case_id"]: case["dice"] for case in json.loads(path.read_text())}
        for path in sorted((folder / "runs").glob(f"{arm}--synthetic--s*/evaluation/test/cases.json"))
    ]
    assert len(per_seed) == 2
    return {case: (per_seed[0][case] + per_seed[1][case]) / 2 for case in per_seed[0]}


def test_study_runs_one_folder_per_arm_and_seed_and_writes_the_report(finished_study: Path) -> None:
    folder = study_dir(finished_study)
    runs = sorted(p.name for p in (folder / "runs").iterdir())
    assert runs == [f"{arm}--synthetic--s{seed}" for arm in ("plain", "wide") for seed in (0, 1)]
    assert (folder / "study.png").stat().st_size > 0
    summary = json.loads((folder / "runs" / "plain--synthetic--s1" / "train_summary.json").read_text())
    assert summary["status"] == "finished"
    staged = folder / "runs" / "wide--synthetic--s1"
    assert [record["status"] for record in json.loads((staged / "stages.json").read_text())] == ["finished"] * 2
    config = (staged / "config.yaml").read_text()
    assert "base_channels: 6" in config and "seed: 1" in config
    report = (folder / "study.md").read_text()
    assert "Protocol: perimage; split: test; checkpoint: highest validation Dice" in report
    assert "Seeds: 0, 1" in report and "Runs done: 4 of 4" in report
    rows = list(csv.DictReader((folder / "runs.csv").open()))
    assert [row["state"] for row in rows] == ["done"] * 4
    assert all(float(row["train_seconds"]) > 0 for row in rows)  # a staged run's: the sum of its stages


def test_study_statistics_match_scipy_on_the_same_per_case_numbers(finished_study: Path) -> None:
    folder = study_dir(finished_study)
    plain, wide = seed_mean_cases(folder, "plain"), seed_mean_cases(folder, "wide")
    differences = np.array([wide[case] - plain[case] for case in sorted(plain)])
    rows = {row["arm"]: row for row in csv.DictReader((folder / "study.csv").open())}
    row = rows["wider U-Net"]
    assert float(row["diff_mean"]) == pytest.approx(differences.mean())
    expected_p = 1.0 if not differences.any() else wilcoxon(differences).pvalue
    assert float(row["p_value"]) == pytest.approx(expected_p)
    low, high = bootstrap_ci(differences)
    assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((low, high))
    assert row["verdict"] in ("better", "worse", "no detectable difference")
    assert rows["plain"]["seeds_done"] == "2" and float(rows["plain"]["params"]) > 0
    assert float(rows["wider U-Net"]["params"]) > float(rows["plain"]["params"])
    assert float(rows["plain"]["flops"]) > 0 and float(rows["plain"]["latency_ms"]) > 0
    dice = [
        json.loads((folder / "runs" / f"plain--synthetic--s{seed}/evaluation/test/summary.json").read_text())[
            "metrics"
        ]["dice"]["mean"]
        for seed in (0, 1)
    ]
    assert float(rows["plain"]["dice_mean"]) == pytest.approx(np.mean(dice))
    assert float(rows["plain"]["dice_sd"]) == pytest.approx(np.std(dice, ddof=1))


def test_study_skips_done_runs_evaluates_trained_ones_and_resumes_interrupted_ones(finished_study: Path) -> None:
    study = load_study(finished_study)
    folder = study_dir(finished_study)
    assert run_study(study, finished_study, jobs=0) == []  # everything done: nothing runs again

    trained = folder / "runs" / "wide--synthetic--s0"  # a two-stage run
    before = (trained / "stages.json").read_text()
    shutil.rmtree(trained / "evaluation")
    interrupted = folder / "runs" / "plain--synthetic--s0"
    summary = json.loads((interrupted / "train_summary.json").read_text())
    summary["status"] = "running"  # what a killed training leaves
    (interrupted / "train_summary.json").write_text(json.dumps(summary))
    states = {run.run_id: run_state(run) for run in expand_study(study)}
    assert states["wide--synthetic--s0"] == "evaluate" and states["plain--synthetic--s0"] == "resume"

    outcomes = {outcome.run_id: outcome.message for outcome in run_study(study, finished_study, jobs=0)}
    assert outcomes == {"wide--synthetic--s0": "evaluated", "plain--synthetic--s0": "resumed"}
    assert (trained / "stages.json").read_text() == before  # not trained again
    assert (trained / "evaluation" / "test" / "cases.json").is_file()
    resumed = json.loads((interrupted / "train_summary.json").read_text())
    assert resumed["status"] == "finished" and len(resumed["resumes"]) == 1
    assert all(run_state(run) == "done" for run in expand_study(study))


def test_dry_run_lists_the_runs_with_an_estimate_and_runs_nothing(tmp_path: Path) -> None:
    path = write_study(tmp_path)
    result = runner.invoke(app, ["study", str(path), "--dry-run"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for arm in ("plain", "wide"):
        for seed in (0, 1):
            assert f"{arm}--synthetic--s{seed}" in result.output
    assert "4 runs, 4 to do: about" in result.output and "min" in result.output
    assert not (tmp_path / "out").exists()


def test_a_fold_axis_gives_one_run_per_fold_and_seed(tmp_path: Path) -> None:
    axis = "seeds: [0]\nfolds: [1, 2]\noverrides: {data.folds: 3}"
    path = write_study(tmp_path, STUDY.replace("seeds: [0, 1]", axis))
    runs = expand_study(load_study(path))
    assert [run.run_id for run in runs] == [
        f"{arm}--synthetic--f{fold}--s0" for arm in ("plain", "wide") for fold in (1, 2)
    ]
    assert [(run.fold, run.config.data.fold, run.config.data.folds) for run in runs[:2]] == [(1, 1, 3), (2, 2, 3)]


def test_a_bad_study_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = write_study(tmp_path, STUDY.replace("reference: plain", "reference: nope"))
    result = runner.invoke(app, ["study", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert "study.yaml" in result.output and "reference 'nope' is not one of the arms" in result.output


def test_a_run_started_under_another_configuration_is_refused(tmp_path: Path) -> None:
    path = write_study(tmp_path)
    runs = prepare_study(load_study(path), path)
    runs[0].run_dir.mkdir()
    changed = write_study(tmp_path, STUDY.replace("seeds: [0, 1]", "seeds: [0, 1]\noverrides: {train.epochs: 2}"))
    with pytest.raises(StudyError, match="plain--synthetic--s0 started under"):
        prepare_study(load_study(changed), changed)


def test_paired_comparison_matches_scipy_and_reads_the_metric_direction() -> None:
    reference = {f"c{i}": 0.5 + 0.01 * i for i in range(12)}
    better = {case: value + 0.05 + 0.002 * (i % 3) for i, (case, value) in enumerate(reference.items())}
    result = paired_comparison(better, reference, "dice")
    differences = np.array([better[case] - reference[case] for case in sorted(reference)])
    assert result.cases == 12 and result.mean_difference == pytest.approx(differences.mean())
    assert result.p_value == pytest.approx(wilcoxon(differences).pvalue)
    assert result.verdict == "better" and result.ci_low > 0
    assert paired_comparison(better, reference, "hd95").verdict == "worse"  # larger distances are worse
    same = paired_comparison(reference, reference, "dice")
    assert same.p_value == 1.0 and same.verdict == "no detectable difference"
    with_nan = paired_comparison({**better, "c0": float("nan")}, reference, "dice")
    assert with_nan.cases == 11


@pytest.mark.slow
def test_study_command_runs_parallel_jobs_as_processes(tmp_path: Path) -> None:
    """``make test-slow``: two processes at a time through the command line."""
    path = write_study(tmp_path)
    result = runner.invoke(app, ["study", str(path), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.count("done: ") == 4
    assert (study_dir(path) / "logs" / "wide--synthetic--s1.log").is_file()
    assert "Runs done: 4 of 4" in (study_dir(path) / "study.md").read_text()


@pytest.mark.slow
def test_ray_backend_runs_each_run_as_a_task_into_the_same_study_folder(tmp_path: Path) -> None:
    """``pip install 'medseg[ray]'`` then ``pytest -m slow tests/studies``: a local Ray instance, 2 runs."""
    ray = pytest.importorskip("ray")
    path = write_study(tmp_path, STUDY.replace("seeds: [0, 1]", "seeds: [0]"))
    try:
        outcomes = run_study(load_study(path), path, jobs=2, backend="ray")
    finally:
        ray.shutdown()
    assert sorted((outcome.run_id, outcome.ok, outcome.message) for outcome in outcomes) == [
        ("plain--synthetic--s0", True, "trained"),
        ("wide--synthetic--s0", True, "trained"),
    ]
    assert "Runs done: 2 of 2" in (study_dir(path) / "study.md").read_text()
