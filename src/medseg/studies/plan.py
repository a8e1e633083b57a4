"""Expand a study into runs, tell what each run still needs, and estimate what the study costs.

The study folder holds ``study.yaml`` (a copy of the study file), ``configs/<run>.yaml`` (each run's resolved
configuration), ``runs/<run>/`` (a ``medseg train`` run folder each), ``logs/<run>.log`` and the report
(``study.md``, ``study.csv``, ``runs.csv``, ``study.png``). A run is named ``<arm>--<dataset>--s<seed>``, or
``<arm>--<dataset>--f<fold>--s<seed>`` in a study with folds.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from medseg.config import ConfigError, ExperimentConfig, load_config, stage_config
from medseg.studies.schema import StudyConfig, StudyError

__all__ = [
    "PlannedRun",
    "RunState",
    "estimate_seconds",
    "evaluation_dir",
    "expand_study",
    "is_trained",
    "run_state",
    "step_seconds_table",
    "train_cases",
]

RunState = Literal["done", "evaluate", "resume", "pending", "broken"]
"""``done``: trained and evaluated; ``evaluate``: trained, not evaluated; ``resume``: started, not finished;
``pending``: not started; ``broken``: a folder without ``config.yaml`` that is not empty (delete it to retry)."""

MODELS_TABLE = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "models.md"
"""The measured training steps the cost estimate scales (``benchmarks/bench_models.py``)."""

REFERENCE_BATCH, REFERENCE_SIZE = 8, 256
"""The workload of that table: batch 8 at 256 x 256."""


@dataclass(frozen=True)
class PlannedRun:
    """One (arm, dataset, seed) of a study.

    Attributes:
        run_id: ``<arm>--<dataset>--s<seed>`` (``--f<fold>`` before the seed in a study with folds).
        arm: the arm's key.
        dataset: the dataset's key.
        seed: ``train.seed``.
        fold: ``data.fold`` (``None`` without a fold axis).
        config: the run's resolved configuration.
        run_dir: its run folder inside the study folder.
        config_path: where its configuration is written.
    """

    run_id: str
    arm: str
    dataset: str
    seed: int
    config: ExperimentConfig
    run_dir: Path
    config_path: Path
    fold: int | None = None


def _override_texts(overrides: dict[str, object]) -> list[str]:
    """``{key: value}`` as ``key=value`` texts (values as JSON, which YAML reads back unchanged)."""
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]


def expand_study(study: StudyConfig) -> list[PlannedRun]:
    """Every run of a study, arm by arm, dataset by dataset, seed by seed.

    Args:
        study: the study.

    Returns:
        The runs, in the order they are started.

    Raises:
        StudyError: a recipe that does not exist or an override that does not validate (naming the arm).
    """
    datasets = study.datasets or {"": None}
    runs = []
    folder = study.study_dir
    for arm_name, arm in study.arms.items():
        for dataset_key, dataset in datasets.items():
            recipe = arm.recipe or (dataset.recipe if dataset else None) or study.base
            texts = [
                *(_override_texts(dataset.overrides) if dataset else []),
                *_override_texts(study.overrides),
                *_override_texts(arm.overrides),
            ]
            for fold, seed in ((fold, seed) for fold in study.folds or [None] for seed in study.seeds):
                fold_texts = [] if fold is None else [f"data.fold={fold}"]
                try:
                    config = load_config(study.path(recipe), [*texts, *fold_texts, f"train.seed={seed}"])
                except ConfigError as error:
                    raise StudyError(f"study {study.name}, arm {arm_name}: {error}") from None
                dataset_name = dataset_key or config.data.dataset
                run_id = f"{arm_name}--{dataset_name}{'' if fold is None else f'--f{fold}'}--s{seed}"
                config = config.model_copy(update={"name": run_id, "output_dir": str(folder / "runs")})
                runs.append(
                    PlannedRun(
                        run_id,
                        arm_name,
                        dataset_name,
                        seed,
                        config,
                        folder / "runs" / run_id,
                        folder / "configs" / f"{run_id}.yaml",
                        fold,
                    )
                )
    return runs


def evaluation_dir(run: PlannedRun) -> Path:
    """The evaluation ``medseg train`` writes: the best checkpoint on ``eval.split`` under ``eval.protocol``."""
    return run.run_dir / "evaluation" / run.config.eval.split


def is_trained(run_dir: Path, config: ExperimentConfig) -> bool:
    """Whether a run folder holds a finished training (every stage of a multi-stage run).

    Args:
        run_dir: the run folder.
        config: its configuration.

    Returns:
        ``True`` when ``train_summary.json`` (``stages.json`` for a staged run) says ``finished``.
    """
    from medseg.engine.trainer import read_summary

    if not config.stages:
        return read_summary(run_dir).get("status") == "finished"
    try:
        records = json.loads((run_dir / "stages.json").read_text())
    except (OSError, ValueError):
        return False
    finished = {record.get("stage") for record in records if record.get("status") == "finished"}
    return isinstance(records, list) and all(stage.name in finished for stage in config.stages)


def run_state(run: PlannedRun) -> RunState:
    """What a run still needs (see :data:`RunState`)."""
    if not run.run_dir.exists() or not any(run.run_dir.iterdir()):
        return "pending"
    if not (run.run_dir / "config.yaml").is_file():
        return "broken"
    if not is_trained(run.run_dir, run.config):
        return "resume"
    return "done" if (evaluation_dir(run) / "cases.json").is_file() else "evaluate"


def step_seconds_table(path: Path = MODELS_TABLE) -> dict[str, float]:
    """The fp32 CPU step times of ``benchmarks/results/models.md`` (batch 8 at 256 px), by model.

    Args:
        path: the table.

    Returns:
        ``{model: seconds}``; ``unet+tamosc`` is the U-Net with TA-MoSC skips. Empty when the file is missing.
    """
    try:
        text = path.read_text()
    except OSError:
        return {}
    table = {}
    for match in re.finditer(r"^\| ([a-z0-9_+]+) \| [^|]+ \| ([0-9.]+) \|", text, flags=re.MULTILINE):
        table[match.group(1)] = float(match.group(2))
    return table


def _train_cases(config: ExperimentConfig) -> int | None:
    """The number of training images or slices of a run's split (``None`` when the data cannot be read)."""
    from medseg.data import build_reader, make_splits
    from medseg.errors import MedsegError

    try:
        reader = build_reader(config.data)
        splits = make_splits(reader, config.data)
        return sum(len(reader.slice_ids(case)) for case in splits.get("train", []))
    except (MedsegError, OSError):
        return None


def estimate_seconds(config: ExperimentConfig, table: dict[str, float], cases: int | None) -> float | None:
    """The training time of a run on the 2-CPU machine of ``models.md``: steps x the measured step time.

    The step time of the stage's model (``unet+tamosc`` when its skips are TA-MoSC) at batch 8 and 256 px is
    scaled by batch x pixels; the steps are epochs x ceil(cases / batch) (capped by ``train.limit_train_batches``)
    summed over the stages. Validation, evaluation and start-up are not counted, early stopping may shorten a
    run, loss terms (SelfReg, ReSeg) add time that is not counted.

    Args:
        config: the run's configuration.
        table: :func:`step_seconds_table`.
        cases: training images or slices.

    Returns:
        Seconds, or ``None`` when the data or a model's step time is unknown.
    """
    if cases is None:
        return None
    total = 0.0
    for stage in config.stages or [None]:
        cfg = stage_config(config, stage) if stage is not None else config
        name = cfg.model.name
        if cfg.model.params.get("skip") == "tamosc" and f"{name}+tamosc" in table:
            name = f"{name}+tamosc"
        if name not in table:
            return None
        steps = math.ceil(cases / cfg.data.batch_size)
        if cfg.train.limit_train_batches:
            steps = min(steps, cfg.train.limit_train_batches)
        scale = cfg.data.batch_size * cfg.data.image_size**2 / (REFERENCE_BATCH * REFERENCE_SIZE**2)
        total += cfg.train.epochs * steps * table[name] * scale
    return total


def train_cases(runs: list[PlannedRun]) -> dict[str, int | None]:
    """The training cases of each dataset of the runs (read once per dataset).

    Args:
        runs: planned runs.

    Returns:
        ``{dataset: cases}``.
    """
    counts: dict[str, int | None] = {}
    for run in runs:
        if run.dataset not in counts:
            counts[run.dataset] = _train_cases(run.config)
    return counts
