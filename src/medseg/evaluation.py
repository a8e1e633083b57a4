"""Evaluate a trained run on one split and write per-case metrics, a summary and a Markdown report.

The model runs on the chosen device (the GPU when there is one) on batches of inputs gathered from consecutive
cases (the images of 2D cases, the slices of volumes). Worker processes read and prepare the next cases and score
the predicted ones (the surface distances are the slow part) meanwhile; with none (the default on one or two CPUs)
the main process does both. On the CPU in float32 the numbers are those of evaluating one case at a time: a batch
computes each of its inputs as that input alone, except that PyTorch's CPU convolutions take another code path for
a batch of one than for several, which can move a probability by about 1e-8 (a label only where the probability
lies that close to the threshold). On a GPU, ``eval.precision: auto`` runs a run trained in ``bf16-mixed`` under
bfloat16 autocast, which keeps about three significant digits: some border pixels change label and the metrics
move in the third decimal (Dice by 1e-3 to 2e-3 on the test fixtures); ``eval.precision: 32`` keeps float32.
``summary.json`` states the device and precision used.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from rich.progress import Progress

from medseg.checkpoints import (
    CheckpointError,
    final_stage_config,
    load_checkpoint_config,
    read_checkpoint,
)
from medseg.config import DataConfig, ExperimentConfig, config_from_dict, eval_batch_size
from medseg.data import DatasetReader, build_reader, load_splits
from medseg.errors import MedsegError
from medseg.inference import Predictor
from medseg.inference.predictor import describe_device, predictor_precision, resolve_device
from medseg.metrics import EmptyPolicy
from medseg.metrics.scoring import CaseScores, ScoreTask, timed_score
from medseg.protocols import CaseResult, Protocol, ProtocolContext, get_protocol
from medseg.reports import overlay
from medseg.reports.markdown import evaluation_report, rank_cases
from medseg.runtime import available_cpus

__all__ = ["EvaluationOutput", "evaluate_run", "metric_workers", "run_protocol", "training_device"]

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
        timings: seconds spent, by part: ``load`` (reading cases and preparing their inputs, summed over the
            worker processes), ``model`` (the network), ``labels`` (the main process's work around the model:
            inputs onto the device at the input size, probabilities to label maps, the ground truth at the
            protocol's size), ``metrics`` (scoring, summed over the worker processes), ``wait`` (the main process
            waiting for the workers), ``total`` (wall time of the whole evaluation, files and overlays included).
    """

    directory: Path
    summary: dict[str, Any]
    headline: str
    timings: dict[str, float] = field(default_factory=dict)

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


def training_device(config: ExperimentConfig) -> str:
    """The device ``medseg train`` evaluates its run on: the one it trained on.

    Args:
        config: the experiment (its last stage's ``train.accelerator`` counts).

    Returns:
        ``cpu`` or ``cuda`` for ``train.accelerator: cpu``/``gpu``, else ``eval.device``.
    """
    accelerator = final_stage_config(config).train.accelerator
    return {"cpu": "cpu", "gpu": "cuda"}.get(accelerator, config.eval.device)


def run_protocol(config: ExperimentConfig, name: str) -> Protocol:
    """The evaluation protocol ``name`` set up for a run: its classes, input size, threshold and empty-mask policy.

    Args:
        config: the run's configuration.
        name: a registered protocol.

    Returns:
        The protocol.
    """
    context = ProtocolContext(
        num_classes=config.data.num_classes,
        image_size=config.data.image_size,
        class_names=config.foreground_names,
        threshold=config.eval.threshold,
        policy=EmptyPolicy(both_empty=config.eval.both_empty, hd95_empty=config.eval.hd95_empty),
    )
    return get_protocol(name, context)


def metric_workers(setting: int | str) -> int:
    """The number of scoring worker processes ``eval.metric_workers`` asks for.

    Args:
        setting: a count (0: the main process loads and scores the cases itself) or ``auto``: one per CPU this
            process may use but one (the main process runs the model), and none on a machine with one or two
            CPUs, where the model's threads already take every CPU and a worker only takes time from them.

    Returns:
        The count.
    """
    if setting != "auto":
        return int(setting)
    cpus = available_cpus()
    return cpus - 1 if cpus > 2 else 0


def _precision(config: ExperimentConfig, device: torch.device) -> str:
    """The precision to evaluate in: ``eval.precision``; ``auto`` is the run's training precision on a GPU and
    float32 on the CPU (where it gives the numbers of the serial evaluation)."""
    return predictor_precision(config.eval.precision, config, device)


def evaluate_run(
    run_dir: str | Path,
    split: str | None = None,
    checkpoint: str = "best",
    protocol: str | None = None,
    progress: bool = True,
    device: str | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
) -> EvaluationOutput:
    """Evaluate a run folder written by ``medseg train``.

    Writes ``cases.json`` (one record per case), ``summary.json`` (protocol, split, checkpoint and its rule, number
    of cases, device and precision of the model, the protocol's statistics per metric), ``report.md`` and
    ``overlays/*.png`` (the ``eval.overlays`` cases with the lowest per-case Dice, a volume's at its slice with the
    most ground truth) into ``<run>/evaluation/<split>[-<protocol>][-<checkpoint>]/``, so evaluations under
    different rules or of different checkpoints never overwrite each other:

    - ``-<protocol>`` is added for a protocol other than the run's ``eval.protocol``;
    - the checkpoint part is empty for ``best`` (what ``medseg train`` evaluates), ``-last`` for ``last``, and
      ``-<file stem>`` for a path (``-<run>-best``/``-<run>-last`` for another run's or stage's
      ``<run>/checkpoints/best.ckpt``/``last.ckpt``); a path to this run's own ``checkpoints/best.ckpt`` or
      ``last.ckpt`` counts as ``best`` or ``last``.

    The model runs on ``device`` on batches of ``batch_size`` inputs (images, or slices of volumes) taken from
    consecutive cases, while ``workers`` processes read and prepare the next cases and score the predicted ones.

    Args:
        run_dir: the run folder.
        split: split to evaluate (``eval.split`` of the run's config when ``None``).
        checkpoint: ``best``, ``last`` or a path to a ``.ckpt``.
        protocol: evaluation protocol name (``eval.protocol`` of the run's config when ``None``).
        progress: show a progress bar.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``eval.device`` of the run's config when ``None``).
        batch_size: model inputs per batch (``eval.batch_size`` when ``None``).
        workers: worker processes, 0 to read and score the cases in this process (``eval.metric_workers`` when
            ``None``).

    Returns:
        The output folder, summary, headline and timings.

    Raises:
        CheckpointError: missing checkpoint, or one of another model (name, params, channels or classes) than
            the run's.
        MedsegError: unknown split, protocol or device, cases of another kind (2D or volumes) than the protocol
            evaluates, or an output folder holding the evaluation of another checkpoint with the same file stem.
    """
    started = time.perf_counter()
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
    torch_device = resolve_device(device or config.eval.device)
    batch_size = eval_batch_size(config.eval.batch_size, torch_device.type) if batch_size is None else batch_size
    if batch_size < 1:
        raise MedsegError(f"the evaluation batch size must be at least 1, got {batch_size}")
    worker_count = min(metric_workers(config.eval.metric_workers if workers is None else workers), len(case_ids))
    if worker_count < 0:
        raise MedsegError(f"the number of evaluation workers must be 0 or more, got {worker_count}")

    payload = read_checkpoint(ckpt_path)
    model_config = load_checkpoint_config(payload, ckpt_path)
    _check_same_model(run_dir, config, ckpt_path, model_config)
    reader = build_reader(config.data)
    evaluator = run_protocol(config, protocol or config.eval.protocol)
    evaluator.check_cases(volumes=reader.is_volume(case_ids[0]))  # before any output (each case is checked too)
    folder = split if evaluator.name == config.eval.protocol else f"{split}-{evaluator.name}"
    out_dir = run_dir / "evaluation" / (folder + _checkpoint_folder_suffix(ckpt_path, rule))
    absolute = ckpt_path.absolute()
    recorded = (
        str(absolute.relative_to(run_dir.absolute())) if absolute.is_relative_to(run_dir.absolute()) else str(absolute)
    )
    _check_not_another_checkpoint(out_dir, recorded)
    worst = _WorstCases(config.eval.overlays, evaluator.ranking_metric)
    results: list[CaseResult] = []
    precision = _precision(config, torch_device)
    # the workers are forked before the model is built, before CUDA and the progress bar's thread start
    with _Workers(worker_count, reader, evaluator, model_config.data) as workers_pool:
        predictor = Predictor.from_payload(payload, ckpt_path, torch_device, precision)
        del payload
        with Progress(disable=not progress) as bar:
            task = bar.add_task(f"evaluating {split}", total=len(case_ids))

            def collect(case: Any, prediction: np.ndarray, scores: CaseScores) -> None:
                result = CaseResult.from_scores(case.case_id, scores)
                results.append(result)
                worst.offer(_json_ready(result.to_json()), lambda: _overlay_view(case, prediction))
                bar.advance(task)

            run = _Pipeline(evaluator, predictor, workers_pool, batch_size, collect)
            run.evaluate(case_ids)

    cases = [_json_ready(r.to_json()) for r in results]
    overlays = _draw_overlays(out_dir, worst.ranked())
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
        "device": describe_device(torch_device),
        "precision": precision,
        "batch_size": batch_size,
        **({"tta": list(predictor.tta)} if predictor.tta else {}),
        "case_metrics": list(evaluator.metrics),
        **(
            {"empty_policy": {"both_empty": config.eval.both_empty, "hd95_empty": config.eval.hd95_empty}}
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
    timings = {**run.seconds, **workers_pool.seconds, "total": time.perf_counter() - started}
    return EvaluationOutput(out_dir, summary, evaluator.headline(summary), timings)


_WORKER_STATE: tuple[DatasetReader, Protocol, DataConfig] | None = None
"""What a worker process loads and prepares cases with (set by :func:`_start_worker`)."""


def _start_worker(reader: DatasetReader, evaluator: Protocol, data: DataConfig) -> None:
    """Initialise a worker process: keep the reader, the protocol and the model's data settings."""
    global _WORKER_STATE
    _WORKER_STATE = (reader, evaluator, data)


def _load_case(
    reader: DatasetReader, evaluator: Protocol, data: DataConfig, case_id: str
) -> tuple[Any, np.ndarray, float]:
    """Read a case (image or volume) and prepare its model inputs.

    Returns:
        The case, its prepared inputs (:meth:`medseg.protocols.Protocol.prepare`) and the seconds it took.

    Raises:
        MedsegError: the case is of another kind (2D or volume) than the protocol evaluates, or cannot be read.
    """
    started = time.perf_counter()
    volume = reader.is_volume(case_id)
    evaluator.check_cases(volumes=volume)
    case = reader.load_volume(case_id) if volume else reader.load(case_id)
    return case, evaluator.prepare(data, case), time.perf_counter() - started


def _load_in_worker(case_id: str) -> tuple[Any, np.ndarray, float]:
    """:func:`_load_case` with the worker's reader, protocol and data settings."""
    assert _WORKER_STATE is not None, "worker not initialised"
    return _load_case(*_WORKER_STATE, case_id)


_Job = Future[tuple[Any, ...]] | tuple[Any, ...]


def _result(job: _Job) -> tuple[Any, ...]:
    return job.result() if isinstance(job, Future) else job


class _Workers:
    """Worker processes that read and prepare cases ahead of the model and score them after it.

    With no workers, both happen in this process, when asked. On Linux the workers are forked, before the model
    is built: they start in milliseconds with everything imported, and run numpy and SciPy only (never torch,
    OpenMP or CUDA, which are not fork-safe). A fork server or spawned workers would import the caller's main
    script again, which breaks scripts that call :func:`evaluate_run` without an ``if __name__ == "__main__"``
    guard; other systems spawn them anyway.

    Args:
        workers: worker processes; 0 does everything in this process.
        reader: the dataset.
        evaluator: the protocol.
        data: the data settings the model was trained with.
    """

    def __init__(self, workers: int, reader: DatasetReader, evaluator: Protocol, data: DataConfig) -> None:
        self.state = (reader, evaluator, data)
        self.pool: ProcessPoolExecutor | None = None
        if workers > 0:
            context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
            self.pool = ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=self.state)
            self.pool.submit(os.getpid)  # a forking pool starts all its workers at the first task
        self.ahead = 2 * workers + 2  # cases loaded, or scored, ahead of the main process
        self.seconds = {"load": 0.0, "metrics": 0.0}

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def load(self, case_id: str) -> _Job:
        """Start reading and preparing a case.

        Args:
            case_id: the case.

        Returns:
            A job giving ``(case, prepared inputs, seconds)``.
        """
        if self.pool is None:
            return _load_case(*self.state, case_id)
        return self.pool.submit(_load_in_worker, case_id)

    def loaded(self, job: _Job) -> tuple[Any, np.ndarray]:
        """Wait for a load job.

        Args:
            job: from :meth:`load`.

        Returns:
            The case and its prepared inputs.
        """
        case, arrays, seconds = _result(job)
        self.seconds["load"] += seconds
        return case, arrays

    def score(self, task: ScoreTask) -> _Job:
        """Start scoring a case.

        Args:
            task: its scoring.

        Returns:
            A job giving ``(scores, seconds)``.
        """
        return timed_score(task) if self.pool is None else self.pool.submit(timed_score, task)

    def scored(self, job: _Job) -> CaseScores:
        """Wait for a scoring job.

        Args:
            job: from :meth:`score`.

        Returns:
            The scores.
        """
        scores, seconds = _result(job)
        self.seconds["metrics"] += seconds
        return scores


@dataclass
class _Pending:
    """A case whose model inputs are being predicted."""

    case: Any
    inputs: torch.Tensor
    probs: list[torch.Tensor] = field(default_factory=list)  # of the inputs predicted so far, in order

    @property
    def predicted(self) -> int:
        return sum(len(chunk) for chunk in self.probs)

    @property
    def complete(self) -> bool:
        return self.predicted == len(self.inputs)


class _Pipeline:
    """Load cases ahead, predict their inputs in batches across cases, turn them into label maps and score them.

    Args:
        evaluator: the protocol.
        predictor: the model.
        workers: where cases are loaded and scored.
        batch_size: model inputs per batch.
        collect: called with ``(case, prediction, scores)`` for every case, in case order.
    """

    def __init__(
        self,
        evaluator: Protocol,
        predictor: Predictor,
        workers: _Workers,
        batch_size: int,
        collect: Callable[[Any, np.ndarray, CaseScores], None],
    ) -> None:
        self.evaluator, self.predictor, self.workers = evaluator, predictor, workers
        self.batch_size = batch_size
        self.collect = collect
        self.pending: deque[_Pending] = deque()
        self.queued = 0  # inputs not yet predicted
        self.scoring: deque[tuple[Any, np.ndarray, _Job]] = deque()
        self.seconds = {"model": 0.0, "labels": 0.0, "wait": 0.0}

    def evaluate(self, case_ids: list[str]) -> None:
        """Evaluate the cases; each reaches ``collect`` once scored.

        Args:
            case_ids: the cases, in order.
        """
        upcoming = iter(case_ids)
        loading: deque[_Job] = deque()
        for case_id in upcoming:
            loading.append(self.workers.load(case_id))
            if len(loading) >= self.workers.ahead:
                break
        while loading:
            started = time.perf_counter()
            case, arrays = self.workers.loaded(loading.popleft())
            self.seconds["wait"] += time.perf_counter() - started
            next_id = next(upcoming, None)
            if next_id is not None:
                loading.append(self.workers.load(next_id))
            started = time.perf_counter()
            inputs = self.evaluator.inputs(self.predictor, arrays)
            self.seconds["labels"] += time.perf_counter() - started
            self.pending.append(_Pending(case, inputs))
            self.queued += len(inputs)
            while self.queued >= self.batch_size:
                self._predict_batch()
            self._collect(keep=self.workers.ahead)
        while self.queued:
            self._predict_batch()
        self._collect(keep=0)

    def _predict_batch(self) -> None:
        """Predict the next ``batch_size`` queued inputs (fewer at the end) and pass on the completed cases."""
        parts: list[tuple[_Pending, int]] = []
        room = self.batch_size
        for item in self.pending:
            take = min(room, len(item.inputs) - item.predicted)
            if take:
                parts.append((item, take))
                room -= take
            if not room:
                break
        chunks = [item.inputs[item.predicted : item.predicted + take] for item, take in parts]
        started = time.perf_counter()
        probs = self.predictor.probabilities(chunks[0] if len(chunks) == 1 else torch.cat(chunks))
        if probs.is_cuda:
            torch.cuda.synchronize(probs.device)
        self.seconds["model"] += time.perf_counter() - started
        offset = 0
        for item, take in parts:
            item.probs.append(probs[offset : offset + take])
            offset += take
        self.queued -= offset
        while self.pending and self.pending[0].complete:
            item = self.pending.popleft()
            started = time.perf_counter()
            probs = item.probs[0] if len(item.probs) == 1 else torch.cat(item.probs)
            prediction = self.evaluator.labels(self.predictor, item.case, probs)
            task = self.evaluator.score_task(item.case, prediction)
            self.seconds["labels"] += time.perf_counter() - started
            self.scoring.append((item.case, prediction, self.workers.score(task)))

    def _collect(self, keep: int) -> None:
        """Pass on the scored cases in order: those done, waiting while more than ``keep`` are outstanding."""
        started = time.perf_counter()
        while self.scoring:
            case, prediction, job = self.scoring[0]
            if len(self.scoring) <= keep and isinstance(job, Future) and not job.done():
                break
            self.scoring.popleft()
            self.collect(case, prediction, self.workers.scored(job))
        self.seconds["wait"] += time.perf_counter() - started


def _overlay_view(case: Any, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, ground truth and prediction to draw a case's overlay with, at the prediction's size.

    A volume is shown at its slice with the most ground truth; protocols that score at the input size get the
    image and ground truth resized to it.
    """
    image, truth = case.image, case.mask
    if prediction.ndim == 3:
        image, truth, prediction = _display_slice(image, truth, prediction)
    if prediction.shape != truth.shape:
        truth = _resize_labels(truth, prediction.shape)
        image = _resize_labels(image, prediction.shape)
    return image, truth, prediction


class _WorstCases:
    """The cases with the lowest ranking metric seen so far, with what their overlays need.

    Args:
        count: how many to keep (``eval.overlays``).
        metric: the protocol's ranking metric.
    """

    def __init__(self, count: int, metric: str) -> None:
        self.count = count
        self.metric = metric
        self.kept: list[tuple[dict[str, Any], tuple[np.ndarray, np.ndarray, np.ndarray]]] = []

    def offer(self, record: dict[str, Any], view: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Consider a case (cases must come in their split order: ties keep the earlier case, as in the report).

        Args:
            record: its ``cases.json`` record.
            view: makes its overlay's image, ground truth and prediction.
        """
        if not self.count:
            return
        self.kept.append((record, view()))
        if len(self.kept) > self.count:
            last = rank_cases([kept for kept, _ in self.kept], self.metric)[-1]
            self.kept = [(kept, arrays) for kept, arrays in self.kept if kept is not last]

    def ranked(self) -> list[tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """The kept cases, worst first.

        Returns:
            ``(case id, (image, truth, prediction))`` pairs.
        """
        views = {id(record): arrays for record, arrays in self.kept}
        order = rank_cases([record for record, _ in self.kept], self.metric)
        return [(record["case_id"], views[id(record)]) for record in order]


def _draw_overlays(out_dir: Path, cases: list[tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]) -> dict[str, str]:
    """Draw the overlays of the given cases (replacing those of an earlier evaluation).

    Returns:
        Case id -> overlay path relative to ``out_dir``, in the order of ``cases``.
    """
    overlay_dir = out_dir / "overlays"
    overlay_dir.mkdir(parents=True, exist_ok=True)
    for stale in overlay_dir.glob("*.png"):
        stale.unlink()
    overlays: dict[str, str] = {}
    for case_id, (image, truth, prediction) in cases:
        name = f"overlays/{case_id}.png"
        Image.fromarray(overlay(image, prediction, truth)).save(out_dir / name)
        overlays[case_id] = name
    return overlays
