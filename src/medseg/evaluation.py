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
from medseg.data import DatasetReader, build_reader, load_splits
from medseg.engine.checkpoint import CheckpointError
from medseg.errors import MedsegError
from medseg.inference import Predictor
from medseg.metrics import EmptyPolicy
from medseg.protocols import CaseResult, Protocol, ProtocolContext, get_protocol
from medseg.recipes.stages import final_stage_config
from medseg.reports import overlay
from medseg.reports.markdown import evaluation_report, rank_cases

__all__ = ["EvaluationOutput", "evaluate_run"]

CHECKPOINT_RULES = {
    "best": "highest validation Dice during training",
    "last": "final training epoch",
}


@dataclass
class EvaluationOutput:
    """Where an evaluation wrote its files, and what it found.

    Attributes:
        directory: ``<run>/evaluation/<split>[-<protocol>][-<checkpoint>]``.
        summary: the content of ``summary.json``.
        headline: the protocol's one-line result (:meth:`medseg.protocols.Protocol.headline`).
    """

    directory: Path
    summary: dict[str, Any]
    headline: str

    @property
    def report(self) -> Path:
        """The Markdown report."""
        return self.directory / "report.md"


def _read_run_config(run_dir: Path) -> ExperimentConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise MedsegError(f"{run_dir} is not a medseg run folder (no config.yaml)")
    return final_stage_config(config_from_dict(yaml.safe_load(path.read_text())))


def _resolve_checkpoint(run_dir: Path, checkpoint: str) -> tuple[Path, str | None]:
    """The checkpoint file, and its rule (``best``/``last``) when it is one of the run's published checkpoints."""
    if checkpoint in CHECKPOINT_RULES:
        return run_dir / "checkpoints" / f"{checkpoint}.ckpt", checkpoint
    path = Path(checkpoint)
    for rule in CHECKPOINT_RULES:
        own = run_dir / "checkpoints" / f"{rule}.ckpt"
        if path.resolve() == own.resolve():
            return own, rule
    return path, None


def _checkpoint_folder_suffix(path: Path, rule: str | None) -> str:
    """The part of the evaluation folder name that says which checkpoint was evaluated (empty for ``best``)."""
    if rule is not None:
        return "" if rule == "best" else f"-{rule}"
    if path.stem in CHECKPOINT_RULES and path.parent.name == "checkpoints":
        return f"-{path.parent.parent.name}-{path.stem}"  # another run's (or stage's) best/last
    return f"-{path.stem}"


def _model_key(config: ExperimentConfig) -> tuple[Any, ...]:
    """What identifies the model a configuration builds (name, params, input channels, classes)."""
    return config.model.name, config.model.params, config.data.in_channels, config.data.num_classes


def _model_label(config: ExperimentConfig) -> str:
    """The model a configuration builds: name, params, input channels and classes."""
    params = ", ".join(f"{key}={value}" for key, value in sorted(config.model.params.items()))
    channels = f"in_channels={config.data.in_channels}, num_classes={config.data.num_classes}"
    return f"{config.model.name}({', '.join(filter(None, (params, channels)))})"


def _check_same_model(run_dir: Path, config: ExperimentConfig, ckpt_path: Path, ckpt_config: ExperimentConfig) -> None:
    """Refuse a checkpoint of another model than the run's (its evaluation would be filed under the wrong model)."""
    if _model_key(ckpt_config) != _model_key(config):
        raise CheckpointError(
            f"checkpoint {ckpt_path} holds model {_model_label(ckpt_config)}, but run {run_dir} trains "
            f"{_model_label(config)}; evaluate it in its own run folder"
        )


def _check_not_another_checkpoint(out_dir: Path, checkpoint: str) -> None:
    """Refuse to overwrite a folder that holds the evaluation of a different checkpoint (same file stem)."""
    summary_path = out_dir / "summary.json"
    if not summary_path.is_file():
        return
    previous = json.loads(summary_path.read_text()).get("checkpoint")
    if previous is not None and previous != checkpoint:
        raise MedsegError(
            f"{out_dir} holds the evaluation of checkpoint {previous}, not {checkpoint}; "
            "rename the checkpoint file or remove that folder"
        )


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

    Writes ``cases.json`` (one record per case), ``summary.json`` (protocol, split, checkpoint and its rule, number
    of cases, the protocol's statistics per metric), ``report.md`` and ``overlays/*.png`` (the ``eval.overlays``
    cases with the lowest per-case Dice, a volume's at its slice with the most ground truth) into
    ``<run>/evaluation/<split>[-<protocol>][-<checkpoint>]/``, so evaluations under different rules or of
    different checkpoints never overwrite each other:

    - ``-<protocol>`` is added for a protocol other than the run's ``eval.protocol``;
    - the checkpoint part is empty for ``best`` (what ``medseg train`` evaluates), ``-last`` for ``last``, and
      ``-<file stem>`` for a path (``-<run>-best``/``-<run>-last`` for another run's or stage's
      ``<run>/checkpoints/best.ckpt``/``last.ckpt``); a path to this run's own ``checkpoints/best.ckpt`` or
      ``last.ckpt`` counts as ``best`` or ``last``.

    Args:
        run_dir: the run folder.
        split: split to evaluate (``eval.split`` of the run's config when ``None``).
        checkpoint: ``best``, ``last`` or a path to a ``.ckpt``.
        protocol: evaluation protocol name (``eval.protocol`` of the run's config when ``None``).
        progress: show a progress bar.

    Returns:
        The output folder, summary and headline.

    Raises:
        CheckpointError: missing checkpoint, or one of another model (name, params, channels or classes) than
            the run's.
        MedsegError: unknown split or protocol, or an output folder holding the evaluation of another checkpoint
            with the same file stem.
    """
    run_dir = Path(run_dir)
    config = _read_run_config(run_dir)
    split = split or config.eval.split
    ckpt_path, rule = _resolve_checkpoint(run_dir, checkpoint)
    if not ckpt_path.is_file():
        raise CheckpointError(f"checkpoint {ckpt_path} does not exist; was the run trained to the end?")
    splits = load_splits(run_dir / "splits.json")
    if split not in splits:
        raise MedsegError(f"split {split!r} is not in {run_dir / 'splits.json'}; available: {', '.join(splits)}")
    case_ids = splits[split]
    if not case_ids:
        raise MedsegError(f"split {split!r} of {run_dir} is empty")

    predictor = Predictor.from_checkpoint(ckpt_path)
    _check_same_model(run_dir, config, ckpt_path, predictor.config)
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
    out_dir = run_dir / "evaluation" / (folder + _checkpoint_folder_suffix(ckpt_path, rule))
    absolute = ckpt_path.absolute()
    recorded = (
        str(absolute.relative_to(run_dir.absolute())) if absolute.is_relative_to(run_dir.absolute()) else str(absolute)
    )
    _check_not_another_checkpoint(out_dir, recorded)

    results: list[CaseResult] = []
    for case_id in track(case_ids, description=f"evaluating {split}", disable=not progress):
        result = _evaluate(evaluator, predictor, reader, case_id)[0]
        result.prediction = None
        results.append(result)

    cases = [_json_ready(r.to_json()) for r in results]
    worst = [case["case_id"] for case in rank_cases(cases, evaluator.ranking_metric)[: config.eval.overlays]]
    overlays = _draw_overlays(out_dir, worst, evaluator, predictor, reader)
    summary = {
        "run": run_dir.name,
        "model": config.model.name,
        "protocol": evaluator.name,
        "protocol_description": evaluator.description,
        "split": split,
        "checkpoint": recorded,
        "checkpoint_rule": CHECKPOINT_RULES[rule] if rule else "checkpoint given by path",
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
    (out_dir / "cases.json").write_text(json.dumps(cases, indent=1))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    report = evaluation_report(summary, cases, overlays, ranking_metric=evaluator.ranking_metric)
    (out_dir / "report.md").write_text(report)
    return EvaluationOutput(out_dir, summary, evaluator.headline(summary))


def _evaluate(
    evaluator: Protocol, predictor: Predictor, reader: DatasetReader, case_id: str
) -> tuple[CaseResult, np.ndarray, np.ndarray]:
    """Evaluate one case (image or volume); also return the image and ground truth to draw its overlay on."""
    if reader.is_volume(case_id):
        volume = reader.load_volume(case_id)
        return evaluator.evaluate_volume(predictor, volume), volume.image, volume.mask
    case = reader.load(case_id)
    return evaluator.evaluate_case(predictor, case), case.image, case.mask


def _draw_overlays(
    out_dir: Path, case_ids: list[str], evaluator: Protocol, predictor: Predictor, reader: DatasetReader
) -> dict[str, str]:
    """Predict the given cases again and draw their overlays (replacing those of an earlier evaluation).

    Returns:
        Case id -> overlay path relative to ``out_dir``, in the order of ``case_ids``.
    """
    overlay_dir = out_dir / "overlays"
    overlay_dir.mkdir(parents=True, exist_ok=True)
    for stale in overlay_dir.glob("*.png"):
        stale.unlink()
    overlays: dict[str, str] = {}
    for case_id in case_ids:
        result, image, truth = _evaluate(evaluator, predictor, reader, case_id)
        prediction = np.asarray(result.prediction)
        if reader.is_volume(case_id):
            image, truth, prediction = _display_slice(image, truth, prediction)
        if prediction.shape != truth.shape:  # protocols that score at the input size
            truth = _resize_labels(truth, prediction.shape)
            image = _resize_labels(image, prediction.shape)
        name = f"overlays/{case_id}.png"
        Image.fromarray(overlay(image, prediction, truth)).save(out_dir / name)
        overlays[case_id] = name
    return overlays
