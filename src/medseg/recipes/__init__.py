"""Multi-stage training plans (UTANet: plain network then TA-MoSC; ReSeg: teacher then student)."""

from medseg.recipes.stages import (
    RESUME_OVERRIDES,
    final_stage_config,
    load_run_config,
    resume_experiment,
    train_experiment,
)

__all__ = ["RESUME_OVERRIDES", "final_stage_config", "load_run_config", "resume_experiment", "train_experiment"]
