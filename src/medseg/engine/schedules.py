"""Learning-rate schedules as step-wise multipliers of the base learning rate."""

from __future__ import annotations

import math
from collections.abc import Callable

from medseg.config import SchedulerConfig

__all__ = ["lr_multiplier"]


def lr_multiplier(
    config: SchedulerConfig, base_lr: float, total_steps: int, warmup_steps: int
) -> Callable[[int], float]:
    """Return ``step -> factor`` for :class:`torch.optim.lr_scheduler.LambdaLR`.

    Args:
        config: the schedule settings.
        base_lr: the optimiser's base learning rate (to reach ``min_lr`` exactly).
        total_steps: optimisation steps of the whole run.
        warmup_steps: steps of linear warm-up from 0.

    Returns:
        The multiplier function.
    """
    total_steps = max(total_steps, 1)
    floor = config.min_lr / base_lr

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        if config.name == "poly":
            return (1 - progress) ** config.power
        if config.name == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return factor
