"""Evaluate a trained run on one split and write per-case metrics, a summary and a Markdown report."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from rich.progress import track

from medseg.config import ExperimentConfig, config_from_dict
from medseg.data import build_reader, load_splits
from medseg.engine.checkpoint import CheckpointError
from medseg.errors import MedsegError
from medseg.inference import Predictor
from medseg.metrics import EmptyPolicy
from medseg.protocols import CaseResult, ProtocolContext, get_protocol
from medseg.recipes.stages import final_stage_config
from medseg.reports import overlay
from medseg.reports.markdown import evaluation_report

__all__ = ["EvaluationOutput", "evaluate_run"]

CHECKPOINT_RULES = {
    "best": "highest validation Dice during training",
    "last": "final training epoch",
}


@dataclass
class EvaluationOutput:
    """Where an evaluation wrote its files.

    Attributes:
        directory: ``<run>/evaluation/<split>``.
        summary: the content of ``summary.json``.
    """

    directory: Path
    summary: dict[str, Any]

    @property
    def report(self) -> Path:
        """The Markdown report."""
        return self.directory / "report.md"


def _read_run_config(run_dir: Path) -> ExperimentConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise MedsegError(f"{run_dir} is not a medseg run folder (no config.yaml)")
    return final_stage_config(config_from_dict(yaml.safe_load(path.read_text())))


def _display_slice(image: np.ndarray, mask: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, ...]:
    """The slice of a volume with the most ground-truth foreground, for the overlay."""
    index = int(np.argmax((mask > 0).reshape(mask.shape[0], -1).sum(1)))
    return image[index], mask[index], prediction[index]


def _resize_labels(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resize of a label map or image to ``shape[:2]`` (for overlays only)."""
    rows = (np.arange(shape[0]) * array.shape[0] / shape[0]).astype(int)
    cols = (np.arange(shape[1]) * array.shape[1] / shape[1]).astype(int)
    return array[rows][:, cols]


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def evaluate_run(
    run_dir: str | Path,
    split: str | None = None,
    checkpoint: str = "best",
    protocol: str | None = None,
    progress: bool = True,
) -> EvaluationOutput:
    """Evaluate a run folder written by ``medseg train``.

    Writes ``cases.json`` (one record per case), ``summary.json`` (protocol, split, checkpoint rule, number of
    cases, mean/std/median and valid/undefined counts per metric), ``report.md`` and ``overlays/*.png`` into
    ``<run>/evaluation/<split>/`` (``<split>-<protocol>/`` for a protocol other than the run's ``eval.protocol``,
    so results under different rules never overwrite each other).

    Args:
        run_dir: the run folder.
        split: split to evaluate (``eval.split`` of the run's config when ``None``).
        checkpoint: ``best``, ``last`` or a path to a ``.ckpt``.
        protocol: evaluation protocol name (``eval.protocol`` of the run's config when ``None``).
        progress: show a progress bar.

    Returns:
        The output folder and summary.
    """
    run_dir = Path(run_dir)
    config = _read_run_config(run_dir)
    split = split or config.eval.split
    ckpt_path = run_dir / "checkpoints" / f"{checkpoint}.ckpt" if checkpoint in CHECKPOINT_RULES else Path(checkpoint)
    if not ckpt_path.is_file():
        raise CheckpointError(f"checkpoint {ckpt_path} does not exist; was the run trained to the end?")
    splits = load_splits(run_dir / "splits.json")
    if split not in splits:
        raise MedsegError(f"split {split!r} is not in {run_dir / 'splits.json'}; available: {', '.join(splits)}")
    case_ids = splits[split]
    if not case_ids:
        raise MedsegError(f"split {split!r} of {run_dir} is empty")

    predictor = Predictor.from_checkpoint(ckpt_path)
    reader = build_reader(config.data)
    policy = EmptyPolicy(both_empty=config.eval.both_empty, hd95_empty=config.eval.hd95_empty)
    context = ProtocolContext(
        num_classes=config.data.num_classes,
        image_size=config.data.image_size,
        class_names=config.foreground_names,
        threshold=config.eval.threshold,
        policy=policy,
    )
    evaluator = get_protocol(protocol or config.eval.protocol, context)
    folder = split if evaluator.name == config.eval.protocol else f"{split}-{evaluator.name}"
    out_dir = run_dir / "evaluation" / folder
    overlay_dir = out_dir / "overlays"
    overlay_dir.mkdir(parents=True, exist_ok=True)

    results: list[CaseResult] = []
    overlay_every = max(1, math.ceil(len(case_ids) / config.eval.overlays)) if config.eval.overlays else 0
    overlays: list[str] = []
    for index, case_id in enumerate(track(case_ids, description=f"evaluating {split}", disable=not progress)):
        if reader.is_volume(case_id):
            volume = reader.load_volume(case_id)
            result = evaluator.evaluate_volume(predictor, volume)
            image, truth, prediction = _display_slice(volume.image, volume.mask, result.prediction)
        else:
            case = reader.load(case_id)
            result = evaluator.evaluate_case(predictor, case)
            image, truth, prediction = case.image, case.mask, result.prediction
        if overlay_every and index % overlay_every == 0:
            name = f"overlays/{case_id}.png"
            if prediction.shape != truth.shape:  # protocols that score at the input size
                truth = _resize_labels(truth, prediction.shape)
                image = _resize_labels(image, prediction.shape)
            Image.fromarray(overlay(image, prediction, truth)).save(out_dir / name)
            overlays.append(name)
        result.prediction = None
        results.append(result)

    cases = [r.to_json() for r in results]
    summary = {
        "run": run_dir.name,
        "model": config.model.name,
        "protocol": evaluator.name,
        "protocol_description": evaluator.description,
        "split": split,
        "checkpoint": str(ckpt_path.relative_to(run_dir)) if ckpt_path.is_relative_to(run_dir) else str(ckpt_path),
        "checkpoint_rule": CHECKPOINT_RULES.get(checkpoint, "checkpoint given by path"),
        "num_cases": len(results),
        "input_size": config.data.image_size,
        "case_metrics": list(evaluator.metrics),
        **(
            {"empty_policy": {"both_empty": policy.both_empty, "hd95_empty": policy.hd95_empty}}
            if evaluator.configurable_policy
            else {}
        ),
        **evaluator.summarize(results),
    }
    summary = _json_ready(summary)
    (out_dir / "cases.json").write_text(json.dumps(_json_ready(cases), indent=1))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "report.md").write_text(evaluation_report(summary, cases, overlays))
    return EvaluationOutput(out_dir, summary)
