"""ReSeg's two stages through the CLI (reconstruction teacher -> frozen teacher), SelfReg's logged term, and the
shipped SelfReg/ReSeg recipes."""

from __future__ import annotations

import csv
import hashlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import medseg.recipes.stages
from medseg.cli import app
from medseg.config import ConfigError, load_config, stage_config
from medseg.objectives import DiceCELoss, TermContext, build_term
from medseg.objectives.reseg import reseg
from tests.test_cli import TINY

REPO = Path(__file__).resolve().parents[2]

RECIPE = """
name: reseg
model: {name: unet, params: {base_channels: 4}}
stages:
  - name: teacher
    overrides: {train.task: reconstruction}
  - name: student
    teacher_from: teacher
    overrides:
      train.epochs: 1
      loss.terms:
        - {name: reseg, weight: 0.035, params: {teacher_bn_train: true}}
        - {name: selfreg}
"""


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def fingerprint(path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return hashlib.sha256(path.read_bytes()).hexdigest(), {k: v.clone() for k, v in state.items()}


@pytest.fixture(scope="module")
def staged_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, tuple[str, dict[str, torch.Tensor]]]]:
    """Train the two stages; record the teacher checkpoint as it was when stage 1 finished."""
    out = tmp_path_factory.mktemp("reseg")
    config = out / "reseg.yaml"
    config.write_text(RECIPE)
    snapshots: list[tuple[str, dict[str, torch.Tensor]]] = []
    train = medseg.recipes.stages.train

    def train_and_record(*args: Any, **kwargs: Any) -> Any:
        result = train(*args, **kwargs)
        snapshots.append(fingerprint(result.last_checkpoint))
        return result

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(medseg.recipes.stages, "train", train_and_record)
        result = CliRunner().invoke(app, ["train", str(config), f"output_dir={out}", "train.threads=1", *TINY])
    assert result.exit_code == 0, result.output
    yield out / "reseg", snapshots[0]
    torch.set_num_threads(threads)


def test_stage_one_is_a_reconstruction_run(staged_run: tuple[Path, Any]) -> None:
    run, _ = staged_run
    history = rows(run / "stages" / "1-teacher" / "metrics.csv")
    assert {"train/recon", "val/loss"} <= set(history[0]) and "val/dice" not in history[0]
    assert float(history[-1]["train/recon"]) > 0
    assert load_config(run / "stages" / "1-teacher" / "config.yaml").train.task == "reconstruction"
    summary = (run / "stages" / "1-teacher" / "train_summary.json").read_text()
    assert '"best_val_loss"' in summary and "lowest validation reconstruction loss" in summary


def test_stage_two_uses_the_unchanged_last_teacher_checkpoint(staged_run: tuple[Path, Any]) -> None:
    run, (digest, state) = staged_run
    teacher = run / "stages" / "1-teacher" / "checkpoints" / "last.ckpt"
    after_digest, after_state = fingerprint(teacher)
    assert after_digest == digest
    assert state.keys() == after_state.keys() and all(torch.equal(state[k], after_state[k]) for k in state)
    student = load_config(run / "stages" / "2-student" / "config.yaml")
    assert Path(student.loss.teacher_checkpoint) == teacher
    assert all("teacher_checkpoint" not in term.params for term in student.loss.terms)
    saved = torch.load(run / "stages" / "2-student" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(k.startswith("model.") for k in saved)  # the teacher is not part of the student's checkpoint


def test_term_losses_are_logged_per_epoch(staged_run: tuple[Path, Any]) -> None:
    run, _ = staged_run
    row = rows(run / "stages" / "2-student" / "metrics.csv")[0]
    assert float(row["train/reseg"]) > 0 and float(row["train/selfreg"]) > 0 and float(row["train/seg"]) > 0


def test_evaluate_uses_the_segmentation_stage(staged_run: tuple[Path, Any]) -> None:
    run, _ = staged_run
    result = CliRunner().invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "evaluation" / "test" / "summary.json").is_file()
    assert (run / "checkpoints" / "best.ckpt").resolve().parent.parent.name == "2-student"


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ("[{name: a, teacher_from: b}, {name: b}]", "not an earlier stage"),
        ("[{name: a}, {name: b, teacher_from: a, overrides: {loss.terms: [{name: reseg}]}}]", "makes no teacher"),
        ("[{name: a, overrides: {train.task: reconstruction, loss.terms: [{name: selfreg}]}}]", "must be empty"),
        (
            "[{name: a, overrides: {train.task: reconstruction}}, {name: b, teacher_from: a}]",
            "no term learns from the teacher",
        ),
    ],
)
def test_bad_teacher_stages_are_rejected(tmp_path: Path, stages: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"stages: {stages}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


@pytest.mark.parametrize("path", sorted(REPO.glob("configs/selfreg-*.yaml")), ids=lambda p: p.name)
def test_selfreg_recipes_build_their_term(path: Path) -> None:
    config = load_config(path)
    (term,) = config.loss.terms
    assert term.name == "selfreg" and term.weight == 1
    context = TermContext(config.binary, DiceCELoss(config.binary), config.train.seed, config.data.num_classes)
    build_term(term.name, context, term.params)


@pytest.mark.parametrize("path", sorted(REPO.glob("configs/reseg-*.yaml")), ids=lambda p: p.name)
def test_reseg_recipes_train_a_teacher_then_the_student(path: Path) -> None:
    config = load_config(path)
    teacher, student = config.stages
    assert stage_config(config, teacher).train.task == "reconstruction"
    assert student.teacher_from == teacher.name
    loss = stage_config(config, student, teacher_checkpoint=Path("/teacher.ckpt")).loss
    (term,) = loss.terms
    assert term.name == "reseg" and term.weight == 0.035
    assert loss.teacher_checkpoint == "/teacher.ckpt" and "teacher_checkpoint" not in term.params
    assert set(term.params) <= set(inspect.signature(reseg).parameters)
