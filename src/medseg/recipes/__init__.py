"""Multi-stage training plans (UTANet: plain network then TA-MoSC; ReSeg: teacher then student)."""

from medseg.recipes.stages import train_experiment

__all__ = ["train_experiment"]
