"""Multi-stage training plans (UTANet: plain network then TA-MoSC; ReSeg: teacher then student)."""

from medseg.recipes.stages import final_stage_config, train_experiment

__all__ = ["final_stage_config", "train_experiment"]
