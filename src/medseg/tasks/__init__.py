"""Training tasks: what a run trains, chosen by ``train.task`` (see :mod:`medseg.tasks.base`).

Registered here: ``segmentation`` (:class:`TrainingTask`, the default) and ``reconstruction``
(:class:`ReconstructionTask`, ReSeg-UNet stage 1).
"""

from medseg.tasks.base import TASKS, TrainingTask, build_task, register_task, task_class
from medseg.tasks.reconstruction import ReconstructionTask

__all__ = ["TASKS", "ReconstructionTask", "TrainingTask", "build_task", "register_task", "task_class"]
