"""What a run trains: the task that ``train.task`` names, and the registry of tasks.

The training module (:class:`~medseg.engine.SegmentationTask`), the trainer and the command line ask the run's task
what the model is fed, what it learns, which augmentations apply, which validation value picks ``best.ckpt`` and
whether the run is evaluated; none of them knows a task by name. :class:`TrainingTask` is the segmentation task
(``train.task: segmentation``) and the base of every other one; a subclass registered with :func:`register_task`
under its ``name`` (or by an installed package, through the entry-point group ``medseg.tasks``) becomes a value of
``train.task``, and ``train.task_params`` are its constructor's keyword arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import torch

from medseg.config import ConfigError
from medseg.objectives import Objective, build_objective
from medseg.registry import Registry

if TYPE_CHECKING:
    from medseg.config import ExperimentConfig

__all__ = ["TASKS", "TrainingTask", "build_task", "register_task", "task_class"]


class TrainingTask:
    """The segmentation task, and the base class of every task: the model maps images to segmentations.

    A subclass overrides what differs: the class attributes below, :meth:`model_input` and :meth:`objective`. Its
    constructor takes the experiment and the task's own settings (``train.task_params``) as keyword arguments, and
    refuses settings it cannot use with a :class:`~medseg.config.ConfigError`.

    Attributes:
        name: the value of ``train.task`` that selects the task.
        monitor: the validation value that picks ``best.ckpt`` and drives ``train.patience`` (``val/dice`` or
            ``val/loss``).
        mode: ``max`` when a higher ``monitor`` is better, ``min`` when a lower one is.
        evaluates: the model's outputs are segmentations: validation scores their Dice (``val/dice``) and
            ``medseg train`` evaluates the run when it ends.
        intensity_augment: training batches get the intensity augmentations of ``data.transforms`` (the geometric
            ones always apply).
        makes_teacher: a later stage may take this run's last checkpoint as its teacher (``teacher_from``).
        checkpoint_rule: how ``best.ckpt`` and ``last.ckpt`` are chosen, as written to ``train_summary.json``.

    Args:
        config: the experiment.
    """

    name: ClassVar[str] = "segmentation"
    monitor: ClassVar[str] = "val/dice"
    mode: ClassVar[Literal["max", "min"]] = "max"
    evaluates: ClassVar[bool] = True
    intensity_augment: ClassVar[bool] = True
    makes_teacher: ClassVar[bool] = False
    checkpoint_rule: ClassVar[str] = "best: highest validation Dice (val/dice); last: final epoch"

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config

    def model_input(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """What the model is fed for a batch: its images.

        Args:
            batch: the batch (``image``, ``mask``, ``case_id``).

        Returns:
            ``(B, in_channels, H, W)`` input.
        """
        return batch["image"]

    def objective(self) -> Objective:
        """The training objective: the Dice + CE loss of ``loss`` plus its ``loss.terms``.

        Returns:
            The objective.
        """
        return build_objective(self.config)


def _from_entry_point(entry_point: EntryPoint, loaded: object) -> type[TrainingTask]:
    if not (isinstance(loaded, type) and issubclass(loaded, TrainingTask)):
        raise TypeError(f"{entry_point.value} is not a TrainingTask subclass")
    return loaded


TASKS: Registry[type[TrainingTask]] = Registry(
    "task", "medseg.tasks", from_entry_point=_from_entry_point, error=ConfigError, listing="registered"
)
"""Every registered task class; ``TASKS.names()`` are the values of ``train.task`` (installed packages' included)."""

Task = TypeVar("Task", bound=type[TrainingTask])


def register_task(cls: Task) -> Task:
    """Class decorator registering a :class:`TrainingTask` subclass under its ``name`` (a value of ``train.task``).

    Args:
        cls: the task class.

    Returns:
        The class, unchanged.
    """
    TASKS.add(cls.name, cls)
    return cls


def task_class(name: str) -> type[TrainingTask]:
    """The task class that ``train.task: name`` selects.

    Args:
        name: a registered task name.

    Returns:
        The class.

    Raises:
        ConfigError: no task has this name (the message lists the registered ones).
    """
    try:
        return TASKS.get(name)
    except ConfigError as error:
        raise ConfigError(f"train.task: {error}") from None


def build_task(config: ExperimentConfig) -> TrainingTask:
    """The task of a run: ``train.task`` built with the experiment and ``train.task_params``.

    Args:
        config: the experiment.

    Returns:
        The task.

    Raises:
        ConfigError: an unknown task, a parameter it does not take, or settings it refuses.
    """
    name, params = config.train.task, config.train.task_params
    cls = task_class(name)
    accepted = [key for key in inspect.signature(cls).parameters if key != "config"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise ConfigError(f"train.task_params: task {name!r} takes no {', '.join(unknown)}; valid: {valid}")
    return cls(config, **params)


register_task(TrainingTask)
